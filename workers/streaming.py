"""Streaming jobs (spark engine): a function that leaves a stream running makes a job that lasts
as long as the stream, in the job's thread and slot.

A job's stream is

- a Structured Streaming query that its function started and returned (a
  ``pyspark.sql.streaming.StreamingQuery``), or
- the ``StreamingContext`` handed to a Mist-era ``@on_streaming_context`` function (DStreams),
  once the function has started it: whether the function waits for it to end (as Mist's
  examples do) or returns.

:class:`Streams` follows each job's stream until it ends. A query's progress is read in the
job's thread every ``POLL_S`` (a DStream's comes from a listener, after each batch) and reported
under ``streaming`` in the job's progress. A cancel (or an explicit performTimeout) stops the
stream, and the job ends ``cancelled`` (or ``failed``); a stream that fails fails the job with
Spark's error; one that ends by itself finishes it, with its last progress as the result.

Queries that a function starts and does not return belong to no job: they are stopped once no
function is running on the worker (none could still return them), so none outlives the jobs
around it. Spark tells which thread started a query only through the ``jobTags`` of a
StreamingQueryListener's start event, which pyspark 4.3 fails to read (its
``QueryStartedEvent.fromJObject`` calls ``toString`` on Python strings); "no function is
running" needs no listener, and is never wrong about whose query it stops.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("sparkgate.worker")

#: How often a followed query is looked at: whether it ended, and its progress.
POLL_S = 0.5
#: A source's offsets are kept up to this many characters of JSON (Kafka's name every partition).
OFFSET_MAX_CHARS = 1000

Report = Callable[[str, dict[str, Any]], None]


class StreamStopped(Exception):
    """The job's stream was stopped on request: its cancel, or its performTimeout."""


class StreamingContextBusy(RuntimeError):
    """Spark runs one StreamingContext per JVM, and this worker's is taken."""


class Following(Protocol):
    """What the worker does while a job's stream is followed (workers/execution.py)."""

    def began(self, stream: str) -> None:
        """The job's function left ``stream`` running, and the job now follows it."""

    def note(self, level: str, message: str) -> None:
        """A line for the job's log."""


def _no_report(job_id: str, snapshot: dict[str, Any]) -> None:
    pass


class Unfollowed:
    """Following, for a call that is no worker's job (a local run): nothing to do."""

    def began(self, stream: str) -> None:
        pass

    def note(self, level: str, message: str) -> None:
        pass


# -- the two kinds of stream ------------------------------------------------------------------


class QueryStream:
    """A Structured Streaming query, polled from the job's thread."""

    polled = True

    def __init__(self, query: Any) -> None:
        self.query = query
        self.id, self.run_id, self.name = str(query.id), str(query.runId), query.name
        self.description = (f"streaming query {self.name!r} ({self.id})" if self.name
                            else f"streaming query {self.id}")
        self.stop_sent = False
        self.stopper: threading.Thread | None = None  # a cancel's stop, under way

    def wait(self, timeout_s: float) -> bool:
        """Whether it has ended, waiting up to ``timeout_s``; raises its error if it failed."""
        return bool(self.query.awaitTermination(timeout_s))

    def running(self) -> bool:
        return bool(self.query.isActive)

    def stop(self) -> None:
        self.query.stop()

    def snapshot(self) -> dict[str, Any]:
        progress = self.query.lastProgress
        raw = json.loads(progress.json) if progress is not None else None
        return query_snapshot(self, raw, active=self.running())


class ContextStream:
    """The StreamingContext a job's function was handed; its listener reports each batch."""

    polled = False

    def __init__(self, ssc: Any, batch_s: int) -> None:
        self.ssc = ssc
        self.description = f"StreamingContext ({batch_s} s batches)"
        self.batch_ms = batch_s * 1000
        self.started = False
        self.stop_sent = False
        self.stopper: threading.Thread | None = None  # a cancel's stop, under way
        self.batches = 0
        self.last_batch: dict[str, Any] = {}
        self._lock = threading.Lock()

    def wait(self, timeout_s: float) -> bool:
        return bool(self.ssc.awaitTerminationOrTimeout(timeout_s))

    def running(self) -> bool:
        from pyspark.streaming import StreamingContext

        return StreamingContext.getActive() is self.ssc

    def stop(self) -> None:
        # Never the SparkContext: the worker's other jobs share it.
        self.ssc.stop(stopSparkContext=False, stopGraceFully=False)

    def batch_done(self, info: Any) -> dict[str, Any]:
        """Count a completed batch (a JavaBatchInfo); the snapshot to report."""
        with self._lock:
            self.batches += 1
            self.last_batch = {
                "batchTime": info.batchTime().milliseconds(),
                "numRecords": info.numRecords(),
                "processingDelayMs": _delay(info.processingDelay()),
                "schedulingDelayMs": _delay(info.schedulingDelay()),
                "totalDelayMs": _delay(info.totalDelay()),
            }
        return self.snapshot(active=True)

    def snapshot(self, active: bool | None = None) -> dict[str, Any]:
        with self._lock:
            return {"kind": "dstream", "active": self.running() if active is None else active,
                    "batchDurationMs": self.batch_ms, "batches": self.batches,
                    **self.last_batch}


