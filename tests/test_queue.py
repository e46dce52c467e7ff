"""The queue adapter: RQ's data model written and read without RQ's objects on the hot path,
and the worker's loop taking a burst of jobs in batches."""

from __future__ import annotations

import pickle
import subprocess
import threading
import time
import zlib
from dataclasses import replace

import pytest
from rq import Queue
from rq.job import Job as RQJob

from sparkgate.jobs.queue import JOB_FUNC, job_key, queue_key, queue_name
from sparkgate.workers.process import Worker

STAMPS = {b"created_at", b"enqueued_at"}


def _rq_enqueue(redis, job_id: str, context: str, environment: str | None = None) -> None:
    """A job queued as sparkgate queued them through RQ's own API."""
    Queue(queue_name(context, environment), connection=redis).enqueue_call(
        JOB_FUNC, args=(job_id,), job_id=job_id, result_ttl=0, timeout=-1,
        description=f"sparkgate job {job_id} in context {context}")


@pytest.mark.parametrize("environment", [None, "ab12cd34"])
def test_an_enqueue_writes_what_rqs_enqueue_call_writes(redis, queue, environment):
    _rq_enqueue(redis, "by-rq", "default", environment)
    with redis.pipeline() as pipe:
        pipe.multi()  # as the submission's pipeline is
        queue.enqueue("by-us", "default", pipeline=pipe, environment=environment)
        pipe.execute()
    theirs, ours = redis.hgetall(job_key("by-rq")), redis.hgetall(job_key("by-us"))
    assert set(ours) == set(theirs)
    for field in set(theirs) - STAMPS - {b"data", b"description"}:
        assert ours[field] == theirs[field], field
    assert ours[b"description"] == b"sparkgate job by-us in context default"
    # The same serialized call, for its own id.
    assert pickle.loads(zlib.decompress(ours[b"data"])) == (JOB_FUNC, None, ("by-us",), {})
    assert zlib.decompress(ours[b"data"]) == zlib.decompress(theirs[b"data"]).replace(
        b"by-rq", b"by-us")
    rq_job = RQJob.fetch("by-us", connection=redis)
    assert (rq_job.func_name, rq_job.args, rq_job.get_status(), rq_job.origin) == (
        JOB_FUNC, ("by-us",), "queued", queue_name("default", environment))
    assert rq_job.enqueued_at is not None and rq_job.created_at is not None
    (rq_queue,) = Queue.all(connection=redis)
    assert rq_queue.key == queue_key("default", environment)
    assert rq_queue.get_job_ids() == ["by-rq", "by-us"]


def test_rq_info_shows_the_queues_and_their_jobs(redis_url, queue):
    for job_id in ("a", "b", "c"):
        queue.enqueue(job_id, "default")
    queue.enqueue("d", "other")
    shown = subprocess.run(["rq", "info", "-u", redis_url, "--only-queues", "--raw"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "queue sparkgate:default 3" in shown and "queue sparkgate:other 1" in shown


def test_pop_and_pop_many_take_from_the_head_in_order(queue):
    for job_id in ("a", "b", "c", "d"):
        queue.enqueue(job_id, "default")
    assert queue.pop("default", 1) == "a"
    assert queue.pop_many("default", 1, 2) == ["b", "c"]
    assert queue.pop_many("default", 1, 8) == ["d"]
    began = time.monotonic()
    assert queue.pop_many("default", 1, 8) == [] and queue.pop("default", 1) is None
    assert time.monotonic() - began >= 1.5  # each waited its second


def test_pop_many_wakes_for_a_job_queued_while_it_waits(queue):
    queue.enqueue("x", "other")  # another lane's job is not taken
    late = threading.Timer(0.2, queue.enqueue, args=("late", "default"))
    late.start()
    assert queue.pop_many("default", 5, 4) == ["late"]
    # The job can be popped before its enqueue has read Redis's reply: the test's Redis client
    # must outlive that read (its teardown closes the connection under it otherwise).
    late.join(10)
    assert queue.queued_ids("other") == ["x"]


def test_remove_drops_every_copy_and_the_hash_and_give_back_puts_it_first(redis, queue):
    for job_id in ("a", "b", "a"):
        queue.enqueue(job_id, "default")
    queue.remove("a", "default")
    assert queue.queued_ids("default") == ["b"] and not redis.exists(job_key("a"))
    queue.give_back("z", "default")
    assert queue.queued_ids("default") == ["z", "b"] and queue.length("default") == 2
    queue.done("b")
    assert not redis.exists(job_key("b"))


def test_lanes_with_work_reads_rqs_set_of_queues(redis, queue):
    queue.enqueue("a", "default")
    queue.enqueue("b", "other", environment="ab12cd34")
    queue.enqueue("c", "emptied")
    queue.pop("emptied", 1)
    Queue("someone-elses", connection=redis).enqueue_call("os.getpid")
    queue.enqueue("d", "default")
    assert queue.lanes_with_work() == {("default", None): 2, ("other", "ab12cd34"): 1}


class _Runner:
    """Stands in for JobRunner: records which jobs ran and how many at once."""

    def __init__(self, run_s: float) -> None:
        self.run_s = run_s
        self.ran: list[str] = []
        self.now = self.most = 0
        self.lock = threading.Lock()

    def run(self, job_id: str, slot: int) -> None:
        with self.lock:
            self.ran.append(job_id)
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.run_s)
        with self.lock:
            self.now -= 1


@pytest.fixture
def make_worker(settings, redis_url, catalog):
    made: list[Worker] = []

    def make(max_jobs: int, **kw) -> Worker:
        worker = Worker(settings, redis_url, "default", **kw)
        worker.context = replace(worker.context, max_jobs=max_jobs)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.redis.close()
        worker.store.engine.dispose()


def _pops(worker: Worker) -> list[int]:
    """The sizes of the worker's pops, as they happen."""
    sizes: list[int] = []
    real = worker.queue.pop_many

    def counted(*args, **kw):
        popped = real(*args, **kw)
        if popped:
            sizes.append(len(popped))
        return popped

    worker.queue.pop_many = counted  # type: ignore[method-assign]
    return sizes


def test_a_burst_is_taken_in_batches_up_to_the_free_slots_and_max_jobs_total(
        make_worker, queue):
    ids = [f"job-{n}" for n in range(10)]
    for job_id in ids:
        queue.enqueue(job_id, "default")
    worker = make_worker(4, max_jobs_total=6)
    pops = _pops(worker)
    runner = _Runner(run_s=0.3)
    worker._loop(runner)  # type: ignore[arg-type]
    worker._wait_for_running_jobs()
    assert runner.ran == ids[:6] and runner.most == 4
    # Four free slots at first, then as slots come free, no more than the total.
    assert pops[0] == 4 and sum(pops) == 6
    assert queue.queued_ids("default") == ids[6:]
    assert worker.drain_reason == "done with its 6 job(s)"


def test_jobs_popped_as_the_drain_began_go_back_in_their_order(make_worker, queue):
    ids = [f"job-{n}" for n in range(5)]
    for job_id in ids:
        queue.enqueue(job_id, "default")
    worker = make_worker(3)
    real = worker.queue.pop_many

    def popped_then_drained(*args, **kw):
        popped = real(*args, **kw)
        worker.drain("stopped while popping")
        return popped

    worker.queue.pop_many = popped_then_drained  # type: ignore[method-assign]
    runner = _Runner(run_s=0)
    worker._loop(runner)  # type: ignore[arg-type]
    assert runner.ran == [] and queue.queued_ids("default") == ids
