"""What a job whose function runs no Spark job costs the spark engine: no read of its group
(the JVM's count of submitted Spark jobs says there is none), no final read, no sweep for
orphaned streaming queries while none was started."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sparkgate.workers.engines.spark import SparkEngine
from sparkgate.workers.progress import ProgressTracker, empty_snapshot
from sparkgate.workers.streaming import Streams, Unfollowed
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


class NoManager:
    """A StreamingQueryManager stand-in that fails the test if its queries are listed."""

    listed = 0

    @property
    def active(self) -> list[Any]:
        self.listed += 1
        return []


def test_the_sweep_lists_queries_only_once_one_was_started(spark) -> None:
    streams = Streams(spark)
    assert streams._starts is not None
    real, streams._manager = streams._manager, NoManager()
    for job in ("a", "b", "c"):
        streams.begin(job, Unfollowed())
        streams.end(job)
    assert streams._manager.listed == 1  # the first found none: the others needed no call

    streams._manager = real
    streams.begin("starts", Unfollowed())
    query = (spark.readStream.format("rate").load().writeStream.format("memory")
             .queryName("quiet_sweep_orphan").start())
    streams.end("starts")  # returned by no job: an orphan, found although the count moved
    assert not query.isActive


def test_the_engine_still_sets_each_jobs_group(spark) -> None:
    engine = SparkEngine(spark)
    sc = spark.sparkContext
    with engine.running("group-x", "title", slot=0):
        assert sc.getLocalProperty("spark.jobGroup.id") == "group-x"
        assert sc.getLocalProperty("spark.scheduler.pool") == "slot-0"
