"""Run one job in a worker thread: claim it, call the function with the warm session, record
the outcome. The claim and the outcome are each one conditional state transition, so a job runs
at most once and a cancel that lands first always wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from redis import Redis
from sqlalchemy.exc import DBAPIError

from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import IllegalTransition, NotFound
from sparkgate.jobs.events import lifecycle_event, logs_event, worker_assigned_event
from sparkgate.jobs.logs.capture import JobLogCapture
from sparkgate.jobs.logs.lines import LogLine, mist_level
from sparkgate.jobs.publishing import Announcement
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, Store
from sparkgate.jobs.timeouts import missed_start, perform_timeout_message
from sparkgate.workers.artifacts import FunctionLoader
from sparkgate.workers.calling import call_function, describe_error
from sparkgate.workers.engines import Engine, Progress
from sparkgate.workers.watchdog import Interruption, Watchdog

log = logging.getLogger("sparkgate.worker")

# About a minute in all: a database restart or failover, not a lasting outage.
RECORD_RETRY_DELAYS_S = (0.5, 1, 2, 4, 8, 15, 30)


@dataclass(frozen=True)
class Outcome:
    result: Any = None
    error: str | None = None
    elapsed_ms: int | None = None  # how long the function ran; None: it never did


class JobRunner:
    def __init__(self, *, store: Store, queue: JobQueue, redis: Redis, loader: FunctionLoader,
                 engine: Engine, worker_id: str, capture: JobLogCapture, watchdog: Watchdog,
                 progress: Progress,
                 max_result_bytes: int = Settings.max_result_bytes,
                 default_perform_timeout_ms: int | None = None) -> None:
        """``default_perform_timeout_ms``: the context's performTimeout, which a job gets
        when its submission sets none; it does not bound a stream (``_JobFollowing``)."""
        self.store = store
        self.queue = queue
        self.redis = redis
        self.loader = loader
        self.engine = engine
        self.worker_id = worker_id
        self.capture = capture
        self.watchdog = watchdog
        self.progress = progress
        self.max_result_bytes = max_result_bytes
        self.default_perform_timeout_ms = default_perform_timeout_ms

    def run(self, job_id: str, slot: int) -> None:
        claimed = self._claim(job_id)
        if claimed is None:
            return
        job, late = claimed
        start = self._announce_start(job, runs=late is None)
        try:
            if late is not None:
                self._record(job, Outcome(error=late), start)
                return
            self.watchdog.started(job.id, job.perform_timeout_ms)
            self.progress.watch(job.id)
            self.capture.add(job.id, "INFO", f"started on worker {self.worker_id}")
            self._record(job, self._execute(job, slot), start)
        finally:
            start.close()

    def _claim(self, job_id: str) -> tuple[Job, str | None] | None:
        """The job, claimed, and why it is too late to run it (None: it runs); None if it is
        not to be run (cancelled or failed while queued)."""
        claimed_at = now_ms()
        try:
            job = self.store.transition(
                job_id, JobStatus.STARTED, worker_id=self.worker_id, start_time=claimed_at
            )
        except (IllegalTransition, NotFound):
            self.queue.done(job_id)
            return None
        return job, missed_start(job, claimed_at)

    def _announce_start(self, job: Job, runs: bool) -> Announcement:
        """RQ's copy forgotten, worker-assigned and (if it runs) started announced, sent at
        once; the replies are read with the end's, which follows on the same connection.
        Best effort: the job is claimed in the database whatever Redis does."""
        events = [worker_assigned_event(job)] + ([lifecycle_event(job)] if runs else [])
        return Announcement(self.redis, *events,
                            along=lambda pipe: self.queue.done(job.id, pipeline=pipe))

    def _execute(self, job: Job, slot: int) -> Outcome:
        started = time.perf_counter()
        following = _JobFollowing(self, job)
        with (self.capture.job(job.id, hand_over=False),
              self.engine.running(job.id, f"{job.function} ({job.id})", slot, following)):
            try:
                loaded = self.loader.load(job.artifact_sha1 or "", job.file_path, job.class_name)
                following.declared = loaded.signature.streaming
                outcome = Outcome(result=call_function(
                    loaded, job.arguments, self.engine, self.max_result_bytes,
                    then=lambda value: self.engine.follow(job.id, value)))
            except BaseException as exc:
                outcome = Outcome(error=describe_error(exc))
        # The job's last lines are stored with its end, in one transaction: its logs are
        # complete before its end is announced, for the price of one commit.
        return replace(outcome, elapsed_ms=round((time.perf_counter() - started) * 1000))

    def _record(self, job: Job, outcome: Outcome, start: Announcement) -> None:
        """Write the job's end with its last log lines, retrying while the database is
        unreachable: a job whose end is lost would stay started for ever (the reconciler
        catches it if we give up)."""
        why = self.watchdog.ended(job.id)
        if why is Interruption.TIMEOUT:
            # Bounded means bounded: a result that comes after the deadline does not count.
            outcome = Outcome(error=perform_timeout_message(job.perform_timeout_ms),
                              elapsed_ms=outcome.elapsed_ms)
        # The end goes out with the progress seen so far; the final counts follow (in their
        # own update and event) once Spark's listener bus has caught up: the caller is not
        # kept waiting for Spark's bookkeeping.
        fields = {"end_time": now_ms(), "progress": self.progress.ending(job.id)}
        lines = self.capture.take_remaining(job.id)
        if outcome.elapsed_ms is not None:
            # Written once the outcome is final, never through the capture (whose flusher
            # could store it first): a job that ends otherwise must not read "finished".
            lines.append(_end_line(job, outcome, why))
        try:
            self._write_end_retrying(job, outcome, fields, lines, start)
        finally:
            self.progress.ended(job.id)

    def _write_end_retrying(self, job: Job, outcome: Outcome, fields: dict[str, Any],
                            lines: list[LogLine], start: Announcement) -> None:
        for delay_s in RECORD_RETRY_DELAYS_S:
            try:
                self._write_end(job, outcome, fields, lines, start)
                return
            except DBAPIError as exc:
                log.warning("job %s: recording its end failed (%s); retrying in %ss", job.id,
                            exc.__class__.__name__, delay_s)
                time.sleep(delay_s)
        try:
            self._write_end(job, outcome, fields, lines, start)
        except Exception:
            self.capture.give_back(job.id, lines)
            raise

    def _write_end(self, job: Job, outcome: Outcome, fields: dict[str, Any],
                   lines: list[LogLine], start: Announcement) -> None:
        try:
            if outcome.error is None:
                final = self.store.transition(job.id, JobStatus.FINISHED, result=outcome.result,
                                              logs=lines, **fields)
            else:
                final = self._fail_or_cancel(job.id, outcome.error, fields, lines)
        except IllegalTransition as exc:
            # Someone else ended it (the reconciler's "worker lost", a stop): their outcome
            # stands, and the lines are stored apart, without a closing line that belies it.
            self.capture.give_back(job.id, _overruled(lines, outcome, exc.current))
            return
        events = ([logs_event(job.id, lines)] if lines else []) + [lifecycle_event(final)]
        start.then(*events)

    def _fail_or_cancel(self, job_id: str, error: str, fields: dict[str, Any],
                        lines: list[LogLine]) -> Job:
        # A job that fails while a cancel is under way failed *because* of the cancel.
        try:
            return self.store.transition(job_id, JobStatus.FAILED, only_from={JobStatus.STARTED},
                                         error=error, logs=lines, **fields)
        except IllegalTransition as exc:
            if exc.current != JobStatus.CANCELLING.value:
                raise
            return self.store.transition(job_id, JobStatus.CANCELLED, logs=lines, **fields)


class _JobFollowing:
    """A job whose function left a stream running (docs/streaming.md): its log says so, and
    a performTimeout that is only its context's default stops bounding it.

    A function declared to return a stream (``declared``) got no default when it was
    submitted. Of one that was not, the job row does not say whether its performTimeout was
    the submission's or its context's: one equal to the context's is taken for the default."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.runner = runner
        self.job = job
        self.declared = False  # known once the function is loaded

    def began(self, stream: str) -> None:
        self.note("INFO", f"{stream} started; the job runs until it stops")
        limit_ms = self.job.perform_timeout_ms
        if (self.declared or limit_ms is None
                or limit_ms != self.runner.default_perform_timeout_ms):
            return  # unbounded, or bounded by the submission itself
        if self.runner.watchdog.unbound(self.job.id):
            self.note("INFO", f"the context's performTimeout ({limit_ms} ms) does not bound a "
                              "stream; submit with ?performTimeout= to bound it")

    def note(self, level: str, message: str) -> None:
        self.runner.capture.add(self.job.id, level, message)


