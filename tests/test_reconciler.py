"""The reconciler: the database is the source of truth, Redis may lose everything.

Unit tests run each repair on SQLite and PostgreSQL against real Redis; the slow tests break a
real `sparkgate serve` on purpose (a worker SIGKILLed, Redis flushed, the gateway SIGKILLed) and
check that every job involved ends as it should: nothing lost, nothing stuck, nothing run twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from sparkgate.jobs import tables
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.contexts import Context
from sparkgate.jobs.db import make_engine, now_ms
from sparkgate.jobs.events import events_channel
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.reconciler import LEASE_KEY, Reconciler
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import NewJob, Store
from sparkgate.jobs.worker_registry import WorkerRegistry
from tests.conftest import TEST_SPARK_CONF, free_port
from tests.server_process import (
    START_TIMEOUT_S,
    Server,
    create_pg_database,
    drop_pg_database,
    running_server,
    wait_until,
)
from tests.server_process import stop as stop_server

NO_COUNTS = {"lost_workers": 0, "requeued": 0, "start_timeouts": 0}
LOST = ("worker lost: worker {} stopped sending heartbeats (killed, crashed or hung); "
        "the job may have run in part")


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def registry(redis: Redis) -> WorkerRegistry:
    return WorkerRegistry(redis, ttl_s=10)


@pytest.fixture
def make_reconciler(store: Store, catalog: Catalog, queue: JobQueue, registry: WorkerRegistry,
                    redis: Redis):
    """Reconcilers that trust Redis at once (``settle_s=0``) unless told otherwise."""
    made: list[Reconciler] = []

    def make(**kw) -> Reconciler:
        kw.setdefault("settle_s", 0)
        reconciler = Reconciler(store, catalog, queue, registry, redis, **kw)
        made.append(reconciler)
        return reconciler

    yield make
    for reconciler in made:
        reconciler.release()


def new_job(store: Store, age_ms: int = 0, **overrides) -> str:
    values = dict(function="f", context="default", arguments={"n": 1}, file_path="f.py",
                  class_name="f", artifact_sha1="0" * 40)
    values.update(overrides)
    job_id = store.create_job(NewJob(**values)).id
    if age_ms:
        backdate(store, job_id, age_ms)
    return job_id


def backdate(store: Store, job_id: str, age_ms: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(tables.jobs).where(tables.jobs.c.id == job_id)
                     .values(create_time=now_ms() - age_ms))


def started_job(store: Store, worker_id: str, cancelling: bool = False) -> str:
    job_id = new_job(store)
    store.transition(job_id, JobStatus.STARTED, worker_id=worker_id, start_time=now_ms())
    if cancelling:
        store.transition(job_id, JobStatus.CANCELLING)
    return job_id


def beat(registry: WorkerRegistry, worker_id: str) -> None:
    registry.beat({"id": worker_id, "context": "default", "host": "h", "pid": 1})


def status(store: Store, job_id: str) -> JobStatus:
    return store.get_job(job_id).status


class Events:
    """Events published on the channel while the test runs, about the given jobs (channels are
    server-wide: other test runs may publish on it too)."""

    def __init__(self, redis: Redis, *job_ids: str) -> None:
        self.job_ids = set(job_ids)
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(events_channel(redis))
        self.pubsub.get_message(timeout=1.0)  # the subscribe confirmation

    def received(self) -> list[dict]:
        events = []
        while (message := self.pubsub.get_message(timeout=0.2)) is not None:
            event = json.loads(message["data"])
            if event.get("id") in self.job_ids:
                events.append(event)
        self.pubsub.close()
        return events


# -- worker lost -----------------------------------------------------------------------------


def test_a_started_job_of_a_worker_without_heartbeat_fails(store, redis, make_reconciler):
    job_id = started_job(store, "w-dead")
    events = Events(redis, job_id)
    assert make_reconciler().run_once() == {**NO_COUNTS, "lost_workers": 1}
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == LOST.format("w-dead")
    assert job.end_time is not None and job.worker_id == "w-dead"
    assert [(e["event"], e["id"], e["error"]) for e in events.received()] == [
        ("failed", job_id, LOST.format("w-dead"))]


def test_a_started_job_of_a_live_worker_is_left_alone(store, registry, make_reconciler):
    beat(registry, "w-live")
    job_id = started_job(store, "w-live")
    reconciler = make_reconciler()
    assert reconciler.run_once() == NO_COUNTS
    assert reconciler.run_once() == NO_COUNTS
    assert status(store, job_id) is JobStatus.STARTED


def test_a_cancelling_job_of_a_lost_worker_is_cancelled(store, registry, make_reconciler):
    beat(registry, "w-live")
    kept = started_job(store, "w-live", cancelling=True)
    lost = started_job(store, "w-dead", cancelling=True)
    assert make_reconciler().run_once() == {**NO_COUNTS, "lost_workers": 1}
    job = store.get_job(lost)
    assert job.status is JobStatus.CANCELLED and job.error == LOST.format("w-dead")
    assert status(store, kept) is JobStatus.CANCELLING


def test_a_job_that_ends_meanwhile_keeps_its_outcome(store, make_reconciler, monkeypatch):
    job_id = started_job(store, "w-dead")
    reconciler = make_reconciler()
    scan = reconciler.store.oldest_in

    def scan_then_finish(*args, **kw):
        found = scan(*args, **kw)
        if status(store, job_id) is JobStatus.STARTED:  # the worker wins the race
            store.transition(job_id, JobStatus.FINISHED, result=1, end_time=now_ms())
        return found

    monkeypatch.setattr(reconciler.store, "oldest_in", scan_then_finish)
    assert reconciler.run_once() == NO_COUNTS
    job = store.get_job(job_id)
    assert job.status is JobStatus.FINISHED and job.result == 1 and job.error is None


def test_after_redis_lost_the_records_workers_get_a_ttl_to_beat_again(
        store, redis, registry, make_reconciler):
    """A FLUSHALL erases every live worker's record until its next beat: no false alarms."""
    beat(registry, "w-live")
    job_id = started_job(store, "w-live")
    reconciler = make_reconciler(settle_s=0.6)
    assert reconciler.run_once() == NO_COUNTS  # takes the lease: settling
    time.sleep(0.6)
    assert reconciler.run_once() == NO_COUNTS  # settled; the worker is live
    redis.flushdb()
    assert reconciler.run_once() == NO_COUNTS  # a new epoch: settling again
    beat(registry, "w-live")  # the worker's next beat
    time.sleep(0.6)
    assert reconciler.run_once() == NO_COUNTS
    assert status(store, job_id) is JobStatus.STARTED
    # A worker that does not come back is lost once Redis has been intact for the TTL.
    redis.flushdb()
    assert reconciler.run_once() == NO_COUNTS
    time.sleep(0.6)
    assert reconciler.run_once() == {**NO_COUNTS, "lost_workers": 1}
    assert status(store, job_id) is JobStatus.FAILED


