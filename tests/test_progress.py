"""Job progress from Spark's status tracker, against the real (session-wide) SparkSession.

Each "job" here is what a worker slot does: a thread that sets its own Spark job group (and
scheduler pool) and then runs Spark actions. Tasks sleep so that progress can be seen mid-way.
Spark functions are defined inside the tests: cloudpickle then ships them by value.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from operator import add
from typing import Any

import pytest
from pyspark.status import SparkJobInfo, SparkStageInfo

from sparkgate.workers.progress import ProgressTracker, empty_snapshot

INTERVAL_S = 0.05


class Recorder:
    """The callback: every (time, job id, snapshot) it was called with."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[float, str, dict]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, job_id: str, snapshot: dict) -> None:
        with self._lock:
            self.calls.append((time.monotonic(), job_id, snapshot))
        if self.fail:
            raise RuntimeError("callback broke")

    def snapshots(self, job_id: str, before: float = float("inf")) -> list[dict]:
        with self._lock:
            return [snap for at, jid, snap in self.calls if jid == job_id and at < before]

    def count(self) -> int:
        with self._lock:
            return len(self.calls)


class GroupThread(threading.Thread):
    """Runs ``work(sc)`` as a worker slot does: in its own job group and pool."""

    def __init__(self, sc: Any, work: Callable[[Any], Any], slot: int = 0) -> None:
        super().__init__(daemon=True)
        self.sc, self.work, self.slot = sc, work, slot
        self.group = f"job-{uuid.uuid4()}"
        self.error: BaseException | None = None
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        self.sc.setJobGroup(self.group, f"test ({self.group})", interruptOnCancel=True)
        self.sc.setLocalProperty("spark.scheduler.pool", f"slot-{self.slot}")
        self.started_at = time.monotonic()
        try:
            self.work(self.sc)
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.sc.setLocalProperty("spark.jobGroup.id", None)
            self.sc.setLocalProperty("spark.scheduler.pool", None)

    def finish(self) -> None:
        self.join(60)
        assert not self.is_alive(), "job thread did not finish"
        assert self.error is None, self.error


def slow_sums(actions: int, tasks: int, task_s: float) -> Callable[[Any], None]:
    """``actions`` Spark jobs of one stage of ``tasks`` tasks, each task ``task_s`` long."""
    def work(sc: Any) -> None:
        for _ in range(actions):
            sc.parallelize(range(tasks), tasks).map(lambda x: time.sleep(task_s) or x).sum()
    return work


def expected(jobs: int, stages: int, tasks: int) -> dict:
    """The final snapshot of a group whose Spark jobs all succeeded."""
    return {"jobs": {"done": jobs, "total": jobs}, "stages": {"done": stages, "total": stages},
            "tasks": {"done": tasks, "total": tasks, "active": 0, "failed": 0},
            "percent": 100.0}


@pytest.fixture
def sc(spark) -> Any:
    return spark.sparkContext


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def tracker(sc: Any, recorder: Recorder) -> Iterator[ProgressTracker]:
    tracker = ProgressTracker(sc, recorder, interval_s=INTERVAL_S)
    yield tracker
    tracker.close()


def assert_never_backwards(snapshots: list[dict]) -> None:
    for before, after in itertools.pairwise(snapshots):
        for part in ("jobs", "stages", "tasks"):
            for key in ("done", "total"):
                assert after[part][key] >= before[part][key], (part, key, before, after)
        assert after["percent"] >= before["percent"] or (
            after["tasks"]["total"] > before["tasks"]["total"]), (before, after)


def test_progress_is_reported_while_the_job_runs_and_unwatch_gives_the_final_counts(
        sc, tracker: ProgressTracker, recorder: Recorder) -> None:
    job = GroupThread(sc, slow_sums(actions=2, tasks=8, task_s=0.2))
    tracker.watch(job.group)
    job.start()
    job.finish()
    final = tracker.unwatch(job.group)

    assert final == expected(jobs=2, stages=2, tasks=16)
    during = recorder.snapshots(job.group, before=job.ended_at)
    dones = [snap["tasks"]["done"] for snap in during]
    assert len({d for d in dones if 0 < d < 16}) >= 3, dones  # seen mid-way, several times
    assert dones == sorted(dones)
    assert_never_backwards([*recorder.snapshots(job.group), final])
    # Percent is of the tasks known so far: 100.0 between the two actions is right.
    assert all(snap["percent"] == int(1000 * snap["tasks"]["done"] / snap["tasks"]["total"]) / 10
               for snap in during if snap["tasks"]["total"])
    assert {jid for _, jid, _ in recorder.calls} == {job.group}

    calls = recorder.count()
    time.sleep(5 * INTERVAL_S)
    assert recorder.count() == calls  # unwatched: silent
    assert tracker.unwatch(job.group) is None


def test_a_job_shorter_than_the_interval_still_reports_its_final_counts(sc, recorder) -> None:
    tracker = ProgressTracker(sc, recorder, interval_s=30)  # the thread never gets to poll
    try:
        job = GroupThread(sc, slow_sums(actions=3, tasks=2, task_s=0))
        tracker.watch(job.group)
        job.start()
        job.finish()
        assert tracker.unwatch(job.group) == expected(jobs=3, stages=3, tasks=6)
    finally:
        tracker.close()


