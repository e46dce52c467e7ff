"""Functions that behave in the ways a worker must handle: fail, talk, sleep, return junk."""

import logging
import sys
import time

from pyspark import SparkContext
from pyspark.sql import SparkSession


def fail(spark: SparkSession, message: str = "boom") -> dict:
    raise ValueError(message)


def chatty(spark: SparkSession, name: str, lines: int = 3) -> dict:
    log = logging.getLogger("chatty")
    for n in range(lines):
        print(f"{name} print {n}")
        log.warning("%s log %d", name, n)
        sys.stderr.write(f"{name} stderr {n}\n")
        time.sleep(0.01)
    return {"name": name}


def sleep_python(spark: SparkSession, seconds: float = 1.0) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}


def slow_spark(spark: SparkSession, seconds: float = 30.0) -> int:
    """A Spark job whose tasks take ``seconds`` in all: cancellable through its job group."""
    per_task = seconds / 4

    def wait(x: int) -> int:
        time.sleep(per_task)
        return x

    return spark.sparkContext.parallelize(range(4), 4).map(wait).sum()


def not_json(spark: SparkSession) -> object:
    return {"handle": object()}


def count_with_context(sc: SparkContext, n: int) -> dict:
    return {"count": sc.parallelize(range(n), 2).count(), "handle": type(sc).__name__}


def sum_range(spark: SparkSession, n: int = 1000) -> int:
    return spark.range(n).selectExpr("sum(id) AS s").first()["s"]


def scheduler_pool(spark: SparkSession) -> str:
    """The FAIR pool this job's Spark jobs would run in."""
    return spark.sparkContext.getLocalProperty("spark.scheduler.pool")


def sum_after_nap(spark: SparkSession, seconds: float = 0.3, n: int = 100) -> int:
    """``sum_range`` after a pause: a progress poll made as the job starts sees no Spark job."""
    time.sleep(seconds)
    return spark.range(n).selectExpr("sum(id) AS s").first()["s"]


def class_archives(spark: SparkSession) -> list[str]:
    """The class archives this session's JVM maps, besides the JDK's own (lib/server/)."""
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    with open(f"/proc/{pid}/maps") as maps:
        return sorted({line.split()[-1] for line in maps
                       if line.rstrip().endswith(".jsa") and "/lib/server/" not in line})
