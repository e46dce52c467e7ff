"""Streaming jobs' parts, in this process (docs/streaming.md): following a query in a job's
scope, its progress, its stop, orphaned queries, and what the gateway reads of a streaming
function. tests/test_streaming.py runs them all through a real `sparkgate serve`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sparkgate.jobs.errors import InvalidArtifact
from sparkgate.jobs.signatures import mist
from sparkgate.jobs.signatures.model import Signature
from sparkgate.jobs.signatures.reading import inspect_source
from sparkgate.jobs.timeouts import job_perform_timeout_ms
from sparkgate.workers.engines.python import PythonEngine
from sparkgate.workers.engines.spark import SparkEngine
from sparkgate.workers.progress import ProgressTracker
from sparkgate.workers.streaming import (
    QueryStream,
    StreamingContextBusy,
    StreamStopped,
    query_snapshot,
)
from sparkgate.workers.watchdog import Watchdog

MIST_HEADER = "from mistpy.decorators import *\n\n"


class Notes:
    """What a job's Following was told."""

    def __init__(self) -> None:
        self.began: list[str] = []
        self.lines: list[tuple[str, str]] = []

    def note(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    def text(self) -> str:
        return "\n".join(message for _, message in self.lines)


class JobThread(threading.Thread):
    """A worker slot's job: ``function(spark)`` in the engine's scope, then followed."""

    def __init__(self, engine: SparkEngine, job_id: str, function: Callable[[Any], Any],
                 slot: int = 0) -> None:
        super().__init__(daemon=True)
        self.engine, self.job_id, self.function, self.slot = engine, job_id, function, slot
        self.notes = Notes()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.engine.running(self.job_id, "test", self.slot, _Following(self.notes)):
                self.result = self.engine.follow(self.job_id, self.function(self.engine.spark))
        except BaseException as exc:
            self.error = exc

    def outcome(self, timeout_s: float = 60) -> Any:
        self.join(timeout_s)
        assert not self.is_alive(), "the job did not end"
        return self.result


class _Following:
    def __init__(self, notes: Notes) -> None:
        self.notes = notes

    def began(self, stream: str) -> None:
        self.notes.began.append(stream)

    def note(self, level: str, message: str) -> None:
        self.notes.note(level, message)


@pytest.fixture
def reports() -> list[tuple[str, dict]]:
    return []


@pytest.fixture
def engine(spark, reports: list[tuple[str, dict]]) -> Iterator[SparkEngine]:
    engine = SparkEngine(spark)
    tracker = engine.progress(lambda job_id, snapshot: reports.append((job_id, snapshot)))
    yield engine
    tracker.close()
    for query in spark.streams.active:
        query.stop()


def rate_query(spark: Any, name: str, rows_per_second: int = 20) -> Any:
    return (spark.readStream.format("rate").option("rowsPerSecond", rows_per_second).load()
            .writeStream.format("noop").trigger(processingTime="200 milliseconds")
            .queryName(name).start())


def streaming_reports(reports: list[tuple[str, dict]], job_id: str) -> list[dict]:
    return [snapshot["streaming"] for jid, snapshot in reports
            if jid == job_id and "streaming" in snapshot]


def wait_for(condition: Callable[[], Any], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


def active_names(spark: Any) -> set[str]:
    return {query.name for query in spark.streams.active}


def watch(engine: SparkEngine, job_id: str) -> None:
    tracker = engine._streams.report.__self__  # type: ignore[attr-defined]
    tracker.watch(job_id)


# -- following a query -----------------------------------------------------------------------


def test_a_returned_query_is_followed_with_its_progress_until_stopped(
        spark, engine: SparkEngine, reports: list[tuple[str, dict]]) -> None:
    watch(engine, "job-a")
    job = JobThread(engine, "job-a", lambda s: rate_query(s, "units_followed"))
    job.start()
    progress = wait_for(lambda: [p for p in streaming_reports(reports, "job-a")
                                 if p.get("batchId", -1) >= 2])
    assert job.is_alive(), "the job ended with its stream still running"
    assert job.notes.began == [f"streaming query 'units_followed' ({progress[0]['id']})"]
    latest = progress[-1]
    assert latest["kind"] == "query" and latest["active"] is True
    assert latest["sources"][0]["description"].startswith("RateStreamV2")
    batch_ids = [p["batchId"] for p in streaming_reports(reports, "job-a") if "batchId" in p]
    assert batch_ids == sorted(batch_ids)

    engine.cancel("job-a")
    engine.cancel("job-a")  # the watchdog calls it at every tick of the grace: no harm
    job.outcome()
    assert isinstance(job.error, StreamStopped), job.error
    assert "units_followed" not in active_names(spark)
    assert streaming_reports(reports, "job-a")[-1]["active"] is False
    assert ("INFO", f"{job.notes.began[0]} stopped") in job.notes.lines


def test_a_cancel_before_the_query_is_returned_stops_it_as_it_is(
        spark, engine: SparkEngine) -> None:
    started = threading.Event()

    def slow_to_return(s: Any) -> Any:
        query = rate_query(s, "units_cancelled_early")
        started.set()
        time.sleep(1)
        return query

    job = JobThread(engine, "job-early", slow_to_return)
    job.start()
    started.wait(60)
    engine.cancel("job-early")
    job.outcome()
    assert isinstance(job.error, StreamStopped), job.error
    assert "units_cancelled_early" not in active_names(spark)


def test_a_cancelled_job_ends_only_once_its_query_is_gone(spark, engine: SparkEngine) -> None:
    # Spark reports a query ended as soon as its stop begins; a batch under way in Python
    # keeps it running (and listed active) until the batch returns.
    in_batch = threading.Event()

    def slow_batches(s: Any) -> Any:
        def each_batch(batch: Any, batch_id: int) -> None:
            in_batch.set()
            time.sleep(2)

        return (s.readStream.format("rate").load().writeStream.foreachBatch(each_batch)
                .trigger(processingTime="200 milliseconds").queryName("units_slow_stop").start())

    job = JobThread(engine, "job-slow-stop", slow_batches)
    job.start()
    assert in_batch.wait(60)
    engine.cancel("job-slow-stop")
    job.outcome()
    assert isinstance(job.error, StreamStopped), job.error
    assert "units_slow_stop" not in active_names(spark)


def test_a_failing_query_raises_sparks_error(spark, engine: SparkEngine) -> None:
    def failing(s: Any) -> Any:
        def each_batch(batch: Any, batch_id: int) -> None:
            if batch_id >= 1:
                raise ValueError(f"units boom {batch_id}")

        return (s.readStream.format("rate").load().writeStream.foreachBatch(each_batch)
                .trigger(processingTime="200 milliseconds").queryName("units_failing").start())

    job = JobThread(engine, "job-fail", failing)
    job.start()
    job.outcome()
    assert type(job.error).__name__ == "StreamingQueryException", job.error
    assert "units boom 1" in str(job.error)
    assert ("ERROR", "streaming query 'units_failing' "
            f"({job.notes.began[0].split('(')[1][:-1]}) failed") in job.notes.lines


def test_a_query_that_ends_by_itself_is_the_result(spark, engine: SparkEngine,
                                                   tmp_path) -> None:
    spark.range(10).write.parquet(str(tmp_path / "in"))

    def finite(s: Any) -> Any:
        return (s.readStream.schema("id long").parquet(str(tmp_path / "in")).writeStream
                .format("noop").trigger(availableNow=True)
                .option("checkpointLocation", str(tmp_path / "checkpoint"))
                .queryName("units_finite").start())

    job = JobThread(engine, "job-finite", finite)
    job.start()
    result = job.outcome()
    assert job.error is None, job.error
    assert result["name"] == "units_finite" and result["active"] is False
    assert result.get("batchId", -1) >= 0
    assert "ended by itself" in job.notes.text()


def test_a_value_that_is_no_stream_is_the_result(engine: SparkEngine) -> None:
    job = JobThread(engine, "job-plain", lambda s: {"n": s.range(3).count()})
    job.start()
    assert job.outcome() == {"n": 3} and job.error is None
    assert job.notes.began == []
    assert PythonEngine().follow("any", {"n": 3}) == {"n": 3}


# -- queries no job returned -----------------------------------------------------------------


def test_an_orphaned_query_is_stopped_once_no_function_runs(spark,
                                                            engine: SparkEngine) -> None:
    release = threading.Event()

    def busy(s: Any) -> dict:
        release.wait(60)
        return {}

    neighbour = JobThread(engine, "job-busy", busy, slot=1)
    neighbour.start()
    orphaning = JobThread(engine, "job-orphan",
                          lambda s: {"started": rate_query(s, "units_orphan").name})
    orphaning.start()
    assert orphaning.outcome() == {"started": "units_orphan"}
    # Its neighbour's function runs on, and may yet return it: the query is left alone.
    assert "units_orphan" in active_names(spark)
    release.set()
    neighbour.outcome()
    assert "units_orphan" not in active_names(spark)


def test_a_followed_query_is_no_orphan(spark, engine: SparkEngine) -> None:
    streaming = JobThread(engine, "job-stream", lambda s: rate_query(s, "units_kept"))
    streaming.start()
    wait_for(lambda: streaming.notes.began)
    plain = JobThread(engine, "job-next", lambda s: {"n": 1}, slot=1)
    plain.start()
    plain.outcome()
    assert "units_kept" in active_names(spark)
    engine.cancel("job-stream")
    streaming.outcome()
    assert "units_kept" not in active_names(spark)


# -- DStreams (@on_streaming_context) -------------------------------------------------------


def test_a_streaming_context_is_followed_from_its_start_and_is_the_workers_only_one(
        spark, engine: SparkEngine, reports: list[tuple[str, dict]]) -> None:
    def mist_like(s: Any) -> None:
        ssc = engine.handle("streaming_context")
        numbers = ssc.sparkContext.parallelize(range(10), 2)
        ssc.queueStream([numbers], default=numbers).count().foreachRDD(lambda t, rdd: None)
        ssc.start()
        ssc.awaitTermination()

    watch(engine, "job-dstream")
    job = JobThread(engine, "job-dstream", mist_like)
    job.start()
    progress = wait_for(lambda: [p for p in streaming_reports(reports, "job-dstream")
                                 if p.get("batches", 0) >= 2])
    assert progress[-1]["kind"] == "dstream" and progress[-1]["batchDurationMs"] == 1000
    assert job.notes.began == ["StreamingContext (1 s batches)"]

    second = JobThread(engine, "job-dstream-2", mist_like, slot=1)
    second.start()
    second.outcome()
    assert isinstance(second.error, StreamingContextBusy), second.error
    assert "job job-dstream runs a StreamingContext" in str(second.error)

    engine.cancel("job-dstream")
    job.outcome()
    assert isinstance(job.error, StreamStopped), job.error
    assert ("INFO", "StreamingContext (1 s batches) stopped") in job.notes.lines
    assert streaming_reports(reports, "job-dstream")[-1]["active"] is False


# -- progress --------------------------------------------------------------------------------


def test_a_streaming_snapshot_joins_the_spark_counts_which_it_freezes(spark) -> None:
    calls: list[dict] = []
    tracker = ProgressTracker(spark.sparkContext, lambda job_id, snap: calls.append(snap),
                              interval_s=0.05)
    try:
        tracker.watch("units-frozen")
        tracker.streaming("units-frozen", {"kind": "query", "batchId": 1})
        tracker.streaming("units-frozen", {"kind": "query", "batchId": 1})  # no change
        assert [c["streaming"] for c in calls] == [{"kind": "query", "batchId": 1}]
        assert calls[0]["tasks"]["total"] == 0
        spark.sparkContext.setJobGroup("units-frozen", "test")
        spark.sparkContext.parallelize(range(4), 2).count()  # after the stream: not counted
        time.sleep(0.3)
        final = tracker.unwatch("units-frozen")
        assert final is not None
        assert final["tasks"]["total"] == 0 and final["streaming"]["batchId"] == 1
        tracker.streaming("unwatched", {"kind": "query"})  # nothing follows it: ignored
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        tracker.close()


def test_a_query_snapshot_has_no_nan_and_short_offsets() -> None:
    stream = QueryStream.__new__(QueryStream)
    stream.id, stream.run_id, stream.name = "q", "r", None
    raw = {"batchId": 4, "inputRowsPerSecond": float("nan"), "processedRowsPerSecond": 2.5,
           "sources": [{"description": "Kafka", "endOffset": {"t": {str(n): n for n in
                                                                    range(500)}},
                        "startOffset": 3, "inputRowsPerSecond": float("inf")}],
           "sink": {"description": "noop", "numOutputRows": 7}}
    snapshot = query_snapshot(stream, raw, active=True)
    assert snapshot["inputRowsPerSecond"] is None and snapshot["processedRowsPerSecond"] == 2.5
    (source,) = snapshot["sources"]
    assert source["startOffset"] == 3 and source["inputRowsPerSecond"] is None
    assert isinstance(source["endOffset"], str) and len(source["endOffset"]) == 1001
    assert snapshot["sink"] == {"description": "noop", "numOutputRows": 7}
    assert query_snapshot(stream, None, active=False) == {
        "kind": "query", "id": "q", "runId": "r", "name": None, "active": False}


# -- timeouts --------------------------------------------------------------------------------


def test_a_declared_streaming_function_gets_no_default_performtimeout() -> None:
    assert job_perform_timeout_ms(None, 60, streaming=True) is None
    assert job_perform_timeout_ms(5000, 60, streaming=True) == 5000
    assert job_perform_timeout_ms(None, 60, streaming=False) == 60_000


def test_the_watchdog_can_drop_a_jobs_deadline() -> None:
    interrupted: list[str] = []
    watchdog = Watchdog(interrupted.append, lambda job_id, why: None, cancel_grace_s=5)
    try:
        watchdog.started("unbounded", 300)
        watchdog.started("bounded", 300)
        assert watchdog.unbound("unbounded") is True
        time.sleep(0.6)
        assert interrupted[:1] == ["bounded"] and "unbounded" not in interrupted
        assert watchdog.unbound("bounded") is False  # too late: it was interrupted
        assert watchdog.unbound("unknown") is False
        assert watchdog.ended("unbounded") is None
    finally:
        watchdog.close()


# -- what the gateway reads ------------------------------------------------------------------


def test_a_function_returning_a_streaming_query_is_declared_streaming() -> None:
    source = ("from pyspark.sql.streaming import StreamingQuery\n"
              "def f(spark, n: int = 1) -> StreamingQuery:\n    pass\n"
              "def g(spark) -> 'pyspark.sql.streaming.StreamingQuery':\n    pass\n"
              "def h(spark) -> dict:\n    pass\n")
    assert inspect_source(source, "f").streaming is True
    assert inspect_source(source, "g").streaming is True
    assert inspect_source(source, "h").streaming is False
    stored = inspect_source(source, "f").to_dict()
    assert stored["streaming"] is True and Signature.from_dict(stored).streaming is True
    assert "streaming" not in inspect_source(source, "h").to_dict()


def test_a_mist_streaming_function_takes_a_streaming_context() -> None:
    signature = inspect_source(f"{MIST_HEADER}@with_args(arg('n', type_hint=int))\n"
                               "@on_streaming_context\ndef f(ssc, n):\n    pass\n", "f")
    assert signature == Signature("streaming_context", signature.params, mist=True,
                                  streaming=True)
    assert signature.needs_spark


def test_a_mist_streaming_function_is_refused_where_pyspark_has_no_dstreams(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mist, "dstreams_available", lambda: False)
    with pytest.raises(InvalidArtifact, match="has no Spark Streaming") as refused:
        inspect_source(f"{MIST_HEADER}@on_streaming_context\ndef f(ssc):\n    pass\n", "f")
    assert "port the function to Structured Streaming" in str(refused.value)
    assert refused.value.http_status == 400