# -- lost from the queue ---------------------------------------------------------------------


def test_a_queued_job_missing_from_its_queue_is_queued_again(store, queue, make_reconciler):
    job_id = new_job(store)  # its gateway died before queueing it
    reconciler = make_reconciler(requeue_grace_s=2.0)
    assert reconciler.run_once() == NO_COUNTS
    assert reconciler.run_once() == NO_COUNTS  # younger than the grace
    backdate(store, job_id, 2500)
    assert reconciler.run_once() == NO_COUNTS  # missing once: a worker may be claiming it
    assert reconciler.run_once() == {**NO_COUNTS, "requeued": 1}
    assert queue.queued_ids("default") == [job_id]
    assert reconciler.run_once() == NO_COUNTS
    assert queue.queued_ids("default") == [job_id]
    assert status(store, job_id) is JobStatus.QUEUED


def test_a_queued_job_in_its_queue_is_not_queued_twice(store, queue, make_reconciler):
    job_id = new_job(store, age_ms=60_000)
    queue.enqueue(job_id, "default")
    reconciler = make_reconciler()
    for _ in range(3):
        assert reconciler.run_once() == NO_COUNTS
    assert queue.queued_ids("default") == [job_id]


def test_a_job_claimed_between_two_passes_is_not_queued_again(store, queue, registry,
                                                              make_reconciler):
    beat(registry, "w")
    job_id = new_job(store, age_ms=60_000)
    queue.enqueue(job_id, "default")
    reconciler = make_reconciler()
    assert queue.pop("default", 1) == job_id  # a worker popped it...
    assert reconciler.run_once() == NO_COUNTS
    store.transition(job_id, JobStatus.STARTED, worker_id="w", start_time=now_ms())  # ...claims
    assert reconciler.run_once() == NO_COUNTS
    assert queue.queued_ids("default") == []


