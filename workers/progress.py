"""A running job's progress: what Spark has done so far for the job's Spark job group.

The worker runs each job in its own thread under ``sc.setJobGroup(job.id, ...)``, so everything
Spark runs for that job — however many actions the function performs — carries the job's id as
its group. :class:`ProgressTracker` polls ``sc.statusTracker()`` for the groups it is told to
watch and hands each changed snapshot to a callback (the worker stores and publishes it).

Snapshot (plain ints and one float, ready for ``json.dumps``)::

    {"jobs":   {"done": 1, "total": 2},          # Spark jobs (actions): done = SUCCEEDED
     "stages": {"done": 1, "total": 2},          # done = every task of the stage completed
     "tasks":  {"done": 8, "total": 16, "active": 2, "failed": 0},
     "percent": 50.0}                            # tasks done / total, 0.0 .. 100.0

A streaming job (workers/streaming.py) adds ``"streaming": {...}``, its stream's own progress
(:meth:`ProgressTracker.streaming`). From then on its Spark counts are those of its function
before the stream: a stream's batches are its own Spark jobs, without end.

``percent`` is rounded *down* to one decimal, so 100.0 means every known task completed. With
no task known yet it is 0.0, except when every Spark job of the group succeeded without running
a task (an action on an empty RDD), which is 100.0. A job that ran no Spark code at all has the
all-zero snapshot :func:`empty_snapshot`, and its callback is never called.

Why the counts are kept, not just read: the status tracker is weakly consistent and forgets
(``spark.ui.retainedJobs`` / ``retainedStages``; a stage it does not know yet or any more reads
as ``None``). Within one watch, everything seen is kept: a Spark job or stage that Spark forgets
still counts, with what it was last seen with, and a retried stage attempt (which reports only
the tasks it re-runs) keeps the stage's total. So totals never go backwards because of Spark's
bookkeeping.

The one deliberate exception, as in Spark's own UI: a stage that a *succeeded* Spark job lists
but never ran (its output was already computed, e.g. a shuffle reused by a second action, or an
adaptive query plan) is "skipped" and is left out of the stage and task counts. Spark can only
tell that when the Spark job ends, so until then such a stage is counted as pending, and the
totals drop by it once, when its Spark job succeeds. Without this a finished job would stay
below 100 % forever.

Known limits:

- A Spark job that starts and is forgotten by Spark between two reads is never seen. Only a
  group that runs more Spark jobs than ``spark.ui.retainedJobs`` within one interval hits this.
- Stages of failed Spark jobs that never ran stay in the totals as not done: the function saw
  that action fail, and its progress says so.
- Counts come from Spark's listener bus, which lags the tasks themselves by a few ms
  (the final read waits for it, briefly). A Spark job the bus has not even announced when
  the final read is made is not counted: it would have to lag a whole Spark job behind.
- A stage seen complete is not read again (that keeps a poll's py4j calls to the stages still
  running). If its output is lost and Spark re-runs part of it, that re-run is not shown.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, dict], None]

SUCCEEDED = "SUCCEEDED"
#: Statuses after which a Spark job's stages no longer change: read them once more, then stop.
FINAL_STATUSES = frozenset({SUCCEEDED, "FAILED"})
#: Pause between the reads of ``unwatch`` while it waits for Spark's listener bus to catch up.
SETTLE_POLL_S = 0.002


def empty_snapshot() -> dict[str, Any]:
    """The snapshot of a job that has not run (or never runs) any Spark code: all zeros."""
    return {
        "jobs": {"done": 0, "total": 0},
        "stages": {"done": 0, "total": 0},
        "tasks": {"done": 0, "total": 0, "active": 0, "failed": 0},
        "percent": 0.0,
    }


@dataclass
class _StageSeen:
    """What was seen of one Spark stage, across its attempts.

    A retried attempt (after a fetch failure) runs only the partitions still missing, and Spark
    reports that attempt's own counts: ``numTasks`` = missing partitions. So the stage's total
    stays that of the first attempt seen, and tasks done = partitions not re-run + those the
    current attempt completed. Failed tasks add up over attempts.
    """

    total: int = 0
    done: int = 0
    active: int = 0
    failed: int = 0
    attempt: int = -1
    kept: int = 0  # done by earlier attempts and not re-run by this one
    failed_before: int = 0  # failed in earlier attempts

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.done >= self.total

    def update(self, info: Any | None) -> None:
        """Merge one ``SparkStageInfo`` (``None``: not known yet, or already forgotten)."""
        if info is None:
            # Spark forgets only stages that are no longer running: nothing is active in them.
            self.active = 0
            return
        if info.currentAttemptId != self.attempt:
            self._new_attempt(info.currentAttemptId, info.numTasks)
        self.done = min(self.total, self.kept + info.numCompletedTasks)
        self.failed = self.failed_before + info.numFailedTasks
        self.active = 0 if self.complete else info.numActiveTasks

    def _new_attempt(self, attempt: int, num_tasks: int) -> None:
        if self.attempt < 0:
            self.total = num_tasks
        else:
            self.kept = max(0, self.total - num_tasks)
            self.failed_before = self.failed
        self.attempt = attempt


@dataclass
class _JobSeen:
    """What was seen of one Spark job of the group: its last known status and its stages."""

    status: str = "UNKNOWN"
    stage_ids: tuple[int, ...] = ()

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass
class _Watch:
    """One watched group. ``lock`` serializes the tracker thread with ``unwatch`` (a read, and
    the callback that follows it), so no callback for a job runs after its ``unwatch`` returns.
    """

    group: str
    jobs: dict[int, _JobSeen] = field(default_factory=dict)
    stages: dict[int, _StageSeen] = field(default_factory=dict)
    last_sent: dict[str, Any] = field(default_factory=empty_snapshot)
    closed: bool = False
    failing: bool = False
    # What the job's end was recorded with (``ending``): the final read reports only a change.
    recorded: dict[str, Any] | None = None
    # A streaming job's stream's progress; once set, Spark's counts are no longer read.
    streaming: dict[str, Any] | None = None
    # How many Spark jobs the JVM had submitted (any group) by a moment before the watch
    # began (None: not known): while that count has not moved, the group has none.
    submitted_before: int | None = None
    # Its function returned having submitted no Spark job: there is nothing left to read.
    quiet: bool = False
    # When the tracker's thread polls it next (time.monotonic()).
    due: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock)

    def read(self, tracker: Any) -> dict[str, Any]:
        """Read the group from Spark's status tracker, merge it in, return the new snapshot."""
        if self.streaming is not None:
            return self.snapshot()
        for job_id in tracker.getJobIdsForGroup(self.group):
            self.jobs.setdefault(job_id, _JobSeen())
        for job_id, job in self.jobs.items():
            if not job.final:  # a final job's stages were read when it was first seen final
                self._read_job(tracker, job_id, job)
        return self.snapshot()

    def _read_job(self, tracker: Any, job_id: int, job: _JobSeen) -> None:
        info = tracker.getJobInfo(job_id)
        if info is not None:
            job.status = str(info.status)
            job.stage_ids = tuple(info.stageIds)
        # Stages after the job's status: a job read as final has final stage counts.
        for stage_id in job.stage_ids:
            stage = self.stages.setdefault(stage_id, _StageSeen())
            if not stage.complete:
                stage.update(tracker.getStageInfo(stage_id))

    def snapshot(self) -> dict[str, Any]:
        counts = summarize(self.jobs, self.stages)
        return counts if self.streaming is None else {**counts, "streaming": self.streaming}

    def settled(self) -> bool:
        """Every Spark job seen has ended: its counts will not change any more."""
        return self.streaming is not None or all(job.final for job in self.jobs.values())


