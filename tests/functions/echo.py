"""Returns its arguments: the no-op function of the API tests."""

from typing import Any, Optional

from pyspark.sql import SparkSession


def echo(spark: SparkSession, value: Any = None, tag: Optional[str] = None) -> dict:
    return {"value": value, "tag": tag}