Stream = QueryStream | ContextStream


def query_snapshot(stream: QueryStream, raw: dict[str, Any] | None,
                   active: bool) -> dict[str, Any]:
    """A query's ``streaming`` progress from its last progress (``StreamingQueryProgress``'s
    JSON; None before its first batch)."""
    snapshot: dict[str, Any] = {"kind": "query", "id": stream.id, "runId": stream.run_id,
                                "name": stream.name, "active": active}
    if raw is None:
        return snapshot
    sink = raw.get("sink") or {}
    return {
        **snapshot,
        "batchId": raw.get("batchId"),
        "timestamp": raw.get("timestamp"),
        "batchDurationMs": raw.get("batchDuration"),
        "numInputRows": raw.get("numInputRows"),
        "inputRowsPerSecond": _finite(raw.get("inputRowsPerSecond")),
        "processedRowsPerSecond": _finite(raw.get("processedRowsPerSecond")),
        "sources": [_source(source) for source in raw.get("sources") or []],
        "sink": {"description": sink.get("description"),
                 "numOutputRows": sink.get("numOutputRows")},
    }


def _source(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": raw.get("description"),
        "startOffset": _offset(raw.get("startOffset")),
        "endOffset": _offset(raw.get("endOffset")),
        "latestOffset": _offset(raw.get("latestOffset")),
        "numInputRows": raw.get("numInputRows"),
        "inputRowsPerSecond": _finite(raw.get("inputRowsPerSecond")),
        "processedRowsPerSecond": _finite(raw.get("processedRowsPerSecond")),
    }


def _offset(value: Any) -> Any:
    text = json.dumps(value)
    return value if len(text) <= OFFSET_MAX_CHARS else text[:OFFSET_MAX_CHARS] + "…"