def summarize(jobs: dict[int, _JobSeen], stages: dict[int, _StageSeen]) -> dict[str, Any]:
    """Build the JSON snapshot from what was seen (see the module docstring for the shape)."""
    counted = [stages.get(sid, _StageSeen()) for sid in _stages_to_count(jobs, stages)]
    jobs_done = sum(job.status == SUCCEEDED for job in jobs.values())
    tasks_total = sum(stage.total for stage in counted)
    tasks_done = sum(stage.done for stage in counted)
    return {
        "jobs": {"done": jobs_done, "total": len(jobs)},
        "stages": {"done": sum(stage.complete for stage in counted), "total": len(counted)},
        "tasks": {
            "done": tasks_done,
            "total": tasks_total,
            "active": sum(stage.active for stage in counted),
            "failed": sum(stage.failed for stage in counted),
        },
        "percent": _percent(tasks_done, tasks_total, all_succeeded=bool(jobs) and
                            jobs_done == len(jobs)),
    }


def _stages_to_count(jobs: dict[int, _JobSeen], stages: dict[int, _StageSeen]) -> list[int]:
    """Every stage of the group's Spark jobs, each once, minus the ones they skipped."""
    listed_by: dict[int, list[_JobSeen]] = {}
    for job in jobs.values():
        for stage_id in job.stage_ids:
            listed_by.setdefault(stage_id, []).append(job)
    return sorted(sid for sid, listing in listed_by.items()
                  if not _skipped(stages.get(sid), listing))


def _skipped(stage: _StageSeen | None, listing: Iterable[_JobSeen]) -> bool:
    """A stage that every Spark job listing it succeeded without completing was skipped."""
    complete = stage is not None and stage.complete
    return not complete and all(job.status == SUCCEEDED for job in listing)


