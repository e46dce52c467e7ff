"""A Spark function whose executors need ``sparkgate_testdep`` (tests/test_environments.py):
the package must be there for Spark's Python workers too, not only for the driver."""

from pyspark.sql import SparkSession


def testdep_on_executors(spark: SparkSession) -> int:
    def value(_: int) -> int:
        import sparkgate_testdep

        return int(sparkgate_testdep.VALUE)

    return int(spark.sparkContext.parallelize([0], 1).map(value).first())
