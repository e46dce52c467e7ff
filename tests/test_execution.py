"""A worker's job execution, in this process: the real store, Redis and SparkSession.

``JobRunner`` is what each of a worker's slots runs; here the test plays the worker's loop
(pop the job id, hand it to the runner) so each behaviour can be provoked precisely.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from sparkgate.jobs import cancellation
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.events import events_channel, progress_event
from sparkgate.jobs.functions import Function
from sparkgate.jobs.logs.capture import JobLogCapture
from sparkgate.jobs.publishing import publish
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.signatures.reading import inspect_source
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, Store
from sparkgate.jobs.submission import SubmitRequest, submit
from sparkgate.workers.artifacts import FunctionLoader
from sparkgate.workers.engines.spark import SparkEngine
from sparkgate.workers.execution import JobRunner
from sparkgate.workers.progress import ProgressTracker
from sparkgate.workers.watchdog import Watchdog
from tests.conftest import function_source

WORKER_ID = "test-worker"


@pytest.fixture
def capture(store: Store) -> Iterator[JobLogCapture]:
    """Installed by the tests that need it, in the test body: pytest swaps sys.stdout
    between a fixture's setup and the test, which would undo an install made here."""
    capture = JobLogCapture(store.append_logs, flush_interval_s=0.1)
    yield capture
    capture.close()
    capture.uninstall()


@pytest.fixture
def runner(store: Store, catalog: Catalog, queue: JobQueue, redis: Redis, spark,
           capture: JobLogCapture, tmp_path: Path) -> Iterator[JobRunner]:
    sc = spark.sparkContext
    engine = SparkEngine(spark)
    watchdog = Watchdog(engine.cancel, lambda job_id, why: None, cancel_grace_s=30)
    progress = ProgressTracker(sc, store.set_progress, interval_s=0.1)
    yield JobRunner(store=store, queue=queue, redis=redis,
                    loader=FunctionLoader(catalog, tmp_path / "cache"), engine=engine,
                    worker_id=WORKER_ID, capture=capture, watchdog=watchdog, progress=progress)
    watchdog.close()
    progress.close()


def deploy(catalog: Catalog, file_name: str, function: str, name: str | None = None) -> str:
    content = function_source(file_name)
    catalog.put_artifact(file_name, content, replace_existing=True)
    signature = inspect_source(content.decode(), function, file_name)
    catalog.create_function(Function(name=name or function, path=file_name, class_name=function,
                                     default_context="default", signature=signature.to_dict()))
    return name or function


def enqueue(catalog: Catalog, store: Store, queue: JobQueue, function: str,
            arguments: dict | None = None, **options) -> str:
    return submit(catalog, store, queue, SubmitRequest(function=function,
                                                       arguments=arguments or {},
                                                       **options)).id


def run_next(runner: JobRunner, queue: JobQueue, slot: int = 0) -> str:
    job_id = queue.pop("default", 1)
    assert job_id is not None, "nothing queued"
    runner.run(job_id, slot)
    return job_id


class Events:
    """The job events published on Redis while the test runs, in order."""

    def __init__(self, redis: Redis) -> None:
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(events_channel(redis))
        self.pubsub.get_message(timeout=1.0)

    def names_for(self, job_id: str, until: str, timeout_s: float = 10.0) -> list[str]:
        names: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and until not in names:
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                event = json.loads(message["data"])
                if event["id"] == job_id and event["event"] != "logs":
                    names.append(event["event"])
        return names


def logs_of(store: Store, job_id: str) -> list[str]:
    return [line.message for line in store.job_logs(job_id)]


