"""A streaming job: rows from Spark's ``rate`` source, counted in event-time windows, for as
long as the job runs (docs/streaming.md).

The function starts a Structured Streaming query and returns it: the job then stays
``started`` while the query runs, its progress (batch, rows per second, offsets) is the job's
``progress``, and cancelling the job stops the query.

    curl -X POST 'http://127.0.0.1:2004/v2/api/functions/rate_windows/jobs' \\
         -H 'Content-Type: application/json' -d '{"rows_per_second": 50}'
    → {"id": "01a2..."}

    # while it runs: the latest windows, from a job beside it in the same context
    curl -X POST 'http://127.0.0.1:2004/v2/api/functions/rate_windows_latest/jobs?force=true' \\
         -H 'Content-Type: application/json' -d '{}'
    → {"success": true, "payload": [{"start": "2026-12-07T07:37:36",
       "end": "2026-12-07T07:37:38", "rows": 100, "total": 39250}, ...], "errors": []}

    curl -X DELETE 'http://127.0.0.1:2004/v2/api/jobs/01a2...'     # stops the query

Without ``output`` the windows go to an in-memory table (``table``) in the worker's session,
which any job of the same context can read (``rate_windows_latest``); with it, to JSON files in
that folder, one line per window. Each window is written once, when the watermark has passed
its end: ``window_s + late_s`` seconds after it began, give or take a trigger.
"""

import tempfile
from typing import Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery


def rate_windows(
    spark: SparkSession,
    rows_per_second: int = 10,
    window_s: int = 2,
    late_s: int = 1,
    trigger_s: int = 1,
    output: Optional[str] = None,
    checkpoint: Optional[str] = None,
    table: str = "rate_windows",
) -> StreamingQuery:
    """Count the rows of each ``window_s``-second window, and sum their values.

    ``late_s``: how late a row may come (the watermark). ``output``: a folder for JSON files
    (on the worker's host, or any path Spark can write: ``s3a://...``); None: the memory
    table ``table``. ``checkpoint``: where the query keeps its state and offsets (given, a
    restarted job carries on where the last one stopped); None: a folder of its own, gone
    with the worker.
    """
    if min(rows_per_second, window_s, trigger_s) < 1 or late_s < 0:
        raise ValueError("rows_per_second, window_s and trigger_s must be at least 1, late_s at "
                         "least 0")
    windows = (
        spark.readStream.format("rate").option("rowsPerSecond", rows_per_second).load()
        .withWatermark("timestamp", f"{late_s} seconds")
        .groupBy(F.window("timestamp", f"{window_s} seconds"))
        .agg(F.count("*").alias("rows"), F.sum("value").alias("total"))
        .select(F.col("window.start").alias("start"), F.col("window.end").alias("end"),
                "rows", "total")
    )
    writer = (windows.writeStream.outputMode("append")
              .trigger(processingTime=f"{trigger_s} seconds")
              .option("checkpointLocation",
                      checkpoint or tempfile.mkdtemp(prefix="rate-windows-checkpoint-")))
    if output is None:
        return writer.format("memory").queryName(table).start()
    return writer.format("json").queryName(f"{table}_files").start(output)


def rate_windows_latest(spark: SparkSession, limit: int = 5, table: str = "rate_windows") -> list:
    """The latest ``limit`` windows that ``rate_windows`` wrote to its memory table."""
    if not spark.catalog.tableExists(table):
        return []
    rows = spark.table(table).orderBy(F.col("start").desc()).limit(limit).collect()
    return [row.asDict() for row in rows]
