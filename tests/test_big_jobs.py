"""Jobs with multi-megabyte arguments and results: listings stay small, the gateway stays
responsive while it takes them in, and its memory comes back afterwards."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from sparkgate.jobs.db import json_text, now_ms
from sparkgate.jobs.events import (
    VALUE_MAX_BYTES,
    decode,
    encode,
    initialized_event,
    lifecycle_event,
)
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, JobQuery, NewJob, RawJSON, Store
from tests.api_responses import json_of
from tests.server_process import Server, running_server, wait_until
from tests.test_api_jobs import WAIT_S, deploy, finish, work_one

BIG_JOBS = 30
# About 4 MB of JSON each: numbers, the costliest kind to parse and to hold as Python objects.
BIG_VALUES = 400_000


def big_arguments(seed: int) -> dict:
    return {"value": [seed + i * 0.5 for i in range(BIG_VALUES)]}


CAP = 1000  # bytes of JSON a listing carries per value, in the tests below
API = "/v2/api"


def stored_bytes(value: object) -> int:
    """The size of ``value`` as the jobs table stores it."""
    return len(json_text(value).encode())


def new_job(store: Store, arguments: dict) -> Job:
    return store.create_job(NewJob(function="echo", context="default", arguments=arguments,
                                   file_path="echo.py", class_name="echo", artifact_sha1=None))


def finished(store: Store, arguments: dict, result: object) -> Job:
    job = new_job(store, arguments)
    store.transition(job.id, JobStatus.STARTED, start_time=now_ms(), worker_id="w")
    return store.transition(job.id, JobStatus.FINISHED, result=result, end_time=now_ms())


def failed(store: Store, error: str) -> Job:
    job = new_job(store, {"n": 1})
    return store.transition(job.id, JobStatus.FAILED, error=error, end_time=now_ms())


def listed(store: Store) -> dict[str, Job]:
    jobs, _ = store.list_jobs(JobQuery(limit=100), value_max_bytes=CAP)
    return {j.id: j for j in jobs}


def test_a_listing_reads_values_only_up_to_the_cap(store: Store) -> None:
    big_args = {"text": "é" * CAP}  # stored as UTF-8: 2 bytes a character
    small = finished(store, {"n": 1}, {"ok": True})
    big = finished(store, big_args, list(range(CAP)))
    at_cap = new_job(store, {"s": "x" * (CAP - len('{"s":""}'))})
    nothing = finished(store, {"n": 2}, None)
    error = failed(store, "boom\n\n" + "Traceback line\n" * 200)

    jobs = listed(store)

    assert jobs[small.id].oversized == {}
    assert (jobs[small.id].arguments, jobs[small.id].result) == ({"n": 1}, {"ok": True})
    assert jobs[big.id].oversized == {"arguments": stored_bytes(big_args),
                                      "result": stored_bytes(list(range(CAP)))}
    assert jobs[big.id].arguments is None and jobs[big.id].result is None
    assert jobs[at_cap.id].oversized == {} and stored_bytes(at_cap.arguments) == CAP
    assert jobs[at_cap.id].arguments == at_cap.arguments
    assert jobs[nothing.id].oversized == {} and jobs[nothing.id].result is None
    assert jobs[error.id].oversized == {"error": len(error.error.encode())}
    assert store.get_job(big.id).arguments == big_args  # one job is always read in full


def test_a_job_is_read_with_its_values_unparsed(store: Store) -> None:
    job = finished(store, {"text": "é\u0000", "n": [1, 2.5]}, None)
    queued = new_job(store, {"m": {"k": True}})

    raw = store.get_job(job.id, raw_values=True)
    unstarted = store.get_job(queued.id, raw_values=True)

    assert isinstance(raw.arguments, RawJSON) and isinstance(raw.result, RawJSON)
    assert json.loads(raw.arguments.text) == job.arguments
    assert json.loads(raw.result.text) is None
    assert json.loads(unstarted.arguments.text) == queued.arguments
    assert unstarted.result is None
    assert (raw.status, raw.submitter, raw.function) == (job.status, job.submitter, job.function)


def test_without_a_cap_a_listing_reads_everything(store: Store) -> None:
    big = finished(store, {"text": "x" * 5000}, "y" * 5000)
    (job,), _ = store.list_jobs(JobQuery())
    assert (job.arguments, job.result, job.oversized) == (big.arguments, big.result, {})


async def test_listings_carry_markers_and_the_job_its_values(make_client, store: Store) -> None:
    client = await make_client(listing_value_max_bytes=CAP)
    big = finished(store, {"value": "v" * 2 * CAP}, {"rows": ["r"] * CAP})
    error = failed(store, "e" * 2 * CAP)
    small = finished(store, {"value": 1}, 2)
    marker = {"truncated": True, "url": f"{API}/jobs/{big.id}"}

    listing = await json_of(await client.get(f"{API}/jobs"))
    page = await json_of(await client.get(f"{API}/jobs", params={"paginate": "true"}))

    for jobs in (listing, page["jobs"]):
        by_id = {j["jobId"]: j for j in jobs}
        assert by_id[big.id]["params"]["arguments"] == {
            **marker, "bytes": stored_bytes(big.arguments)}
        assert by_id[big.id]["params"]["filePath"] == "echo.py"
        assert by_id[big.id]["jobResult"] == {**marker, "bytes": stored_bytes(big.result)}
        assert by_id[big.id]["truncated"] == ["params.arguments", "jobResult"]
        assert by_id[error.id]["jobResult"] == {
            "truncated": True, "bytes": 2 * CAP, "url": f"{API}/jobs/{error.id}"}
        assert by_id[error.id]["truncated"] == ["jobResult"]
        assert by_id[small.id]["params"]["arguments"] == {"value": 1}
        assert by_id[small.id]["jobResult"] == 2 and "truncated" not in by_id[small.id]
    full = await json_of(await client.get(f"{API}/jobs/{big.id}"))
    assert (full["params"]["arguments"], full["jobResult"]) == (big.arguments, big.result)
    assert "truncated" not in full
    assert (await json_of(await client.get(f"{API}/jobs/{error.id}")))["jobResult"] == error.error


@pytest.mark.parametrize("query", ["force=true", "wait=10s"])
async def test_a_sync_call_answers_a_result_too_big_for_its_event(client, store, redis, queue,
                                                                    query: str) -> None:
    await deploy(client, "echo", "echo.py")
    result = {"rows": ["r" * 100] * 2000}  # over 64 KiB: the finished event has a marker
    worker = asyncio.create_task(work_one(
        client, store, redis, queue, lambda job_id: finish(store, redis, job_id, result)))

    response = await asyncio.wait_for(
        client.post(f"{API}/functions/echo/jobs?{query}", json={"value": [1.5] * 30_000}),
        WAIT_S)
    await asyncio.wait_for(worker, WAIT_S)

    body = await json_of(response)
    assert (body["payload"] if query == "force=true" else body["jobResult"]) == result


def test_events_carry_big_values_as_markers() -> None:
    job = Job(id="j1", function="echo", context="default", arguments={"v": "x" * VALUE_MAX_BYTES},
              file_path="echo.py", class_name="echo", artifact_sha1=None,
              status=JobStatus.FINISHED, source="http", external_id=None, create_time=1,
              result=list(range(VALUE_MAX_BYTES)))
    small = Job(**{**vars(job), "arguments": {"v": 1}, "result": 2})

    initialized = decode(encode(initialized_event(job)))
    ended = decode(encode(lifecycle_event(job)))

    assert initialized["params"] == {"truncated": True, "url": "/v2/api/jobs/j1"}
    assert initialized["truncated"] == ["params"] and initialized["function"] == "echo"
    assert ended["result"]["truncated"] is True and ended["truncated"] == ["result"]
    at_cap = Job(**{**vars(small), "result": "x" * (VALUE_MAX_BYTES - 2)})  # with its quotes
    assert decode(encode(lifecycle_event(at_cap)))["result"] == at_cap.result
    over = Job(**{**vars(small), "result": "x" * (VALUE_MAX_BYTES - 1)})
    assert decode(encode(lifecycle_event(over)))["truncated"] == ["result"]
    assert decode(encode(initialized_event(small)))["params"] == {"v": 1}
    assert "truncated" not in decode(encode(lifecycle_event(small)))


class StatusProbe:
    """Calls /v2/api/status over and over from its own thread; the slowest answer it saw."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.slowest_s = 0.0
        self.calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusProbe:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                began = time.monotonic()
                response = session.get(self.server.api("/status"), timeout=60)
                assert response.status_code == 200
                self.slowest_s = max(self.slowest_s, time.monotonic() - began)
                self.calls += 1
                time.sleep(0.05)