def test_after_a_redis_flush_every_queued_job_is_back_once(store, catalog, queue, redis,
                                                           make_reconciler):
    ids = [new_job(store, age_ms=10_000, context=c) for c in ("default", "default", "other")]
    for job_id, context in zip(ids, ("default", "default", "other"), strict=True):
        queue.enqueue(job_id, context)
    done = new_job(store, age_ms=10_000)
    store.transition(done, JobStatus.CANCELLED, end_time=now_ms())
    reconciler = make_reconciler()
    catalog.create_context(Context.from_defaults("other", catalog.context_defaults))
    assert reconciler.run_once() == NO_COUNTS
    redis.flushdb()  # FLUSHALL, for this test's database
    assert reconciler.run_once() == NO_COUNTS
    assert reconciler.run_once() == {**NO_COUNTS, "requeued": 3}
    assert sorted(queue.queued_ids("default")) == sorted(ids[:2])
    assert queue.queued_ids("other") == [ids[2]]
    # The supervisor sees them.
    assert set(queue.lanes_with_work()) == {("default", None), ("other", None)}
    for _ in range(2):
        assert reconciler.run_once() == NO_COUNTS
    assert sorted(queue.queued_ids("default")) == sorted(ids[:2])
    assert all(status(store, i) is JobStatus.QUEUED for i in ids)


def test_a_long_queue_is_read_less_often(store, queue, make_reconciler):
    """Reading every queued job is spaced out to a fifth of the time at most."""
    job_id = new_job(store, age_ms=10_000)
    reconciler = make_reconciler(interval_s=0.1)
    assert reconciler.run_once() == NO_COUNTS
    reconciler._queue_check_cost_s = 0.2  # as if the read took that long: next in 1 s
    assert reconciler.run_once() == NO_COUNTS
    assert queue.queued_ids("default") == []
    time.sleep(1.0)
    assert reconciler.run_once() == {**NO_COUNTS, "requeued": 1}
    assert queue.queued_ids("default") == [job_id]


def test_a_lost_job_of_a_deleted_context_fails(store, queue, make_reconciler):
    job_id = new_job(store, age_ms=10_000, context="gone")
    reconciler = make_reconciler()
    assert reconciler.run_once() == NO_COUNTS
    assert reconciler.run_once() == NO_COUNTS
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error.startswith("lost from the queue: its context 'gone' no longer exists")
    assert queue.queued_ids("gone") == []


# -- start timeout ---------------------------------------------------------------------------


def test_a_start_timeout_fails_the_job_and_takes_it_out_of_its_queue(store, queue, redis,
                                                                     make_reconciler):
    late = new_job(store, age_ms=1500, start_timeout_ms=1000)
    in_time = new_job(store, age_ms=1500, start_timeout_ms=60_000)
    for job_id in (late, in_time):
        queue.enqueue(job_id, "default")
    events = Events(redis, late, in_time)
    assert make_reconciler().run_once() == {**NO_COUNTS, "start_timeouts": 1}
    job = store.get_job(late)
    assert job.status is JobStatus.FAILED and job.end_time is not None
    waited = int(job.error.split()[3])
    assert 1500 <= waited < 5000
    assert job.error == (f"start timeout: waited {waited} ms in the queue of context "
                         "'default', longer than its startTimeout of 1000 ms")
    assert queue.queued_ids("default") == [in_time]
    assert status(store, in_time) is JobStatus.QUEUED
    assert [(e["event"], e["id"]) for e in events.received()] == [("failed", late)]


