"""Side-by-side benchmarks of rxpipe's engines and of peer libraries (``python -m comparisons``).

- ``harness``: timing (same process, interleaved rounds, median, GC off) and output checks.
- ``report``: Markdown tables and the environment page.
- ``workloads``: the registry, one module per workload.

``make bench`` runs the quick mode and ``make bench-full`` the full one; both write their
tables to ``docs/results/``, which the documentation includes.
"""