def test_concurrent_jobs_each_count_only_their_own_tasks(
        sc, tracker: ProgressTracker, recorder: Recorder) -> None:
    first = GroupThread(sc, slow_sums(actions=2, tasks=4, task_s=0.15), slot=0)
    second = GroupThread(sc, slow_sums(actions=1, tasks=6, task_s=0.15), slot=1)
    for job in (first, second):
        tracker.watch(job.group)
    for job in (first, second):
        job.start()
    for job in (first, second):
        job.finish()

    assert first.started_at < second.ended_at and second.started_at < first.ended_at
    assert tracker.unwatch(first.group) == expected(jobs=2, stages=2, tasks=8)
    assert tracker.unwatch(second.group) == expected(jobs=1, stages=1, tasks=6)
    for job, tasks, jobs in ((first, 8, 2), (second, 6, 1)):
        snapshots = recorder.snapshots(job.group)
        assert snapshots, f"no progress for {job.group}"
        assert max(snap["tasks"]["total"] for snap in snapshots) <= tasks
        assert max(snap["jobs"]["total"] for snap in snapshots) <= jobs
        assert_never_backwards(snapshots)


def test_stages_a_job_skipped_are_not_counted(sc, spark, tracker: ProgressTracker) -> None:
    def reuse_shuffle(sc: Any) -> None:
        pairs = sc.parallelize(range(8), 4).map(lambda x: (x % 2, x)).reduceByKey(add, 2)
        pairs.collect()  # map stage (4 tasks) + reduce stage (2)
        pairs.collect()  # map stage skipped (its shuffle output exists) + reduce stage (2)

    job = GroupThread(sc, reuse_shuffle)
    tracker.watch(job.group)
    job.start()
    job.finish()
    assert tracker.unwatch(job.group) == expected(jobs=2, stages=3, tasks=8)

    # Adaptive query execution: each query stage is a Spark job, later ones skip earlier stages.
    query = GroupThread(sc, lambda sc: spark.range(1000).selectExpr("id % 3 AS k")
                        .groupBy("k").count().collect())
    tracker.watch(query.group)
    query.start()
    query.finish()
    final = tracker.unwatch(query.group)
    assert final["jobs"]["done"] == final["jobs"]["total"] >= 1
    assert final["stages"]["done"] == final["stages"]["total"] >= 1
    assert final["tasks"]["done"] == final["tasks"]["total"] >= 1
    assert final["percent"] == 100.0


def test_a_job_without_spark_work_reports_zeros_and_no_callbacks(
        sc, tracker: ProgressTracker, recorder: Recorder) -> None:
    python_only = GroupThread(sc, lambda sc: time.sleep(0.5))
    neighbour = GroupThread(sc, slow_sums(actions=1, tasks=4, task_s=0.1), slot=1)
    tracker.watch(python_only.group)
    python_only.start()
    neighbour.start()  # Spark work in another, unwatched group at the same time
    python_only.finish()
    neighbour.finish()

    assert tracker.unwatch(python_only.group) == empty_snapshot()
    assert recorder.calls == []


def test_a_failing_callback_does_not_stop_tracking(sc, caplog) -> None:
    recorder = Recorder(fail=True)
    tracker = ProgressTracker(sc, recorder, interval_s=INTERVAL_S)
    try:
        job = GroupThread(sc, slow_sums(actions=1, tasks=8, task_s=0.2))
        tracker.watch(job.group)
        with caplog.at_level(logging.ERROR, logger="sparkgate.workers.progress"):
            job.start()
            job.finish()
            assert tracker._thread.is_alive()
            final = tracker.unwatch(job.group)  # no callback after this: counts are settled
        assert final == expected(jobs=1, stages=1, tasks=8)
        dones = [snap["tasks"]["done"] for snap in recorder.snapshots(job.group)]
        assert len(set(dones)) >= 3, dones  # called again and again after it raised
        failures = [r for r in caplog.records if "progress callback failed" in r.getMessage()]
        assert len(failures) == len(dones)
        assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)
    finally:
        tracker.close()


