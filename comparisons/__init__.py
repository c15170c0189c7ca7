"""Side-by-side benchmarks of rxpipe's engines and of peer libraries (``python -m comparisons``).

- ``harness``: timing (same process, interleaved rounds, median, GC off) and output checks.
- ``report``: Markdown tables and the environment page.
- ``workloads``: the registry, one module per workload.

``make bench`` runs the quick mode and ``make bench-full`` the full one; both show progress,
end with a short summary, and write their tables to ``comparison-results/`` (gitignored).
``--out docs/results`` (``make bench BENCH_ARGS="--out docs/results"``) refreshes the
committed copy that the documentation includes.
"""
