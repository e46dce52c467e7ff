"""A no-op that leaves a trace outside sparkgate: the fault test counts executions by it.

Each run appends one line, ``<job id> <token>``, to the file ``path`` (O_APPEND: lines written
by concurrent jobs, or by several workers, never interleave). The job id is the Spark job group
the worker set for this job's thread, so a line names the job that really ran.
"""

import os
import time

from pyspark.sql import SparkSession


def record_run(spark: SparkSession, path: str, token: str, sleep_ms: int = 0) -> dict:
    job_id = spark.sparkContext.getLocalProperty("spark.jobGroup.id")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job_id} {token}\n".encode())
    finally:
        os.close(fd)
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    return {"token": token}