def rss_mb(server: Server) -> float:
    return psutil.Process(server.process.pid).memory_info().rss / 1e6


@pytest.mark.slow
def test_big_jobs_keep_listings_small_and_the_gateway_responsive(tmp_path: Path) -> None:
    env = {"SPARKGATE_START_WORKERS": "false", "SPARKGATE_DEPLOY_EXAMPLES": "false"}
    with running_server(tmp_path, env, wait_for_worker=False) as server:
        server.deploy("echo.py", "echo", "echo")
        # Warm: the first calls import and allocate what every later one reuses.
        small = server.submit("echo", {"value": 1})
        assert server.get("/jobs").status_code == 200
        baseline_mb = rss_mb(server)
        bodies = {seed: json.dumps(big_arguments(seed)) for seed in range(BIG_JOBS)}

        def submit(seed: int) -> str:
            response = requests.post(server.api("/functions/echo/jobs"), data=bodies[seed],
                                     headers={"Content-Type": "application/json"}, timeout=120)
            assert response.status_code == 200, response.text
            return response.json()["id"]

        def listing() -> bytes:
            response = server.get("/jobs", params={"limit": 100})
            assert response.status_code == 200, response.text
            return response.content

        with StatusProbe(server) as probe, ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(submit, range(BIG_JOBS)))
            listings = list(pool.map(lambda _: listing(), range(8)))
        assert probe.calls > 10
        # Not a speed target (bench/ has those): a loop blocked by the burst's megabytes stalls
        # /status for seconds; a free one answered within 1.03 s at worst on a loaded machine.
        assert probe.slowest_s < 2.0, f"/status took {probe.slowest_s:.2f}s during the burst"

        jobs = json.loads(listings[-1])
        assert {j["jobId"] for j in jobs} == {*ids, small}
        assert max(len(body) for body in listings) < 200_000
        by_id = {j["jobId"]: j for j in jobs}
        for seed, job_id in enumerate(ids):
            assert by_id[job_id]["params"]["arguments"] == {
                "truncated": True, "bytes": stored_bytes(json.loads(bodies[seed])),
                "url": f"/v2/api/jobs/{job_id}"}
            assert by_id[job_id]["truncated"] == ["params.arguments"]
        assert by_id[small]["params"]["arguments"] == {"value": 1}
        assert "truncated" not in by_id[small]
        assert server.job(ids[7])["params"]["arguments"] == big_arguments(7)

        # Before: 316 MB held for good after this burst from a baseline of 97 MB.
        wait_until(lambda: rss_mb(server) < baseline_mb + 100, 30,
                   f"the gateway's memory back near {baseline_mb:.0f} MB "
                   f"(it holds {rss_mb(server):.0f} MB)")
