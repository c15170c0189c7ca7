"""parallel() on a real Dask cluster, through its concurrent.futures executor."""

from __future__ import annotations

import pytest

from rxpipe import Flow, stage

distributed = pytest.importorskip("distributed")


def increment(x: int) -> int:
    return x + 1


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.rxpipe_allow_threads("Dask-Offload")  # distributed's process-wide offload pool
def test_parallel_on_a_local_dask_cluster() -> None:
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,  # any free port: another cluster on this machine must not matter
        dashboard_address=None,
    )
    try:
        with distributed.Client(cluster) as client:
            executor = client.get_executor(pure=False)
            flow = Flow.range(2_000).parallel(
                2, stage().map(increment), executor=executor, ordered=True, batch=100
            )
            assert flow.to_list() == list(range(1, 2_001))
            report = flow.run()
            assert report.delivered == 2_000
            assert report.stages["parallel"].received == 2_000
    finally:
        cluster.close()