def _end_line(job: Job, outcome: Outcome, why: Interruption | None) -> LogLine:
    """The job's last log line. An interrupted job ends with the error Spark's cancel raised
    in it (a Java traceback), which says nothing about why it stopped: the line says why."""
    level, message = _end_message(job, outcome, why)
    return LogLine(now_ms(), mist_level(level), message)


def _end_message(job: Job, outcome: Outcome, why: Interruption | None) -> tuple[str, str]:
    elapsed_ms = outcome.elapsed_ms
    if outcome.error is None:
        return "INFO", f"finished in {elapsed_ms} ms"
    if why is Interruption.CANCEL:
        return "INFO", f"cancelled after {elapsed_ms} ms"
    if why is Interruption.TIMEOUT:
        return "ERROR", (f"failed after {elapsed_ms} ms: "
                         f"{perform_timeout_message(job.perform_timeout_ms)}")
    return "ERROR", f"failed after {elapsed_ms} ms: {outcome.error}"


def _overruled(lines: list[LogLine], outcome: Outcome, status: str | None) -> list[LogLine]:
    """A job's last lines when its end was recorded by someone else first: the closing line
    (the last one, for a job that ran) says its outcome was discarded."""
    if outcome.elapsed_ms is None:
        return lines
    note = (f"its function ended after {outcome.elapsed_ms} ms, but the job was already "
            f"{status}: that outcome is discarded")
    return [*lines[:-1], LogLine(now_ms(), "WARN", note)]
