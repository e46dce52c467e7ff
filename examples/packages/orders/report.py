"""The function itself: a summary of order amounts, computed with Spark."""

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

# An absolute import of the package's own module: it resolves to this archive's version.
from orders.money import rounded

VERSION = "1"


def summary(spark: SparkSession, amounts: list[float], currency: str = "EUR",
            top: int = 3) -> dict:
    """Count, total and largest ``top`` amounts, rounded to cents."""
    df = spark.createDataFrame([(a,) for a in amounts], "amount double")
    row = df.agg(F.count("amount").alias("orders"), F.sum("amount").alias("total")).first()
    largest = [r.amount for r in df.orderBy(F.desc("amount")).limit(top).collect()]
    return {
        "orders": row.orders,
        "total": rounded(row.total or 0.0, currency),
        "largest": [rounded(a, currency) for a in largest],
        "version": VERSION,
    }
