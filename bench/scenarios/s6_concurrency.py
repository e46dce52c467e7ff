"""6. Concurrency in one warm context: 8 Spark jobs sent at once (8 clients, ``force=true``)
to a context with maxJobs 4, and to one with maxJobs 1 (the baseline): the time until all 8
answered. Each job is a one-task Spark job (``spark.range`` in one partition, summed), so a
context that runs several at once can use both local cores. Lower total time is better.
"""

from __future__ import annotations

import statistics

from bench.harness import Bench, log
from bench.infra import create_context
from bench.stats import Row

SCENARIO = "6. concurrency in one warm context"
CONTEXTS = {"bench-max1": 1, "bench-max4": 4}
WARMUP = 10  # jobs per context first (half in quick mode): both JVMs equally warm


def prepare(b: Bench) -> None:
    """Create both contexts, precreated: the supervisor starts their workers meanwhile."""
    assert b.gateway is not None
    for name, max_jobs in CONTEXTS.items():
        create_context(b.gateway, name, maxJobs=max_jobs, precreated=True)


def run(b: Bench) -> list[Row]:
    jobs = b.mode.concurrent_spark_jobs
    body = {"n": b.mode.concurrent_spark_n, "partitions": 1}
    reps = 1 if b.mode.name == "quick" else 3
    rows = []
    for name, max_jobs in CONTEXTS.items():
        url = b.run_url("range_sum", force="true", context=name)
        warmup = WARMUP if b.mode.name == "full" else WARMUP // 2
        b.http_run(url, warmup, 1, body=body)  # not counted: a fresh JVM is slow at first
        totals, latencies = [], []
        for _ in range(reps):
            got = b.http_run(url, jobs, jobs, body=body)
            totals.append(got["wall_s"] * 1000)
            latencies += got["latencies_ms"]
        log.info("maxJobs %d: %s ms", max_jobs, [round(t) for t in totals])
        rows.append(Row.from_latencies(
            SCENARIO, f"sparkgate, maxJobs {max_jobs}", latencies,
            value=statistics.median(totals), value_unit=f"ms for all {jobs}", metric="value",
            baseline=max_jobs == 1, key=f"s6.max{max_jobs}",
            note=f"{jobs} jobs at once, total (median of {reps}); p50/p99 per job"))
    return rows
