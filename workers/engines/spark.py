"""The spark engine: one warm SparkSession a worker's jobs share, each job in its own Spark job
group (how it is cancelled and its progress followed) and its slot's FAIR pool."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparkgate.jobs.contexts import Context
from sparkgate.workers.progress import ProgressCallback, ProgressTracker
from sparkgate.workers.session import (
    build_session,
    check_java,
    job_group_canceller,
    spark_conf_for,
    write_pools_file,
)

log = logging.getLogger("sparkgate.worker")


def start(context: Context, scratch: Path) -> SparkEngine:
    check_java()
    log.info("starting Spark for context %s", context.name)
    pools = write_pools_file(scratch / "pools.xml", context.max_jobs)
    return SparkEngine(build_session(context, pools, scratch), spark_conf_for(context))


class SparkEngine:
    def __init__(self, spark: Any, conf: dict[str, str] | None = None) -> None:
        self.spark = spark
        self.conf = conf if conf is not None else {}
        self._cancel_group = job_group_canceller(spark.sparkContext)

    def handle(self, kind: str) -> Any:
        if kind == "context":
            return self.spark.sparkContext
        if kind == "sql_context":
            from pyspark.sql import SQLContext

            return SQLContext(self.spark.sparkContext, self.spark)
        return self.spark

    @contextlib.contextmanager
    def running(self, job_id: str, title: str, slot: int) -> Iterator[None]:
        sc = self.spark.sparkContext
        # Each call is a round trip to the JVM, so the thread's properties are not cleared
        # after a job: the next job on this thread sets both first thing.
        sc.setJobGroup(job_id, title, interruptOnCancel=True)
        # One FAIR pool per slot, not per job: Spark never forgets a pool it has seen.
        sc.setLocalProperty("spark.scheduler.pool", f"slot-{slot}")
        yield

    def cancel(self, job_id: str) -> None:
        self._cancel_group(job_id)

    def progress(self, on_progress: ProgressCallback) -> ProgressTracker:
        return ProgressTracker(self.spark.sparkContext, on_progress)

    def stop(self) -> None:
        self.spark.stop()