# -- the lease -------------------------------------------------------------------------------


def test_only_the_lease_holder_acts(store, redis, make_reconciler):
    first, second = make_reconciler(), make_reconciler()
    a = started_job(store, "w-dead-a")
    assert first.run_once() == {**NO_COUNTS, "lost_workers": 1}
    b = started_job(store, "w-dead-b")
    assert second.run_once() == NO_COUNTS
    assert status(store, b) is JobStatus.STARTED
    assert (first.holding, second.holding) == (True, False)
    assert redis.get(LEASE_KEY).decode() == first.token
    assert 0 < redis.pttl(LEASE_KEY) <= 5000
    assert first.run_once() == {**NO_COUNTS, "lost_workers": 1}
    assert status(store, a) is status(store, b) is JobStatus.FAILED


def test_an_expired_lease_passes_to_the_other(store, redis, make_reconciler):
    first = make_reconciler(lease_s=0.3)
    second = make_reconciler(lease_s=0.3)
    assert first.run_once() == NO_COUNTS and first.holding
    time.sleep(0.4)  # the holder stalled: its lease expired
    job_id = started_job(store, "w-dead")
    assert second.run_once() == {**NO_COUNTS, "lost_workers": 1}
    assert status(store, job_id) is JobStatus.FAILED
    # The late holder cannot renew its successor's lease, nor act.
    assert first.run_once() == NO_COUNTS and not first.holding
    assert redis.get(LEASE_KEY).decode() == second.token


def test_a_lapsed_lease_retaken_does_not_delay_worker_lost(store, make_reconciler):
    """Only a loss of Redis data (or an error) starts the wait for worker records over."""
    reconciler = make_reconciler(lease_s=0.2, settle_s=0.5)
    assert reconciler.run_once() == NO_COUNTS
    time.sleep(0.6)  # settled, and the lease lapsed (a slow pass, a pause)
    job_id = started_job(store, "w-dead")
    assert reconciler.run_once() == {**NO_COUNTS, "lost_workers": 1}
    assert status(store, job_id) is JobStatus.FAILED


def test_an_error_starts_the_wait_for_worker_records_over(store, make_reconciler, monkeypatch):
    reconciler = make_reconciler(settle_s=0.5)
    assert reconciler.run_once() == NO_COUNTS
    time.sleep(0.6)
    job_id = started_job(store, "w-dead")
    monkeypatch.setattr(reconciler.registry, "get", lambda _: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        reconciler.run_once()
    monkeypatch.undo()
    assert reconciler.run_once() == NO_COUNTS  # Redis might have restarted meanwhile
    time.sleep(0.6)
    assert reconciler.run_once() == {**NO_COUNTS, "lost_workers": 1}
    assert status(store, job_id) is JobStatus.FAILED


def test_run_releases_the_lease_on_stop(redis, make_reconciler):
    reconciler = make_reconciler(interval_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,))
    thread.start()
    wait_until(lambda: redis.get(LEASE_KEY), 5, "the lease is taken")
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert redis.get(LEASE_KEY) is None


def test_run_survives_an_outage_and_carries_on(store, make_reconciler, monkeypatch, caplog):
    reconciler = make_reconciler(interval_s=0.05)
    scan = reconciler.store.oldest_in
    outage = threading.Event()
    outage.set()

    def flaky(*args, **kw):
        if outage.is_set():
            raise OperationalError("SELECT", {}, ConnectionRefusedError("database down"))
        return scan(*args, **kw)

    monkeypatch.setattr(reconciler.store, "oldest_in", flaky)
    job_id = started_job(store, "w-dead")
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,))
    with caplog.at_level("INFO", logger="sparkgate.reconciler"):
        thread.start()
        try:
            time.sleep(0.3)
            assert thread.is_alive() and status(store, job_id) is JobStatus.STARTED
            outage.clear()
            wait_until(lambda: status(store, job_id) is JobStatus.FAILED, 5, "repaired")
        finally:
            stop.set()
            thread.join(timeout=5)
    failures = [r for r in caplog.records if "a pass failed" in r.getMessage()]
    assert len(failures) == 1  # once per outage, not once per pass
    assert any(f"job {job_id}: started -> failed: worker lost" in r.getMessage()
               for r in caplog.records)