def _percent(done: int, total: int, *, all_succeeded: bool) -> float:
    if total == 0:
        return 100.0 if all_succeeded else 0.0
    # Rounded down: 100.0 only when every task is done, never a rounded-up 99.96.
    return math.floor(1000 * done / total) / 10


class ProgressTracker:
    """Polls Spark's status tracker for the watched job groups and reports changed snapshots.

    One daemon thread serves every watched job of the worker: every interval from a job's watch
    (the first read one interval after it: none competes with the job's start, and a job shorter
    than that is only read at its end) it reads the job's group and calls
    ``on_progress(job_id, snapshot)`` if its snapshot changed since the last call (never for an
    unchanged or all-zero one). While the JVM has submitted no Spark job since the watch began
    (one py4j call reads its count), the group is not read: it has none. So the end of a job
    whose function ran no Spark job (a no-op) costs that one call, and no final read.

    The callback runs on that thread, outside the tracker's lock (it may call ``watch``/
    ``unwatch``) but holding that job's own lock, so a slow callback delays that job's
    ``unwatch`` (and every job's next read: keep it quick, e.g. hand off to a queue). An
    exception in it is logged and tracking goes on.
    With nothing watched the thread only wakes once an interval: no py4j calls. Calling
    py4j from this thread is safe: py4j gives each thread its own connection.

    A job's end is not held up by Spark's bookkeeping: ``ending`` (no read) gives what the polls
    saw for the end to be recorded with, and once it is, ``ended`` has this thread make the
    final read (``unwatch``'s, listener bus lag included) and report it through the callback.
    """

    def __init__(self, spark_context: Any, on_progress: ProgressCallback,
                 interval_s: float = 0.5, *, settle_s: float = 0.5) -> None:
        self._tracker = spark_context.statusTracker()
        self._submitted = _submitted_jobs_counter(spark_context)
        self._last_submitted = self._count_submitted()
        self._on_progress = on_progress
        self.interval_s = interval_s
        self.settle_s = settle_s
        self._watches: dict[str, _Watch] = {}
        self._ended: list[_Watch] = []
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="sparkgate-progress", daemon=True)
        self._thread.start()

    def watch(self, job_id: str) -> None:
        """Start tracking the Spark job group named ``job_id`` (again: no effect)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("progress tracker is closed")
            if job_id not in self._watches:
                # Its first poll one interval on: a job shorter than that is never polled
                # (its end has its counts), and no read competes with its start.
                # No notify: the thread wakes every interval anyway (``_wait_s``), and a
                # wake-up per job is a cost a no-op job would pay.
                self._watches[job_id] = _Watch(group=job_id,
                                               submitted_before=self._last_submitted,
                                               due=time.monotonic() + self.interval_s)

    def unwatch(self, job_id: str) -> dict[str, Any] | None:
        """Stop tracking ``job_id`` and return its final snapshot (``None`` if not watched).

        It reads the group once more first: a job shorter than the interval still reports its
        final counts. Spark's status tracker is fed by its listener bus, which can lag an action
        that has already returned by a few ms (more on a loaded machine): while a Spark job seen
        is not ended yet it reads again, for at most ``settle_s``. Usually the first read is
        final and this costs one read.

        The final snapshot is returned, not passed to the callback. Waits for a callback for
        this job that is under way; none starts after this returns.
        """
        with self._cond:
            watch = self._watches.pop(job_id, None)
        if watch is None:
            return None
        quiet = self._ran_no_spark_job(watch)
        with watch.lock:
            watch.closed = True
            return watch.snapshot() if quiet else self._final_read(watch)

    def ending(self, job_id: str) -> dict[str, Any] | None:
        """The job's function has returned: stop polling it and give what was seen so far,
        without reading Spark (``None`` if not watched). Call ``ended`` once the job's end is
        recorded with it."""
        with self._cond:
            watch = self._watches.get(job_id)
        if watch is None:
            return None
        quiet = self._ran_no_spark_job(watch)
        with watch.lock:  # waits for a poll under way, whose callback then comes first
            watch.closed = True
            watch.quiet = quiet
            watch.recorded = watch.snapshot()
            return watch.snapshot()

    def ended(self, job_id: str) -> None:
        """Stop tracking ``job_id`` without waiting: this tracker's thread makes the final read
        (as ``unwatch`` does) and calls the callback with it, unless it is what ``ending`` gave.
        Final reads still pending when the tracker closes are made before its thread stops."""
        with self._cond:
            watch = self._watches.pop(job_id, None)
            if watch is not None and not watch.quiet:  # a quiet one's end has its counts
                self._ended.append(watch)
                self._cond.notify_all()

    def streaming(self, job_id: str, progress: dict[str, Any]) -> None:
        """The progress of the job's stream: reported at once (if it changes the snapshot),
        from the caller's thread, and kept in every later snapshot of the job."""
        with self._cond:
            watch = self._watches.get(job_id)
        if watch is None:
            return
        with watch.lock:
            watch.streaming = copy.deepcopy(progress)
            snapshot = watch.snapshot()
            if watch.closed or snapshot == watch.last_sent:
                return
            watch.last_sent = snapshot
            self._notify(job_id, copy.deepcopy(snapshot))

    def _ran_no_spark_job(self, watch: _Watch) -> bool:
        """Whether the watched job's function submitted no Spark job at all (it returned): one
        cheap read of the JVM's count of submitted jobs, instead of the group's reads (and a
        no-op function's end needs no final read). False when it cannot tell."""
        if watch.submitted_before is None or watch.jobs or watch.streaming is not None:
            return False
        count = self._count_submitted()
        return count is not None and count == watch.submitted_before

    def _count_submitted(self) -> int | None:
        """How many Spark jobs the JVM has submitted so far, any group (None: not known)."""
        if self._submitted is None:
            return None
        try:
            count = int(self._submitted())
        except Exception:
            return None  # Spark is going away: the status tracker's reads tell what they can
        self._last_submitted = count
        return count

    def _final_read(self, watch: _Watch) -> dict[str, Any]:
        deadline = time.monotonic() + self.settle_s
        while True:
            snapshot = self._read(watch)
            if snapshot is None:
                return watch.snapshot()  # Spark cannot be read: what was seen is all there is
            if watch.settled() or time.monotonic() >= deadline:
                return snapshot
            time.sleep(SETTLE_POLL_S)

    def watched(self) -> list[str]:
        """The job ids being tracked now."""
        with self._cond:
            return list(self._watches)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and forget every watch (no snapshot is returned for them), once the
        final reads of the jobs already ``ended`` are made."""
        with self._cond:
            self._closed = True
            self._watches.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._ended or self._closed or self._due()):
                    self._cond.wait(self._wait_s())
                ended, self._ended = self._ended, []
                closed = self._closed
                due = [] if closed else self._due()
            for watch in ended:
                self._report_final(watch)
            if closed:
                return
            for watch in due:
                self._poll(watch)
                watch.due = time.monotonic() + self.interval_s

    def _due(self) -> list[_Watch]:
        now = time.monotonic()
        return [watch for watch in self._watches.values() if watch.due <= now]

    def _wait_s(self) -> float:
        """Until the next poll is due; an interval with nothing watched (a watch added
        meanwhile is due one interval after it, so its first read is at most that late)."""
        if not self._watches:
            return self.interval_s
        return max(0.0, min(watch.due for watch in self._watches.values()) - time.monotonic())

    def _report_final(self, watch: _Watch) -> None:
        with watch.lock:
            final = self._final_read(watch)
        if final != watch.recorded:
            self._notify(watch.group, final)

    def _poll(self, watch: _Watch) -> None:
        # Held by someone else only while unwatch() ends this watch: skip it, don't wait.
        if not watch.lock.acquire(blocking=False):
            return
        try:
            self._poll_locked(watch)
        finally:
            watch.lock.release()

    def _poll_locked(self, watch: _Watch) -> None:
        if watch.closed or self._ran_no_spark_job(watch):  # nothing to read yet
            return
        snapshot = self._read(watch)
        if snapshot is None or snapshot == watch.last_sent:
            return
        watch.last_sent = snapshot
        # A copy: a callback that edits its snapshot must not change what "changed" means.
        self._notify(watch.group, copy.deepcopy(snapshot))

    def _read(self, watch: _Watch) -> dict[str, Any] | None:
        """One read of ``watch``; ``None`` if Spark could not be read (logged once per streak,
        not every interval: a stopped SparkContext fails every read)."""
        try:
            snapshot = watch.read(self._tracker)
        except Exception:
            if not watch.failing:
                log.warning("cannot read Spark progress of job %s", watch.group, exc_info=True)
            watch.failing = True
            return None
        watch.failing = False
        return snapshot

    def _notify(self, job_id: str, snapshot: dict[str, Any]) -> None:
        try:
            self._on_progress(job_id, snapshot)
        except Exception:
            log.exception("progress callback failed for job %s", job_id)


def _submitted_jobs_counter(spark_context: Any) -> Callable[[], int] | None:
    """A call that reads how many Spark jobs the JVM has submitted (the DAG scheduler's job
    ids, any group): one py4j call, where a group's read takes several. None if it cannot be
    had (a stand-in SparkContext)."""
    try:
        counter: Callable[[], int] = spark_context._jsc.sc().dagScheduler().numTotalJobs
    except Exception:
        return None
    return counter
