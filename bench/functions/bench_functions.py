"""The functions the benchmark deploys to sparkgate (uploaded as an artifact, like any app's)."""

from typing import Any, Optional

from pyspark.sql import SparkSession


def noop(spark: SparkSession, value: Any = None, tag: Optional[str] = None) -> dict:
    """Returns its arguments: the gateway's and queue's own cost, no Spark work."""
    return {"value": value, "tag": tag}


def plain_noop(value: Any = None, tag: Optional[str] = None) -> dict:
    """The same no-op without a Spark handle: a plain function, run on any engine (scenario 2
    runs it in a python context, the gateway's and the queue's cost without Spark's)."""
    return {"value": value, "tag": tag}


def range_sum(spark: SparkSession, n: int = 1000, partitions: int = 0) -> int:
    """Scenario 1's query (the same text the baselines run); ``partitions`` > 0 fixes how many
    tasks it has (scenario 6 uses one task per job)."""
    frame = spark.range(0, n, 1, partitions) if partitions > 0 else spark.range(n)
    return frame.selectExpr("sum(id) AS s").first()["s"]
