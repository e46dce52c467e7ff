"""Workers that stop without exiting: frozen (SIGSTOP, a deadlock), or left behind by a job that
ignored its cancel. A frozen worker is killed with its JVM and replaced, its queue runs, while a
stalled Redis makes no live worker look frozen; a job failed as lost keeps that verdict whatever
its worker does later; a replaced or recycled worker's successor is warm before the next job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from sparkgate.jobs.reconciler import Reconciler
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.worker_registry import WorkerRegistry
from tests import test_execution
from tests.server_process import Server, running_server, wait_until
from tests.test_execution import Events, deploy, enqueue, logs_of, run_next

# A worker's job runner in this process, as test_execution builds it.
runner = test_execution.runner
capture = test_execution.capture

pytestmark = pytest.mark.slow

CANCEL_GRACE_S = 2
WORKER_TTL_S = 10  # the default
RECONCILER_PASS_S = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("frozen")
    with running_server(workdir, {"SPARKGATE_CANCEL_GRACE_S": str(CANCEL_GRACE_S),
                                  "SPARKGATE_WORKER_STOP_GRACE_S": "5"}) as server:
        server.deploy("behaviours.py", "sleep_python", "sleep_python")
        server.deploy("behaviours.py", "sum_range", "sum_range")
        yield server


def _pid(worker: dict) -> int:
    return int(worker["address"].rsplit(":", 1)[1])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_frozen_worker_is_killed_with_its_jvm_and_replaced(server: Server):
    server.context("frozen", maxJobs=1)
    running = server.submit("sleep_python", {"seconds": 120}, context="frozen")
    frozen_id = server.wait_for_job(running, {"started"}, timeout_s=120)["workerId"]
    queued = [server.submit("sum_range", {"n": n}, context="frozen") for n in (3, 4)]
    pid = _pid(wait_until(lambda: server.workers("frozen"), 10, "the worker is listed")[0])
    group = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    assert len(group) > 1, "the worker's JVM is its child"
    os.kill(pid, signal.SIGSTOP)
    try:
        bound_s = WORKER_TTL_S + RECONCILER_PASS_S + 3
        lost = server.wait_for_job(running, {"failed", "finished", "cancelled"},
                                   timeout_s=bound_s)
        assert lost["status"] == "failed"
        assert lost["jobResult"].startswith(f"worker lost: worker {frozen_id} stopped")
        wait_until(lambda: not any(_alive(p) for p in group), bound_s,
                   "the frozen worker and its JVM are killed")
        done = [server.wait_for_job(j, {"finished", "failed"}, timeout_s=180) for j in queued]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert [(j["status"], j["jobResult"]) for j in done] == [("finished", 3), ("finished", 6)]
    assert frozen_id not in {j["workerId"] for j in done}
    assert server.job(running)["status"] == "failed"  # nothing came back from the dead
    assert "sent no heartbeat for 10s (frozen or hung)" in server.log.read_text()


def test_a_stalled_redis_does_not_make_live_workers_look_frozen(server: Server):
    """While Redis is stalled no heartbeat gets through, and records expire; the supervisor,
    blind meanwhile, gives every worker a whole TTL again rather than killing them all."""
    worker = wait_until(lambda: server.workers("default"), 60, "the default worker")[0]
    redis_server = next(p for p in psutil.Process(server.process.pid).children()
                        if "redis" in p.name())
    redis_server.suspend()
    try:
        time.sleep(WORKER_TTL_S + 3)
    finally:
        redis_server.resume()
    time.sleep(WORKER_TTL_S / 2 + 2)  # checks enough for a kill, had it been judged frozen
    assert _alive(_pid(worker))
    assert [w["name"] for w in server.workers("default")] == [worker["name"]]
    job = server.wait_for_job(server.submit("sum_range", {"n": 4}), {"finished", "failed"})
    assert (job["status"], job["workerId"]) == ("finished", worker["name"])
    assert f"killing worker pid {_pid(worker)} " not in server.log.read_text()


def test_a_replaced_worker_s_successor_is_warm_before_the_next_job(server: Server):
    server.context("abandoning")
    victim = server.submit("sleep_python", {"seconds": 300}, context="abandoning")
    old = server.wait_for_job(victim, {"started"}, timeout_s=120)["workerId"]
    assert server.delete(f"/jobs/{victim}").json()["status"] == "cancelling"
    job = server.wait_for_job(victim, {"cancelled", "failed", "finished"},
                              timeout_s=CANCEL_GRACE_S + 5)
    assert job["status"] == "cancelled" and "ignored Spark's cancel" in job["jobResult"]
    # Nothing is queued for the context: its successor starts because the worker asked.
    successor = wait_until(
        lambda: [w for w in server.workers("abandoning")
                 if w["name"] != old and w["state"] == "running"],
        120, "a successor is registered")[0]
    later = server.submit("sum_range", {"n": 10}, context="abandoning")
    done = server.wait_for_job(later, {"finished", "failed"}, timeout_s=60)
    assert (done["status"], done["jobResult"], done["workerId"]) == ("finished", 45,
                                                                     successor["name"])
    # A warm worker takes it at once; a cold one would make it wait for Spark (seconds).
    assert done["startTime"] - done["createTime"] < 1500


def test_a_job_failed_as_lost_keeps_that_verdict_when_its_worker_comes_back(
        runner, capture, catalog, store, queue, redis):
    """A worker frozen past its record's TTL, then resumed (or a job whose end races the
    reconciler's verdict): its late outcome is discarded, with no `finished` event and no
    log line saying it finished."""
    capture.install()
    deploy(catalog, "behaviours.py", "sleep_python")
    events = Events(redis)
    job_id = enqueue(catalog, store, queue, "sleep_python", {"seconds": 2})
    worker = threading.Thread(target=run_next, args=(runner, queue))
    worker.start()
    wait_until(lambda: store.get_job(job_id).status is JobStatus.STARTED, 30, "it starts")
    # The test's worker never announced itself: to the reconciler it is a silent one.
    reconciler = Reconciler(store, catalog, queue, WorkerRegistry(redis, WORKER_TTL_S), redis,
                            settle_s=0)
    assert reconciler.run_once()["lost_workers"] == 1
    worker.join(timeout=30)
    assert not worker.is_alive()
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED and job.result is None
    assert job.error.startswith("worker lost: worker test-worker stopped sending heartbeats")
    assert events.names_for(job_id, until="finished", timeout_s=3) == [
        "worker-assigned", "started", "failed"]
    capture.flush(job_id)
    lines = logs_of(store, job_id)
    assert not [line for line in lines if line.startswith("finished")], lines
    assert lines[-1].startswith("its function ended after ")
    assert lines[-1].endswith("ms, but the job was already failed: that outcome is discarded")
    time.sleep(0.3)  # nothing else lands later (the capture's flusher runs every 0.1 s)
    assert logs_of(store, job_id) == lines


def test_a_recycled_worker_s_successor_is_warm_before_the_next_job(tmp_path):
    with running_server(tmp_path, {"SPARKGATE_WORKER_MAX_JOBS": "1"}) as server:
        server.deploy("behaviours.py", "sum_range", "sum_range")
        first = server.wait_for_job(server.submit("sum_range", {"n": 3}), {"finished", "failed"})
        assert first["status"] == "finished"
        successor = wait_until(
            lambda: [w for w in server.workers("default")
                     if w["name"] != first["workerId"] and w["state"] == "running"],
            120, "the recycled worker's successor is registered")[0]
        later = server.wait_for_job(server.submit("sum_range", {"n": 4}), {"finished", "failed"})
    assert (later["status"], later["workerId"]) == ("finished", successor["name"])
    assert later["startTime"] - later["createTime"] < 1500