def test_a_spark_job_finishes_with_its_result_and_events(runner, catalog, store, queue, redis):
    deploy(catalog, "behaviours.py", "sum_range")
    events = Events(redis)
    job_id = enqueue(catalog, store, queue, "sum_range", {"n": 100})
    run_next(runner, queue)
    job = store.get_job(job_id)
    assert job.status is JobStatus.FINISHED
    assert job.result == 4950
    assert job.worker_id == WORKER_ID
    assert job.create_time <= job.start_time <= job.end_time
    assert events.names_for(job_id, "finished") == ["worker-assigned", "started", "finished"]
    assert queue.length("default") == 0
    progress = final_progress(store, job_id)
    assert progress["jobs"]["done"] == progress["jobs"]["total"] >= 1


def final_progress(store: Store, job_id: str, timeout_s: float = 10.0) -> dict:
    """The job's progress once its final counts are stored (they follow its end): every Spark
    job it ran ended."""
    deadline = time.monotonic() + timeout_s
    while (progress := store.get_job(job_id).progress) is None \
            or not 0 < progress["jobs"]["done"] == progress["jobs"]["total"]:
        assert time.monotonic() < deadline, f"final counts never stored: {progress}"
        time.sleep(0.05)
    return progress


def test_a_jobs_end_goes_out_before_its_final_counts_which_follow(
        store, catalog, queue, redis, spark, capture, tmp_path):
    """Spark's status tracker lags an action that returned (its listener bus): the end is
    recorded and announced with what the polls saw, then the final counts follow, stored and
    announced in a progress event of their own."""
    engine = SparkEngine(spark)
    watchdog = Watchdog(engine.cancel, lambda job_id, why: None, cancel_grace_s=30)

    def on_progress(job_id: str, snapshot: dict) -> None:
        store.set_progress(job_id, snapshot)
        publish(redis, progress_event(job_id, snapshot))

    # One poll when the job starts (its function naps before its Spark job), none after: what
    # the end is recorded with is known to be short of the final counts.
    progress = ProgressTracker(spark.sparkContext, on_progress, interval_s=60)
    runner = JobRunner(store=store, queue=queue, redis=redis,
                       loader=FunctionLoader(catalog, tmp_path / "cache"), engine=engine,
                       worker_id=WORKER_ID, capture=capture, watchdog=watchdog,
                       progress=progress)
    try:
        deploy(catalog, "behaviours.py", "sum_after_nap")
        events = Events(redis)
        job_id = enqueue(catalog, store, queue, "sum_after_nap")
        run_next(runner, queue)
        assert store.get_job(job_id).status is JobStatus.FINISHED
        assert events.names_for(job_id, "progress") == [
            "worker-assigned", "started", "finished", "progress"]
        progress_now = final_progress(store, job_id)
        assert progress_now["tasks"]["done"] == progress_now["tasks"]["total"] >= 1
    finally:
        watchdog.close()
        progress.close()


def test_a_plain_function_runs_on_the_spark_engine_without_a_handle(runner, catalog, store,
                                                                    queue):
    deploy(catalog, "plain.py", "add")
    job_id = enqueue(catalog, store, queue, "add", {"x": 40, "y": 2})
    run_next(runner, queue)
    assert store.get_job(job_id).result == 42
    job_id = enqueue(catalog, store, queue, "add", {"x": 1})
    run_next(runner, queue)
    assert store.get_job(job_id).result == 2


def test_a_jobs_start_is_announced_while_it_runs_and_its_connection_given_back(
        runner, catalog, store, queue, redis):
    """The start goes out before the function runs (its reply is read with the end's, on the
    same connection, so nothing waits for it), and that connection returns to the pool."""
    deploy(catalog, "behaviours.py", "sleep_python")
    events = Events(redis)  # holds a connection of the pool for its subscription
    # redis-py's own record of the connections lent out
    lent = set(runner.redis.connection_pool._in_use_connections)
    job_id = enqueue(catalog, store, queue, "sleep_python", {"seconds": 2})
    thread = threading.Thread(target=run_next, args=(runner, queue))
    thread.start()
    assert events.names_for(job_id, "started") == ["worker-assigned", "started"]
    assert thread.is_alive()  # still sleeping: the start was not held back to the end
    thread.join(30)
    assert events.names_for(job_id, "finished") == ["finished"]
    assert store.get_job(job_id).status is JobStatus.FINISHED
    for _ in range(5):
        enqueue(catalog, store, queue, "sleep_python", {"seconds": 0})
        run_next(runner, queue)
    assert runner.redis.connection_pool._in_use_connections == lent


