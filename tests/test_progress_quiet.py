"""What a job whose function runs no Spark job costs the spark engine: no read of its group
(the JVM's count of submitted Spark jobs says there is none), and no final read."""

from __future__ import annotations

import threading
import time

import pytest

from sparkgate.workers.engines.spark import SparkEngine
from sparkgate.workers.progress import ProgressTracker, empty_snapshot
from tests.test_progress import CountingContext, Recorder


@pytest.fixture
def counted(spark) -> tuple[ProgressTracker, CountingContext, Recorder]:
    recorder = Recorder()
    tracker = ProgressTracker(spark.sparkContext, recorder, interval_s=0.01)
    context = CountingContext(spark.sparkContext.statusTracker())
    tracker._tracker = context  # every read of a group is counted
    yield tracker, context, recorder
    tracker.close()


def in_group(spark, group: str, work) -> None:
    """``work()`` in a thread of its own, in Spark job group ``group``, as a slot runs it."""
    def run() -> None:
        spark.sparkContext.setJobGroup(group, group, interruptOnCancel=True)
        work()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)


def test_a_job_that_runs_no_spark_job_reads_nothing_at_its_end(spark, counted) -> None:
    tracker, context, recorder = counted
    tracker.watch("quiet")
    in_group(spark, "quiet", lambda: time.sleep(0.1))  # several intervals: polls skip it
    assert tracker.ending("quiet") == empty_snapshot()
    tracker.ended("quiet")
    assert tracker.unwatch("quiet") is None
    time.sleep(0.1)
    assert context.calls == 0 and recorder.calls == []


def test_a_job_that_runs_spark_jobs_still_gets_its_final_counts(spark, counted) -> None:
    tracker, context, _ = counted
    tracker.watch("busy")
    in_group(spark, "busy", lambda: spark.range(10, numPartitions=2).count())
    final = tracker.unwatch("busy")
    assert final["jobs"]["done"] == final["jobs"]["total"] >= 1
    assert final["percent"] == 100.0 and context.calls > 0


def test_a_neighbours_spark_job_makes_the_quiet_job_read_its_group(spark, counted) -> None:
    tracker, context, _ = counted
    tracker.watch("quiet-too")
    spark.range(10).count()  # another group (none): the count moves, so it cannot tell
    assert tracker.unwatch("quiet-too") == empty_snapshot()
    assert context.calls > 0


def test_the_engine_still_sets_each_jobs_group(spark) -> None:
    engine = SparkEngine(spark)
    sc = spark.sparkContext
    with engine.running("group-x", "title", slot=0):
        assert sc.getLocalProperty("spark.jobGroup.id") == "group-x"
        assert sc.getLocalProperty("spark.scheduler.pool") == "slot-0"