def test_run_survives_redis_being_unreachable(store, catalog, make_reconciler):
    dead = Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    reconciler = Reconciler(store, catalog, JobQueue(dead), WorkerRegistry(dead, 10), dead,
                            interval_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,))
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    dead.close()


def test_oldest_in_pages_through_every_job_oldest_first(store):
    ids = [new_job(store) for _ in range(5)]
    for n, job_id in enumerate(ids):
        backdate(store, job_id, 1000 - 100 * (n // 2))  # pairs share a create_time
    store.transition(ids[2], JobStatus.STARTED, worker_id="w", start_time=now_ms())
    pages, after = [], None
    while page := store.oldest_in([JobStatus.QUEUED], 2, after):
        pages.append([j.id for j in page])
        after = page[-1]
    expected = sorted((j for j in ids if j != ids[2]),
                      key=lambda i: (store.get_job(i).create_time, i))
    assert [i for page in pages for i in page] == expected
    assert all(len(p) <= 2 for p in pages)


# -- real processes: a worker killed, Redis flushed, the gateway killed ----------------------

RC_REDIS_URL = "redis://127.0.0.1:6379/13"
KILL_TO_FAILED_S = 15
LOST_TO_REQUEUED_S = 10


@dataclass
class Cluster:
    """One `sparkgate serve` at a time on one PostgreSQL database and Redis db 13; processes
    a killed serve or worker left behind are killed at the end."""

    workdir: Path
    env: dict[str, str]
    database: str
    server: Server | None = None
    leftovers: list[psutil.Process] = field(default_factory=list)

    def start(self) -> Server:
        port = free_port()
        env = {**self.env, "SPARKGATE_PORT": str(port)}
        with (self.workdir / "serve.log").open("ab") as out:
            process = subprocess.Popen(["sparkgate", "serve"], env=env, cwd=self.workdir,
                                       stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.server = Server(f"http://127.0.0.1:{port}", port, process,
                             self.workdir / "serve.log", self.workdir / "data", env)
        wait_until(self._ready, START_TIMEOUT_S, "serve answers and a worker is live", 0.25)
        return self.server

    def _ready(self) -> bool:
        assert self.server is not None
        assert self.server.process.poll() is None, self.server.log.read_text()[-3000:]
        try:
            return bool(self.server.workers())
        except requests.ConnectionError:
            return False

    def remember_tree(self, pid: int) -> None:
        """``pid`` and its descendants, to be killed at the end if they outlive the test (one
        that has ended already, a killed serve's worker that followed it, needs nothing)."""
        try:
            process = psutil.Process(pid)
            self.leftovers += [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass

    def kill_leftovers(self) -> None:
        for process in self.leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()  # psutil checks the pid still names the same process
        psutil.wait_procs(self.leftovers, timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("reconcile")
    database = create_pg_database()
    redis = Redis.from_url(RC_REDIS_URL)
    redis.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    env["SPARKGATE_PROCESSES"] = "1"  # one gateway process, as the tests expect
    env.update({
        "SPARKGATE_DATA_DIR": str(workdir / "data"),
        "SPARKGATE_DATABASE_URL": database,
        "SPARKGATE_REDIS_URL": RC_REDIS_URL,
        "SPARKGATE_DEPLOY_EXAMPLES": "false",
        "SPARKGATE_CONTEXT_SPARK_CONF": json.dumps(TEST_SPARK_CONF),
        # One slot: the next jobs wait in the queue behind a busy worker.
        "SPARKGATE_CONTEXT_MAX_JOBS": "1",
    })
    subprocess.run(["sparkgate", "db", "upgrade"], env=env, check=True, timeout=120,
                   capture_output=True)
    cluster = Cluster(workdir, env, database)
    try:
        server = cluster.start()
        server.deploy("behaviours.py", "rc_sleep", "sleep_python")
        server.deploy("behaviours.py", "rc_sum", "sum_range")
        yield cluster
    finally:
        try:
            if cluster.server is not None:
                stop_server(cluster.server)
        finally:
            cluster.kill_leftovers()
            drop_pg_database(database)
            redis.flushdb()
            redis.close()


def wait_for_end(server: Server, job_ids: list[str], timeout_s: float = 90) -> dict[str, dict]:
    return {j: server.wait_for_job(j, {"finished", "failed", "cancelled"}, timeout_s)
            for j in job_ids}


def assert_ran_once(server: Server, job: dict, result: object) -> None:
    """Finished with ``result``, started exactly once (each claim logs one line)."""
    assert (job["status"], job["jobResult"]) == ("finished", result), job
    logs = server.get(f"/jobs/{job['jobId']}/logs").text
    assert logs.count("started on worker") == 1, logs


def worker_pid(server: Server, worker_id: str) -> int:
    worker = server.get(f"/workers/{worker_id}").json()
    return int(worker["address"].rsplit(":", 1)[1])


@pytest.mark.slow
def test_a_killed_worker_s_job_fails_within_15s_and_a_new_worker_runs_on(cluster: Cluster):
    server = cluster.server
    assert server is not None
    job_id = server.submit("rc_sleep", {"seconds": 300})
    lost_worker = server.wait_for_job(job_id, {"started"}, timeout_s=60)["workerId"]
    pid = worker_pid(server, lost_worker)
    cluster.remember_tree(pid)  # its JVM should follow it; if not, it goes at the end

    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    job = server.wait_for_job(job_id, {"finished", "failed", "cancelled"},
                              timeout_s=KILL_TO_FAILED_S + 15)
    took_s = time.monotonic() - killed_at
    print(f"\nworker SIGKILLed -> its job failed in {took_s:.1f}s")
    assert job["status"] == "failed"
    assert job["jobResult"] == LOST.format(lost_worker)
    assert took_s < KILL_TO_FAILED_S

    # The supervisor starts another worker, which takes the next job.
    next_job = server.submit("rc_sum", {"n": 10})
    done = wait_for_end(server, [next_job])[next_job]
    assert_ran_once(server, done, 45)
    assert done["workerId"] != lost_worker
    assert worker_pid(server, done["workerId"]) != pid
    assert server.job(job_id)["status"] == "failed"  # and stays so


@pytest.mark.slow
def test_jobs_redis_lost_are_queued_again_and_each_runs_once(cluster: Cluster):
    server = cluster.server
    assert server is not None
    queue = JobQueue(Redis.from_url(RC_REDIS_URL))
    busy = server.submit("rc_sleep", {"seconds": 8})
    server.wait_for_job(busy, {"started"}, timeout_s=60)
    waiting = [server.submit("rc_sum", {"n": n}) for n in (10, 20, 30)]
    assert sorted(queue.queued_ids("default")) == sorted(waiting)

    queue.redis.flushdb()  # Redis loses everything: queues, worker records, the lease
    flushed_at = time.monotonic()

    def back() -> bool:
        statuses = {j: server.job(j)["status"] for j in waiting}
        present = set(queue.queued_ids("default"))
        return all(j in present or statuses[j] != "queued" for j in waiting)

    wait_until(back, LOST_TO_REQUEUED_S + 5, "the lost jobs are queued again", 0.2)
    took_s = time.monotonic() - flushed_at
    print(f"\nRedis flushed -> 3 queued jobs back in their queue in {took_s:.1f}s")
    assert took_s < LOST_TO_REQUEUED_S

    ended = wait_for_end(server, [busy, *waiting])
    # The busy job's worker lost its record in the flush too: it was not taken for lost.
    assert_ran_once(server, ended[busy], {"slept": 8})
    for job_id, n in zip(waiting, (10, 20, 30), strict=True):
        assert_ran_once(server, ended[job_id], n * (n - 1) // 2)
    assert queue.queued_ids("default") == []  # no duplicate left behind
    queue.redis.close()


@pytest.mark.slow
def test_a_killed_gateway_leaves_no_job_behind(cluster: Cluster):
    server = cluster.server
    assert server is not None
    running = server.submit("rc_sleep", {"seconds": 4})
    server.wait_for_job(running, {"started"}, timeout_s=60)
    accepted = [server.submit("rc_sum", {"n": n}) for n in (1, 2, 3, 4)]
    # A job the gateway recorded but did not live to queue.
    sha = server.get("/artifacts/behaviours.py/sha").text
    engine = make_engine(cluster.database)
    unqueued = Store(engine).create_job(NewJob(
        function="rc_sum", context="default", arguments={"n": 100}, file_path="behaviours.py",
        class_name="sum_range", artifact_sha1=sha)).id
    engine.dispose()

    cluster.remember_tree(server.process.pid)  # its workers live on, orphaned
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    cluster.server = None
    restarted = cluster.start()
    ours = {p.pid for p in psutil.Process(restarted.process.pid).children(recursive=True)}
    for worker in restarted.workers():  # a worker the old serve started after the snapshot
        if worker_pid(restarted, worker["name"]) not in ours:
            cluster.remember_tree(worker_pid(restarted, worker["name"]))

    ended = wait_for_end(restarted, [running, *accepted, unqueued], timeout_s=60)
    # Its workers died with it (nothing a serve starts outlives it), failing the job they ran
    # with the reason, rather than leaving it started.
    assert ended[running]["status"] == "failed"
    assert "stopped before the job ended" in ended[running]["jobResult"]
    assert "is gone" in ended[running]["jobResult"]
    for job_id, n in zip(accepted, (1, 2, 3, 4), strict=True):
        assert_ran_once(restarted, ended[job_id], n * (n - 1) // 2)
    assert_ran_once(restarted, ended[unqueued], 4950)
    for status_name in ("queued", "started", "cancelling"):
        assert restarted.get("/jobs", params={"status": status_name}).json() == []


@pytest.mark.slow
def test_a_sync_waiter_on_another_gateway_gets_its_answer_while_the_first_one_dies(
        cluster: Cluster, tmp_path: Path):
    """Two gateways on one database and Redis; the second runs no workers. A client waits
    on the second for a job that the first one's worker runs; the first gateway is killed
    meanwhile. The answer still comes at once: waiting is an event from Redis, not a
    gateway's memory. The killed gateway's worker dies with it (nothing a serve starts
    outlives it) and fails the job, saying why, so the waiter is told instead of hanging."""
    first = cluster.server
    assert first is not None
    overrides = {"SPARKGATE_DATABASE_URL": cluster.database, "SPARKGATE_REDIS_URL": RC_REDIS_URL,
                 "SPARKGATE_START_WORKERS": "false", "SPARKGATE_DEPLOY_EXAMPLES": "false"}
    with running_server(tmp_path, overrides, wait_for_worker=False) as second:
        answers: list[dict] = []
        waiter = threading.Thread(target=lambda: answers.append(second.post(
            "/functions/rc_sleep/jobs", params={"force": "true"}, json={"seconds": 3}).json()))
        waiter.start()
        wait_until(lambda: second.get("/jobs", params={"status": "started"}).json(), 60,
                   "the job starts on the first gateway's worker")
        cluster.remember_tree(first.process.pid)
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
        cluster.server = None
        waiter.join(timeout=60)
        assert len(answers) == 1, "the waiter got no answer"
        assert answers[0]["success"] is False and answers[0]["payload"] == {}
        [error] = answers[0]["errors"]
        assert "stopped before the job ended" in error and "is gone" in error, error
    cluster.start()  # the module's later tests (if any) expect a serving cluster