def test_each_job_runs_in_its_slots_fair_pool(runner, catalog, store, queue):
    deploy(catalog, "behaviours.py", "scheduler_pool")
    pools = []
    for slot in (1, 0, 0, 1):
        job_id = enqueue(catalog, store, queue, "scheduler_pool")
        run_next(runner, queue, slot=slot)
        job = store.get_job(job_id)
        assert job.status is JobStatus.FINISHED, job.error
        pools.append(job.result)
    assert pools == ["slot-1", "slot-0", "slot-0", "slot-1"]


def test_a_raising_function_fails_with_message_and_traceback(runner, catalog, store, queue):
    deploy(catalog, "behaviours.py", "fail")
    job_id = enqueue(catalog, store, queue, "fail", {"message": "bad input 42"})
    run_next(runner, queue)
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error.startswith("ValueError: bad input 42")
    assert "Traceback" in job.error and 'behaviours.py", line' in job.error
    assert any("failed after" in m for m in logs_of(store, job_id))


def test_a_result_that_is_not_json_fails_the_job_and_says_where(runner, catalog, store, queue):
    deploy(catalog, "behaviours.py", "not_json")
    job_id = enqueue(catalog, store, queue, "not_json")
    run_next(runner, queue)
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert "result.handle is a builtins.object" in job.error


def test_spark_context_handle_by_annotation(runner, catalog, store, queue):
    deploy(catalog, "behaviours.py", "count_with_context")
    job_id = enqueue(catalog, store, queue, "count_with_context", {"n": 7})
    run_next(runner, queue)
    assert store.get_job(job_id).result == {"count": 7, "handle": "SparkContext"}


def test_mistpy_function_runs_unchanged_with_defaults_filled(runner, catalog, store, queue):
    deploy(catalog, "mist_multiply.py", "mist_multiply")
    job_id = enqueue(catalog, store, queue, "mist_multiply", {"numbers": [1, 2, 3]})
    run_next(runner, queue)
    job = store.get_job(job_id)
    assert job.status is JobStatus.FINISHED, job.error
    assert job.result == {"result": [2, 4, 6]}