def _finite(value: Any) -> Any:
    """JSON has no NaN (PostgreSQL's json refuses it): a rate Spark could not compute is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _delay(value: Any) -> int | None:
    return None if value is None or value < 0 else int(value)  # -1: not known yet


# -- the worker's streams ---------------------------------------------------------------------


@dataclass
class _Job:
    following: Following
    calling: bool = True  # its function is running (and may start queries)
    stop_requested: bool = False
    stream: Stream | None = None


class Streams:
    """The streams of a worker's jobs. ``begin`` and ``end`` bound a job's call (the engine's
    ``running``); ``follow`` takes what its function returned; ``stop`` is its cancel."""

    def __init__(self, spark: Any) -> None:
        self._spark = spark
        self._manager = spark.streams
        #: Where a stream's progress goes (the progress tracker's ``streaming``).
        self.report: Report = _no_report
        self._jobs: dict[str, _Job] = {}
        self._begun = 0  # jobs begun so far: a sweep must not race a new job's first query
        # Run ids of the queries jobs followed and still listed active (Spark lists a query
        # for a moment after its stop returns): their jobs stop them, not the sweep.
        self._followed: set[str] = set()
        self._lock = threading.Lock()

    def begin(self, job_id: str, following: Following) -> None:
        with self._lock:
            self._jobs[job_id] = _Job(following)
            self._begun += 1

    def end(self, job_id: str) -> None:
        """The job's call is over: stop what is left of its stream, and orphaned queries."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
        stream = job.stream if job is not None else None
        if job is not None and stream is not None:
            if _running(stream):
                job.following.note("INFO", f"stopping {stream.description}: the job ended")
                _stop(stream)
            if not isinstance(stream, ContextStream) or stream.started:
                self._report_quietly(job_id, stream)
        self._sweep()

    def streaming_context(self, job_id: str | None, batch_s: int) -> Any:
        """A new StreamingContext for the job's ``@on_streaming_context`` function."""
        from pyspark.streaming import StreamingContext

        active = StreamingContext.getActive()
        if active is not None:
            raise StreamingContextBusy(
                f"{self._context_owner(active)} runs a StreamingContext on this worker, and "
                "Spark runs one per JVM: give @on_streaming_context functions a context of "
                "their own with maxJobs 1, or port them to Structured Streaming "
                "(docs/streaming.md)")
        _quiet_dstream_deprecation()
        ssc = StreamingContext(self._spark.sparkContext, batch_s)
        if job_id is None:  # called outside a job (a local run): nothing to follow
            return ssc
        stream = ContextStream(ssc, batch_s)
        ssc.addStreamingListener(_batch_listener(
            stream, started=lambda: self._context_started(job_id, stream),
            report=lambda snapshot: self.report(job_id, snapshot)))
        with self._lock:
            self._jobs[job_id].stream = stream
        return ssc

    def follow(self, job_id: str, value: Any) -> Any:
        """What the job's function returned, or, if it left a stream running, that stream's
        last progress once it ends by itself. Raises the stream's error if it fails, and
        StreamStopped if it is stopped by ``stop``."""
        job, stream = self._taken(job_id, value)
        following = job.following if job is not None else Unfollowed()
        if stream is None:
            if job is not None and isinstance(job.stream, ContextStream) and job.stream.started:
                # It ended before its function returned: Spark's error was raised in the
                # function, or its cancel stopped it, and the function returned.
                _stopped(job.stream)
                self._report(job_id, job.stream, None, active=False)
                following.note("INFO", f"{job.stream.description} stopped")
                if job.stop_requested:
                    raise StreamStopped(f"{job.stream.description} was stopped")
            return value
        self._sweep()
        if isinstance(stream, QueryStream):  # a StreamingContext announced its own start
            following.began(stream.description)
        with self._lock:
            stop_now = job is not None and job.stop_requested and not stream.stop_sent
            stream.stop_sent = stream.stop_sent or stop_now
        if stop_now:  # cancelled while its function ran
            stream.stop()
        return self._follow(job_id, job, stream, following)

    def stop(self, job_id: str) -> None:
        """Stop the job's stream (a cancel, a timeout): cheap, and callable again and again.
        Stopping waits for Spark, so it runs on a thread of its own; the job's thread sees the
        stream end."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.stop_requested = True
            stream = job.stream
            if (stream is None or stream.stop_sent
                    or (isinstance(stream, ContextStream) and not stream.started)):
                return  # the next call (the watchdog's, each tick) tries again
            stream.stop_sent = True
            # Started under the lock: the job's thread may join it as soon as it is set.
            stream.stopper = threading.Thread(target=_stop, args=(stream,),
                                              name=f"stop-stream-{job_id}", daemon=True)
            stream.stopper.start()

    # -- inside -------------------------------------------------------------------------------

    def _taken(self, job_id: str, value: Any) -> tuple[_Job | None, Stream | None]:
        """The job (None outside a job), and the stream to follow: a query its function
        returned, or its StreamingContext, still running."""
        from pyspark.sql.streaming import StreamingQuery

        query = QueryStream(value) if isinstance(value, StreamingQuery) else None
        superseded = None
        with self._lock:  # one step, or a sweep in between would take the query for an orphan
            job = self._jobs.get(job_id)
            if job is None:
                return None, query
            job.calling = False
            if query is not None:
                if isinstance(job.stream, ContextStream):
                    superseded = job.stream  # handed, but the function returned a query
                job.stream = query
                self._followed.add(query.run_id)
            handed = job.stream
        if superseded is not None and _running(superseded):
            _stop(superseded)
        if query is not None:
            return job, query
        if isinstance(handed, ContextStream) and handed.started and handed.running():
            return job, handed
        return job, None

    def _follow(self, job_id: str, job: _Job | None, stream: Stream,
                following: Following) -> dict[str, Any]:
        last: dict[str, Any] | None = None
        try:
            while not stream.wait(POLL_S):
                if stream.polled:
                    last = self._report(job_id, stream, last)
        except Exception:
            self._report_quietly(job_id, stream)
            following.note("ERROR", f"{stream.description} failed")
            raise
        _stopped(stream)
        final = self._report(job_id, stream, last, active=False)
        if job is not None and job.stop_requested:
            following.note("INFO", f"{stream.description} stopped")
            raise StreamStopped(f"{stream.description} was stopped")
        following.note("INFO", f"{stream.description} ended by itself")
        return final

    def _report(self, job_id: str, stream: Stream, last: dict[str, Any] | None,
                active: bool | None = None) -> dict[str, Any]:
        snapshot = (stream.snapshot() if isinstance(stream, QueryStream)
                    else stream.snapshot(active))
        if active is False:
            snapshot["active"] = False
        if snapshot != last:
            self.report(job_id, snapshot)
        return snapshot

    def _report_quietly(self, job_id: str, stream: Stream) -> None:
        """The stream's last progress, marked ended (the job's progress must not show a stream
        that its end stopped as running): unless Spark cannot be read any more."""
        try:
            self._report(job_id, stream, None, active=False)
        except Exception:
            log.warning("job %s: the last progress of its %s cannot be read", job_id,
                        stream.description, exc_info=True)

    def _context_started(self, job_id: str, stream: ContextStream) -> None:
        """A handed StreamingContext started: its function now only waits on it, so it does
        not hold up the sweep of orphaned queries."""
        stream.started = True
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.calling = False
        if job is not None:
            job.following.began(stream.description)
        self.report(job_id, stream.snapshot(active=True))

    def _context_owner(self, ssc: Any) -> str:
        with self._lock:
            for job_id, job in self._jobs.items():
                if isinstance(job.stream, ContextStream) and job.stream.ssc is ssc:
                    return f"job {job_id}"
        return "a function"

    def _sweep(self) -> None:
        """Stop the active queries that no job follows, if no function is running: one that
        is could have started them, and not returned them yet."""
        with self._lock:
            if any(job.calling for job in self._jobs.values()):
                return
            begun = self._begun
        active = {str(query.runId): query for query in self._manager.active}
        with self._lock:
            if self._begun != begun or any(job.calling for job in self._jobs.values()):
                return
            live = {job.stream.run_id for job in self._jobs.values()
                    if isinstance(job.stream, QueryStream)}
            self._followed = (self._followed & set(active)) | live
            orphans = [query for run_id, query in active.items()
                       if run_id not in self._followed]
        for query in orphans:
            orphan = QueryStream(query)
            log.warning("stopping %s: a function started it, and no job returned it",
                        orphan.description)
            _stop(orphan)


def _running(stream: Stream) -> bool:
    try:
        return stream.running()
    except Exception:  # Spark is going away: nothing left to stop
        return False


def _stopped(stream: Stream) -> None:
    """Wait for a cancel's stop of ``stream`` to finish. Spark calls a query ended as soon as
    its stop begins (``awaitTermination`` returns ``not isActive``), yet it runs, and is listed
    active, until its batch under way ends (a Python ``foreachBatch`` is not interrupted): the
    job must not be recorded cancelled while its query still runs. A stop that never returns
    holds the job past its cancel grace, and the watchdog replaces the worker."""
    if stream.stopper is not None:
        stream.stopper.join()


def _stop(stream: Stream) -> None:
    try:
        stream.stop()
    except Exception:
        log.warning("stopping %s failed", stream.description, exc_info=True)


def _batch_listener(stream: ContextStream, started: Callable[[], None],
                    report: Callable[[dict[str, Any]], None]) -> Any:
    """A StreamingListener that reports each completed batch of ``stream``."""
    from pyspark.streaming.listener import StreamingListener

    class BatchListener(StreamingListener):
        def onStreamingStarted(self, streamingStarted: Any) -> None:
            _guarded(started)

        def onBatchCompleted(self, batchCompleted: Any) -> None:
            _guarded(lambda: report(stream.batch_done(batchCompleted.batchInfo())))

    return BatchListener()


def _guarded(call: Callable[[], None]) -> None:
    # Called from py4j's callback server: an exception would only reach Spark's log.
    try:
        call()
    except Exception:
        log.exception("streaming listener failed")


def _quiet_dstream_deprecation() -> None:
    """pyspark warns at every StreamingContext that DStreams are deprecated: sparkgate makes
    the context, not the function, and the warning would be an ERROR line in the job's log
    (docs/streaming.md says it once). Added each time: a filter already there only moves to
    the front, and one that something reset is back."""
    warnings.filterwarnings("ignore", message="DStream is deprecated", category=FutureWarning)