class CountingContext:
    """A SparkContext stand-in whose status tracker counts the calls made to it."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self.calls = 0
        self._lock = threading.Lock()

    def statusTracker(self) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.tracker, name)

        def counted(*args: Any) -> Any:
            with self._lock:
                self.calls += 1
            return method(*args)
        return counted


def test_nothing_watched_means_no_polling_and_no_callbacks(sc, recorder: Recorder) -> None:
    context = CountingContext(sc.statusTracker())
    tracker = ProgressTracker(context, recorder, interval_s=0.01)
    try:
        job = GroupThread(sc, slow_sums(actions=2, tasks=4, task_s=0.1))
        job.start()
        time.sleep(0.3)
        assert context.calls == 0 and recorder.calls == []

        tracker.watch(job.group)  # mid-way: it starts reading at once
        deadline = time.monotonic() + 10
        while not recorder.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.calls and context.calls > 0
        tracker.unwatch(job.group)
        calls, reads = recorder.count(), context.calls
        job.finish()  # its Spark jobs go on after the unwatch
        time.sleep(0.1)
        assert (recorder.count(), context.calls) == (calls, reads)
    finally:
        tracker.close()
    assert not tracker._thread.is_alive()


class FakeStatusTracker:
    """Spark's status tracker as a table the test edits, to make it forget and retry."""

    def __init__(self) -> None:
        self.groups: dict[str, list[int]] = {}
        self.jobs: dict[int, SparkJobInfo] = {}
        self.stages: dict[int, SparkStageInfo] = {}

    def statusTracker(self) -> FakeStatusTracker:
        return self

    def getJobIdsForGroup(self, group: str) -> list[int]:
        return list(self.groups.get(group, []))

    def getJobInfo(self, job_id: int) -> SparkJobInfo | None:
        return self.jobs.get(job_id)

    def getStageInfo(self, stage_id: int) -> SparkStageInfo | None:
        return self.stages.get(stage_id)

    def job(self, job_id: int, status: str, *stage_ids: int) -> None:
        self.jobs[job_id] = SparkJobInfo(job_id, list(stage_ids), status)

    def stage(self, stage_id: int, tasks: int, done: int, active: int = 0, failed: int = 0,
              attempt: int = 0) -> None:
        self.stages[stage_id] = SparkStageInfo(stage_id, attempt, "s", tasks, active, done,
                                               failed)


def test_what_spark_forgets_or_retries_never_makes_totals_go_backwards(recorder) -> None:
    spark = FakeStatusTracker()
    tracker = ProgressTracker(spark, recorder, interval_s=3600)  # polls once, on watch
    tracker.watch("g")
    watch = tracker._watches["g"]

    def read(change: Callable[[], None]) -> dict:
        with watch.lock:  # the tracker's own read never sees a half-made change
            change()
            return watch.read(spark)

    def start() -> None:
        spark.groups["g"] = [0, 1]
        spark.job(0, "SUCCEEDED", 0)
        spark.stage(0, tasks=4, done=4)
        spark.job(1, "RUNNING", 1)
        spark.stage(1, tasks=4, done=2, active=2)
    assert read(start)["tasks"] == {"done": 6, "total": 8, "active": 2, "failed": 0}

    def forget_job_0_and_fail_a_task() -> None:
        spark.groups["g"] = [1]
        del spark.jobs[0], spark.stages[0]
        spark.stage(1, tasks=4, done=3, failed=1)
    snap = read(forget_job_0_and_fail_a_task)
    assert snap["jobs"] == {"done": 1, "total": 2}
    assert snap["stages"] == {"done": 1, "total": 2}
    assert snap["tasks"] == {"done": 7, "total": 8, "active": 0, "failed": 1}

    def retry_missing_partition() -> None:  # attempt 1 reports only the task it re-runs
        spark.stage(1, tasks=1, done=0, active=1, attempt=1)
    snap = read(retry_missing_partition)
    assert snap["tasks"] == {"done": 7, "total": 8, "active": 1, "failed": 1}
    assert snap["percent"] == 87.5

    def succeed() -> None:
        spark.stage(1, tasks=1, done=1, attempt=1)
        spark.job(1, "SUCCEEDED", 1)
    done = {**expected(jobs=2, stages=2, tasks=8)}
    done["tasks"] = {**done["tasks"], "failed": 1}
    assert read(succeed) == done

    def forget_everything() -> None:
        spark.groups.clear(), spark.jobs.clear(), spark.stages.clear()
    assert read(forget_everything) == done
    assert tracker.unwatch("g") == done
    tracker.close()


def test_unwatch_waits_briefly_for_spark_to_record_the_end_of_its_jobs(recorder) -> None:
    # Spark's listener bus can record a job's end a little after the action returned.
    spark = FakeStatusTracker()
    spark.groups["g"] = [0]
    spark.job(0, "RUNNING", 0)
    spark.stage(0, tasks=2, done=1, active=1)

    def listener_catches_up() -> None:  # in Spark's order: the task's end, then the job's
        spark.stage(0, tasks=2, done=2)
        spark.job(0, "SUCCEEDED", 0)

    tracker = ProgressTracker(spark, recorder, interval_s=3600, settle_s=10)
    try:
        tracker.watch("g")
        started = time.monotonic()  # before the timer starts: it fires 0.1 s after that
        threading.Timer(0.1, listener_catches_up).start()
        assert tracker.unwatch("g") == expected(jobs=1, stages=1, tasks=2)
        assert 0.1 <= time.monotonic() - started < 5

        # A job that does not end (say, still being cancelled): give up after settle_s.
        tracker.settle_s = 0.2
        spark.groups["h"] = [1]
        spark.job(1, "RUNNING", 1)
        spark.stage(1, tasks=4, done=1, active=3)
        tracker.watch("h")
        started = time.monotonic()
        final = tracker.unwatch("h")
        assert 0.2 <= time.monotonic() - started < 5
        assert final["jobs"] == {"done": 0, "total": 1}
        assert final["tasks"] == {"done": 1, "total": 4, "active": 3, "failed": 0}
    finally:
        tracker.close()
