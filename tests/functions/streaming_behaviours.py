"""Streaming functions that behave in the ways a worker must handle (tests/test_streaming.py)."""

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery


def failing_stream(spark: SparkSession, fail_at: int = 2) -> StreamingQuery:
    """A query whose batch ``fail_at`` raises: the query, and so the job, fails."""

    def each_batch(batch, batch_id: int) -> None:
        if batch_id >= fail_at:
            raise ValueError(f"boom in batch {batch_id}")
        batch.count()

    return (spark.readStream.format("rate").option("rowsPerSecond", 5).load()
            .writeStream.foreachBatch(each_batch).trigger(processingTime="500 milliseconds")
            .queryName("failing_stream").start())


def orphan_stream(spark: SparkSession) -> dict:
    """Starts a query and returns something else: the query is nobody's, and is stopped."""
    query = (spark.readStream.format("rate").load().writeStream.format("noop")
             .queryName("orphan_stream").start())
    return {"started": query.name}


def finite_stream(spark: SparkSession, rows: int = 30) -> StreamingQuery:
    """A query that ends by itself (availableNow over a folder of one file): the job finishes."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="finite-stream-")
    spark.range(rows).write.mode("overwrite").parquet(f"{folder}/in")
    source = spark.readStream.schema("id long").parquet(f"{folder}/in")
    return (source.writeStream.format("noop").trigger(availableNow=True)
            .option("checkpointLocation", f"{folder}/checkpoint").queryName("finite_stream")
            .start())


def active_streams(spark: SparkSession) -> list:
    """The names of the worker's active queries: a plain job that runs beside a stream."""
    return sorted(query.name or query.id for query in spark.streams.active)


def undeclared_stream(spark: SparkSession):
    """A query returned by a function that does not say so (no ``-> StreamingQuery``)."""
    return (spark.readStream.format("rate").load().writeStream.format("noop")
            .queryName("undeclared_stream").start())
