"""The sizes of a run (quick or full) and the Spark settings every system gets alike."""

from __future__ import annotations

from dataclasses import dataclass

# The gateway's contexts, the in-process session, the Connect server and spark-submit all run
# with these: two local cores, no UI, FAIR scheduling (what a sparkgate worker uses).
SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.scheduler.mode": "FAIR",
    "spark.sql.shuffle.partitions": "4",
}


@dataclass(frozen=True)
class Mode:
    name: str
    # 1. warm Spark job: calls per system and n, in rounds that alternate the systems, after
    # warm-up calls. A fresh JVM takes a few hundred of these queries to JIT Spark's query
    # path: in one process (2026-12-08), p50 93 ms over its first 100, 61 ms over the next 100,
    # 45-49 ms from the 200th to the 900th. Measured before that, each system is measured at
    # its own point of that curve (the JVMs warm at different rates on two shared cores).
    spark_warmup: int
    spark_calls: int
    spark_rounds: int
    cold_runs: int
    cold_sizes: tuple[int, ...]
    # 2. gateway overhead
    noop_sequential: int
    noop_concurrent: int
    # 3./4. throughput
    submit_jobs: int
    e2e_jobs: int
    # 5. scale
    rows_in_db: int
    queued_jobs: int
    listing_calls: int
    submit_latency_calls: int
    waiters: int
    # 6. concurrency in one context
    concurrent_spark_jobs: int
    concurrent_spark_n: int
    # 7. real-time scoring: customers in the training run, sequential and 32-client calls
    scoring_training_rows: int
    scoring_sequential: int
    scoring_concurrent: int


QUICK = Mode("quick", spark_warmup=100, spark_calls=12, spark_rounds=3, cold_runs=1,
             cold_sizes=(1_000,), noop_sequential=200, noop_concurrent=500, submit_jobs=1500,
             e2e_jobs=600,
             rows_in_db=100_000, queued_jobs=20_000, listing_calls=60, submit_latency_calls=200,
             waiters=1000,
             concurrent_spark_jobs=8, concurrent_spark_n=10_000_000,
             scoring_training_rows=5000, scoring_sequential=200, scoring_concurrent=1000)
FULL = Mode("full", spark_warmup=300, spark_calls=100, spark_rounds=5, cold_runs=3,
            cold_sizes=(1_000, 1_000_000), noop_sequential=1000, noop_concurrent=3000,
            submit_jobs=6000, e2e_jobs=3000, rows_in_db=1_000_000, queued_jobs=100_000,
            listing_calls=300, submit_latency_calls=600, waiters=1000,
            concurrent_spark_jobs=8, concurrent_spark_n=30_000_000,
            scoring_training_rows=20_000, scoring_sequential=1000, scoring_concurrent=5000)