def test_logs_of_two_concurrent_jobs_hold_only_their_own_lines(runner, catalog, store, queue,
                                                               capture):
    capture.install()
    deploy(catalog, "behaviours.py", "chatty")
    first = enqueue(catalog, store, queue, "chatty", {"name": "alpha", "lines": 20})
    second = enqueue(catalog, store, queue, "chatty", {"name": "beta", "lines": 20})
    threads = [threading.Thread(target=run_next, args=(runner, queue, slot)) for slot in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for job_id, mine, other in ((first, "alpha", "beta"), (second, "beta", "alpha")):
        lines = logs_of(store, job_id)
        own = [m for m in lines if m.startswith(mine)]
        assert len(own) == 60, lines  # 20 each of print, logging and stderr
        assert not any(other in m for m in lines)
        assert lines[0].startswith("started on worker")
        assert lines[-1].startswith("finished in")


def test_cancel_of_a_running_spark_job_ends_it_and_spares_its_neighbour(
        runner, catalog, store, queue, spark):
    deploy(catalog, "behaviours.py", "slow_spark")
    deploy(catalog, "behaviours.py", "sum_range")
    victim = enqueue(catalog, store, queue, "slow_spark", {"seconds": 60})
    neighbour = enqueue(catalog, store, queue, "sum_range", {"n": 10})
    threads = [threading.Thread(target=run_next, args=(runner, queue, 0))]
    threads[0].start()
    _wait_for(lambda: store.get_job(victim).status is JobStatus.STARTED)
    threads.append(threading.Thread(target=run_next, args=(runner, queue, 1)))
    threads[1].start()
    time.sleep(1)  # let the victim's Spark job get going
    assert cancellation.cancel(store, queue, victim).status is JobStatus.CANCELLING
    # What the worker does on the control message.
    assert runner.watchdog.cancel(victim)
    for t in threads:
        t.join(timeout=60)
    assert store.get_job(victim).status is JobStatus.CANCELLED
    assert store.get_job(neighbour).status is JobStatus.FINISHED
    assert store.get_job(neighbour).result == 45
    # The log says why it stopped, not the Java traceback Spark's cancel raised in it.
    last = logs_of(store, victim)[-1]
    assert last.startswith("cancelled after ") and last.endswith(" ms"), last
    assert not any("Py4JJavaError" in line for line in logs_of(store, victim))


def test_a_job_cancelled_while_queued_is_never_run(runner, catalog, store, queue):
    deploy(catalog, "behaviours.py", "sum_range")
    job_id = enqueue(catalog, store, queue, "sum_range")
    cancellation.cancel(store, queue, job_id)
    assert queue.queued_ids("default") == []
    # A worker that popped the id just before the cancel removed it still holds it.
    queue.give_back(job_id, "default")
    run_next(runner, queue)
    job = store.get_job(job_id)
    assert job.status is JobStatus.CANCELLED and job.start_time is None
    assert job.worker_id is None


def test_a_job_past_its_start_timeout_fails_instead_of_running(runner, catalog, store, queue):
    deploy(catalog, "behaviours.py", "sum_range")
    job_id = enqueue(catalog, store, queue, "sum_range", start_timeout_ms=1)
    time.sleep(0.05)
    run_next(runner, queue)
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert "start timeout" in job.error and "startTimeout of 1 ms" in job.error


def test_a_queued_job_runs_the_code_it_was_submitted_with(runner, catalog, store, queue):
    deploy(catalog, "echo.py", "echo")
    job_id = enqueue(catalog, store, queue, "echo", {"value": 1})
    replaced = function_source("echo.py").replace(b'"value": value', b'"value": "new code"')
    catalog.put_artifact("echo.py", replaced, replace_existing=True)
    run_next(runner, queue)
    assert store.get_job(job_id).result == {"value": 1, "tag": None}
    later = enqueue(catalog, store, queue, "echo", {"value": 1})
    run_next(runner, queue)
    assert store.get_job(later).result == {"value": "new code", "tag": None}


def test_perform_timeout_fails_a_spark_job_and_spares_the_worker(runner, catalog, store, queue):
    deploy(catalog, "behaviours.py", "slow_spark")
    job_id = enqueue(catalog, store, queue, "slow_spark", {"seconds": 60},
                     perform_timeout_ms=500)
    started = time.monotonic()
    run_next(runner, queue)
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error.startswith("performTimeout exceeded: the job ran longer than its 500 ms")
    assert time.monotonic() - started < 15
    last = logs_of(store, job_id)[-1]
    assert last.startswith("failed after ") and last.endswith(
        "performTimeout exceeded: the job ran longer than its 500 ms and was cancelled"), last


@pytest.mark.parametrize("perform_timeout_ms", [0, 1])
def test_a_job_that_ends_past_its_deadline_timed_out_however_short(runner, catalog, store,
                                                                   queue, perform_timeout_ms):
    """A job that ended between two watchdog ticks counted as finished: performTimeout=0 was
    not enforced for short jobs, while startTimeout=0 is."""
    deploy(catalog, "behaviours.py", "sleep_python")
    job_id = enqueue(catalog, store, queue, "sleep_python", {"seconds": 0.02},
                     perform_timeout_ms=perform_timeout_ms)
    run_next(runner, queue)
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED, job
    assert job.error.startswith("performTimeout exceeded: the job ran longer than its "
                                f"{perform_timeout_ms} ms")


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_job_is_a_frozen_record():
    assert Job.__dataclass_params__.frozen
