"""Scenario 1's cold baseline: ``spark-submit cold_submit.py N`` builds a SparkSession, runs
the same query once and exits. The runner times the whole process."""

import sys

from pyspark.sql import SparkSession

if __name__ == "__main__":
    spark = SparkSession.builder.appName("bench-cold-submit").getOrCreate()
    n = int(sys.argv[1])
    print(spark.range(n).selectExpr("sum(id) AS s").first()["s"])
    spark.stop()
