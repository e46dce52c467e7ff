"""Contexts and the worker lifecycle with real processes: cancellation that always ends,
timeouts, idle downtime, exclusive workers, broken contexts and their repair, stopping workers
through the API, recycling. Each test asserts the final state of every job involved.

The lifecycle is the same code for both engines: what is about Spark (its job groups, its
progress, a JVM that will not start, a Python loop that ignores Spark's cancel) runs on the
spark engine; the rest on python contexts, whose workers start in about a second instead of
Spark's ten.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.server_process import Server, running_server, wait_until

pytestmark = pytest.mark.slow

CANCEL_GRACE_S = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("lifecycle")
    with running_server(workdir, {"SPARKGATE_CANCEL_GRACE_S": str(CANCEL_GRACE_S),
                                  "SPARKGATE_WORKER_STOP_GRACE_S": "5"}) as server:
        server.deploy("behaviours.py", "sleep_python", "sleep_python")
        server.deploy("behaviours.py", "slow_spark", "slow_spark")
        server.deploy("behaviours.py", "sum_range", "sum_range")
        server.deploy("plain_behaviours.py", "naps", "naps")
        server.deploy("plain.py", "add", "add")
        yield server


def test_cancel_of_a_pure_python_loop_ends_in_bounded_time(server: Server):
    victim = server.submit("sleep_python", {"seconds": 300})
    neighbour = server.submit("sleep_python", {"seconds": 2})
    started = server.wait_for_job(victim, {"started"})
    server.wait_for_job(neighbour, {"started"})
    old_worker = started["workerId"]
    asked = time.monotonic()
    assert server.delete(f"/jobs/{victim}").json()["status"] == "cancelling"
    job = server.wait_for_job(victim, {"cancelled", "failed", "finished"},
                              timeout_s=CANCEL_GRACE_S + 5)
    assert job["status"] == "cancelled"
    assert time.monotonic() - asked < CANCEL_GRACE_S + 5
    assert "ignored Spark's cancel" in job["jobResult"]
    # The neighbour on the same worker is not sacrificed: it finishes while the worker drains.
    assert server.wait_for_job(neighbour, {"finished", "failed"})["status"] == "finished"
    # The worker is replaced, and the next job runs on its successor.
    later = server.submit("sum_range", {"n": 10})
    done = server.wait_for_job(later, {"finished", "failed"}, timeout_s=120)
    assert done["status"] == "finished" and done["jobResult"] == 45
    assert done["workerId"] != old_worker


def test_cancel_of_a_running_spark_job_cancels_its_job_group(server: Server):
    job_id = server.submit("slow_spark", {"seconds": 120})
    server.wait_for_job(job_id, {"started"})
    wait_until(lambda: (server.job(job_id).get("progress") or {}).get("tasks", {})
               .get("total"), 30, "the Spark job's tasks are known")
    server.delete(f"/jobs/{job_id}")
    job = server.wait_for_job(job_id, {"cancelled", "failed", "finished"}, timeout_s=10)
    assert job["status"] == "cancelled"
    assert "jobResult" not in job  # cancelled cleanly: no abandonment message


def test_cancel_of_a_finished_job_says_it_finished(server: Server):
    job_id = server.submit("sum_range", {"n": 4})
    server.wait_for_job(job_id, {"finished"})
    refused = server.delete(f"/jobs/{job_id}")
    assert refused.status_code == 409
    assert "already finished" in refused.json()["error"]["message"]
    assert server.job(job_id)["status"] == "finished"


def test_perform_timeout_fails_a_spark_job_that_runs_too_long(server: Server):
    job_id = server.submit("slow_spark", {"seconds": 120}, performTimeout="2s")
    job = server.wait_for_job(job_id, {"finished", "failed", "cancelled"}, timeout_s=30)
    assert job["status"] == "failed"
    assert "performTimeout exceeded" in job["jobResult"]
    assert job["endTime"] - job["startTime"] < 2000 + CANCEL_GRACE_S * 1000 + 3000


def test_perform_timeout_default_comes_from_the_context(server: Server):
    server.context("short_jobs", performTimeout="1s", engine="python")
    job_id = server.submit("naps", {"seconds": 60}, context="short_jobs")
    job = server.wait_for_job(job_id, {"finished", "failed", "cancelled"}, timeout_s=120)
    assert job["status"] == "failed" and "performTimeout exceeded" in job["jobResult"]
    assert job["performTimeout"] == 1000
    fast = server.submit("add", {"x": 3}, context="short_jobs", performTimeout="60s")
    assert server.wait_for_job(fast, {"finished", "failed"}, timeout_s=120)["jobResult"] == 4


def test_progress_is_kept_on_the_job(server: Server):
    job_id = server.submit("slow_spark", {"seconds": 2})
    job = server.wait_for_job(job_id, {"finished", "failed"})
    assert job["status"] == "finished"
    # The final counts follow the end by moments (Spark's listener bus lags the action).
    final = {"done": 4, "total": 4, "active": 0, "failed": 0}
    deadline = time.monotonic() + 10
    while (job["progress"] or {}).get("tasks") != final:
        assert time.monotonic() < deadline, job["progress"]
        time.sleep(0.1)
        job = server.job(job_id)
    assert job["progress"]["percent"] == 100


def test_an_idle_shared_worker_stops_after_downtime_and_comes_back(server: Server):
    server.context("brief", downtime="2s", engine="python")
    first = server.submit("add", {"x": 5}, context="brief")
    worker = server.wait_for_job(first, {"finished"}, timeout_s=120)["workerId"]
    wait_until(lambda: not server.workers("brief"), 30, "the idle worker stops")
    again = server.submit("add", {"x": 6}, context="brief")
    job = server.wait_for_job(again, {"finished", "failed"}, timeout_s=120)
    assert job["status"] == "finished" and job["workerId"] != worker


def test_exclusive_context_gets_a_fresh_worker_per_job(server: Server):
    server.context("solo", workerMode="exclusive", maxJobs=2, engine="python")
    ids = [server.submit("add", {"x": x}, context="solo") for x in (3, 4)]
    jobs = [server.wait_for_job(i, {"finished", "failed"}, timeout_s=120) for i in ids]
    assert [j["jobResult"] for j in jobs] == [4, 5]
    assert jobs[0]["workerId"] != jobs[1]["workerId"]
    wait_until(lambda: not server.workers("solo"), 30, "one-job workers stop after their job")


def test_a_context_whose_workers_keep_failing_breaks_and_an_update_repairs_it(server: Server):
    server.context("bad", maxConnFailures=2, sparkConf={"spark.master": "nonsense://x"})
    queued = server.submit("sum_range", {"n": 2}, context="bad")
    job = server.wait_for_job(queued, {"failed", "finished"}, timeout_s=120)
    assert job["status"] == "failed"
    assert "context 'bad' is broken" in job["jobResult"]
    assert "PUT /v2/api/contexts/bad" in job["jobResult"]
    state = server.get("/contexts/bad").json()
    assert state["state"] == "broken" and state["workerFailures"] == 2
    # New jobs fail at once, without waiting for a worker.
    at_once = server.post("/functions/sum_range/jobs", params={"context": "bad",
                                                               "force": "true"}, json={})
    assert at_once.json()["success"] is False
    assert "is broken" in at_once.json()["errors"][0]
    # The update is the repair.
    from tests.conftest import TEST_SPARK_CONF

    repaired = server.put("/contexts/bad", json={"sparkConf": TEST_SPARK_CONF})
    assert repaired.json()["state"] == "ok" and repaired.json()["workerFailures"] == 0
    fixed = server.submit("sum_range", {"n": 3}, context="bad")
    assert server.wait_for_job(fixed, {"finished", "failed"}, timeout_s=120)["jobResult"] == 3


def test_stopping_a_worker_drains_it(server: Server):
    server.context("stoppable", engine="python")
    job_id = server.submit("naps", {"seconds": 4}, context="stoppable")
    running = server.wait_for_job(job_id, {"started"}, timeout_s=120)
    # Worker records are renewed by each heartbeat: wait for the one that shows the job.
    worker = wait_until(lambda: (w := server.get(f"/workers/{running['workerId']}").json())
                        ["runningJobs"] == [job_id] and w, 10, "the worker reports its job")
    assert worker["context"] == "stoppable"
    assert worker["initInfo"]["maxJobs"] == 2 and worker["uptimeMs"] > 0
    stopped = server.delete(f"/workers/{running['workerId']}")
    assert stopped.status_code == 200 and stopped.json()["state"] == "draining"
    # Its running job finishes; then it is gone.
    assert server.wait_for_job(job_id, {"finished", "failed"})["status"] == "finished"
    wait_until(lambda: server.get(f"/workers/{running['workerId']}").status_code == 404, 30,
               "the stopped worker leaves")
    assert server.delete("/workers/no-such-worker").status_code == 404


def test_workers_are_recycled_after_a_number_of_jobs_without_failing_any(tmp_path):
    with running_server(tmp_path, {"SPARKGATE_WORKER_MAX_JOBS": "2",
                                   "SPARKGATE_CONTEXT_MAX_JOBS": "1",
                                   "SPARKGATE_CONTEXT_ENGINE": "python",
                                   "SPARKGATE_DEPLOY_EXAMPLES": "false"}) as server:
        server.deploy("plain.py", "add", "add")
        ids = [server.submit("add", {"x": x}) for x in range(1, 6)]
        jobs = [server.wait_for_job(i, {"finished", "failed"}, timeout_s=180) for i in ids]
    assert [j["status"] for j in jobs] == ["finished"] * 5
    assert [j["jobResult"] for j in jobs] == [2, 3, 4, 5, 6]
    workers = [j["workerId"] for j in jobs]
    assert len(set(workers)) == 3  # 2 + 2 + 1
    assert workers[0] == workers[1] != workers[2] == workers[3] != workers[4]
