"""The result cache (docs/caching.md): a function deployed with ``cache`` answers an identical
call from its last result without running it, on SQLite and PostgreSQL.

Jobs run in a python-engine worker in threads of this process (one per context); every run of
the test functions (tests/functions/cached.py) appends a line to a file, which is how a test
tells that a call ran, or did not.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from alembic import command
from redis import Redis
from sqlalchemy import create_engine, text

from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.contexts import Context
from sparkgate.jobs.events import events_channel
from sparkgate.jobs.functions import Function
from sparkgate.jobs.logs.capture import JobLogCapture
from sparkgate.jobs.migrate import alembic_config
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.result_cache import ResultCache, Run
from sparkgate.jobs.store import Store
from sparkgate.workers.artifacts import FunctionLoader
from sparkgate.workers.engines.python import PythonEngine
from sparkgate.workers.execution import JobRunner
from sparkgate.workers.watchdog import Watchdog
from tests import test_migrations
from tests.api_responses import error_of, json_of
from tests.conftest import free_port, function_source

API = "/v2/api"
CONTEXTS = ("default", "other")
# A fresh database, SQLite and PostgreSQL, for the migration's test.
empty_db = test_migrations.empty_db


@pytest.fixture
def worker(store: Store, catalog: Catalog, queue: JobQueue, redis: Redis,
           tmp_path: Path) -> Iterator[None]:
    """Runs every job queued for the default and the ``other`` context, as a worker would."""
    catalog.save_context(Context.from_defaults("other", catalog.context_defaults))
    capture = JobLogCapture(store.append_logs, flush_interval_s=0.1)
    python = PythonEngine()
    watchdog = Watchdog(python.cancel, lambda job_id, why: None, cancel_grace_s=30)
    runner = JobRunner(store=store, queue=queue, redis=redis,
                       loader=FunctionLoader(catalog, tmp_path / "loaded"), engine=python,
                       worker_id="cache-test-worker", capture=capture, watchdog=watchdog,
                       progress=python.progress(store.set_progress))
    stop = threading.Event()

    def serve(context: str) -> None:
        while not stop.is_set():
            job_id = queue.pop(context, 1)
            if job_id is not None:
                runner.run(job_id, CONTEXTS.index(context))

    threads = [threading.Thread(target=serve, args=(c,), daemon=True) for c in CONTEXTS]
    for thread in threads:
        thread.start()
    yield
    stop.set()
    for thread in threads:
        thread.join(5)
    watchdog.close()
    capture.close()


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """The file each run of a test function appends a line to."""
    return tmp_path / "runs.txt"


def run_count(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


async def upload(client, content: bytes, name: str = "cached.py") -> None:
    form = aiohttp.FormData()
    form.add_field("file", content, filename=name, content_type="text/x-python")
    response = await client.post(f"{API}/artifacts?force=true", data=form)
    assert response.status == 200, await response.text()


async def deploy(client, name: str = "counted", method: str = "post",
                 **fields: Any) -> dict[str, Any]:
    if method == "post":
        await upload(client, function_source("cached.py"))
    body = {"name": name, "path": "cached.py", "className": name, **fields}
    return await json_of(await client.request(method, f"{API}/functions", json=body))


async def call(client, arguments: dict[str, Any], query: str = "wait=20s",
               name: str = "counted") -> dict[str, Any]:
    """The job of a call made with ``wait=`` (JobDetails), or the answer to another kind."""
    return await json_of(await client.post(f"{API}/functions/{name}/jobs?{query}",
                                           json=arguments))


async def test_an_identical_call_gets_the_first_result_and_runs_nothing(client, worker, runs,
                                                                       redis):
    info = await deploy(client, cache="10m")
    assert info["cache"] == "600s"
    arguments = {"path": str(runs), "x": 7}
    first = await call(client, arguments)
    assert (first["status"], first["jobResult"]) == ("finished", {"x": 7, "path": str(runs)})
    assert "cachedFrom" not in first

    again = await call(client, {"x": 7, "path": str(runs)})  # same arguments, other key order
    assert again["jobId"] != first["jobId"]
    assert (again["status"], again["jobResult"]) == ("finished", first["jobResult"])
    assert again["cachedFrom"] == first["jobId"]
    sync = await call(client, arguments, "force=true")
    assert sync == {"success": True, "payload": first["jobResult"], "errors": []}
    queued = await call(client, arguments, "")
    assert run_count(runs) == 1
    assert redis.keys("sparkgate:cache-call:counted:*")  # later calls took the short cut

    # Recorded like any job: by id and in listings, finished, naming the job that ran.
    recorded = await json_of(await client.get(f"{API}/jobs/{queued['id']}"))
    assert (recorded["status"], recorded["cachedFrom"]) == ("finished", first["jobId"])
    assert recorded["jobResult"] == first["jobResult"]
    listed = await json_of(await client.get(f"{API}/functions/counted/jobs"))
    assert len(listed) == 4
    assert [j.get("cachedFrom") for j in listed].count(first["jobId"]) == 3


async def test_a_cached_job_announces_its_creation_and_its_end(client, worker, runs, redis):
    events = redis.pubsub(ignore_subscribe_messages=True)
    events.subscribe(events_channel(redis))
    await deploy(client, cache="10m")
    await call(client, {"path": str(runs)})
    # The first answered from the cache through the submit path, the second from the index.
    cached_ids = [(await call(client, {"path": str(runs)}))["jobId"] for _ in range(2)]
    seen: dict[str, list[str]] = {job_id: [] for job_id in cached_ids}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(len(names) < 2 for names in seen.values()):
        message = events.get_message(timeout=0.2)
        if message and (event := json.loads(message["data"]))["id"] in seen:
            seen[event["id"]].append(event["event"])
    assert seen == {job_id: ["initialized", "finished"] for job_id in cached_ids}
    events.close()


async def test_record_false_answers_the_job_that_ran_and_records_nothing(client, worker, runs):
    await deploy(client, cache="10m")
    first = await call(client, {"path": str(runs)})
    assert await call(client, {"path": str(runs)}, "record=false") == {"id": first["jobId"]}
    sync = await call(client, {"path": str(runs)}, "force=true&record=false")
    assert sync["payload"] == first["jobResult"]
    ended = await call(client, {"path": str(runs)}, "wait=5s&record=false")
    assert (ended["jobId"], ended["jobResult"]) == (first["jobId"], first["jobResult"])
    assert len(await json_of(await client.get(f"{API}/jobs"))) == 1
    assert run_count(runs) == 1


async def test_the_cache_is_off_by_default(client, worker, runs):
    info = await deploy(client)
    assert "cache" not in info
    first = await call(client, {"path": str(runs)})
    second = await call(client, {"path": str(runs)})
    assert "cachedFrom" not in second and second["jobId"] != first["jobId"]
    assert run_count(runs) == 2


async def cached(client, arguments: dict[str, Any], query: str = "wait=20s") -> None:
    """Call three times: the first runs (or is answered from the cache), the next two are
    answered from the cache (the third from the call index: see jobs/result_cache.py)."""
    first = await call(client, arguments, query)
    for _ in range(2):
        again = await call(client, arguments, query)
        if "jobId" in again:  # wait=: the job, with what it repeats
            assert again["cachedFrom"] == first.get("cachedFrom", first["jobId"]), again
        else:  # force=true: Mist's answer
            assert again == first


async def test_it_runs_again_after_the_ttl(client, worker, runs):
    await deploy(client, cache="1s")
    await cached(client, {"path": str(runs)})
    await asyncio.sleep(1.2)
    assert "cachedFrom" not in await call(client, {"path": str(runs)})
    assert run_count(runs) == 2


async def test_other_arguments_or_another_context_run_again(client, worker, runs):
    await deploy(client, cache="10m")
    await call(client, {"path": str(runs), "x": 1})
    assert "cachedFrom" not in await call(client, {"path": str(runs), "x": 2})
    assert "cachedFrom" not in await call(client, {"path": str(runs), "x": 1},
                                          "wait=20s&context=other")
    assert "cachedFrom" in await call(client, {"path": str(runs), "x": 1},
                                      "wait=20s&context=other")
    assert run_count(runs) == 3


async def test_a_redeploy_or_a_new_artifact_runs_again(client, worker, runs):
    await deploy(client, cache="10m")
    await cached(client, {"path": str(runs)})
    await deploy(client, method="put", cache="10m")  # the function updated
    await cached(client, {"path": str(runs)})
    await upload(client, function_source("cached.py") + b"\n# a new version\n")
    await cached(client, {"path": str(runs)})
    await client.delete(f"{API}/functions/counted")
    await deploy(client, cache="10m")  # deleted and created again
    await cached(client, {"path": str(runs)})
    assert run_count(runs) == 4


async def test_a_function_updated_without_cache_runs_every_call(client, worker, runs):
    await deploy(client, cache="10m")
    await cached(client, {"path": str(runs)}, "force=true")
    await deploy(client, method="put")
    await call(client, {"path": str(runs)}, "force=true")
    await call(client, {"path": str(runs)}, "force=true")
    assert run_count(runs) == 3


async def test_a_purge_forgets_every_result(client, worker, runs):
    await deploy(client, cache="10m")
    await cached(client, {"path": str(runs), "x": 1})
    await cached(client, {"path": str(runs), "x": 2}, "force=true")
    purged = await client.delete(f"{API}/functions/counted/cache")
    assert purged.status == 204
    for x in (1, 2):
        assert "cachedFrom" not in await call(client, {"path": str(runs), "x": x})
    assert run_count(runs) == 4
    await error_of(await client.delete(f"{API}/functions/nope/cache"), 404, "not_found")


async def test_concurrent_identical_calls_run_once(client, worker, runs):
    await deploy(client, cache="10m")
    arguments = {"path": str(runs), "delay_s": 1.0}
    answers = await asyncio.gather(*(call(client, arguments) for _ in range(5)),
                                   call(client, arguments, "force=true"))
    assert run_count(runs) == 1
    jobs, sync = answers[:-1], answers[-1]
    assert all(j["status"] == "finished" and j["jobResult"] == sync["payload"] for j in jobs)
    # One job ran: one of these five (no cachedFrom), or the sync call; the rest repeat it.
    ran = [j["jobId"] for j in jobs if "cachedFrom" not in j]
    repeated = {j["cachedFrom"] for j in jobs if "cachedFrom" in j}
    assert len(ran) <= 1 and len(repeated) == 1
    assert not ran or repeated == set(ran)
    assert len({j["jobId"] for j in jobs}) == 5


async def test_failed_jobs_are_never_cached_and_their_waiters_run(client, worker, runs):
    await deploy(client, name="failing", cache="10m")
    arguments = {"path": str(runs), "delay_s": 0.5}
    jobs = await asyncio.gather(*(call(client, arguments, name="failing") for _ in range(3)))
    assert run_count(runs) == 3
    assert all(j["status"] == "failed" and "cachedFrom" not in j for j in jobs)
    again = await call(client, arguments, name="failing")
    assert again["status"] == "failed" and "cachedFrom" not in again
    assert run_count(runs) == 4


@pytest.mark.parametrize("cache", ["soon", "Inf", 60, ["1s"]])
async def test_a_bad_cache_value_is_a_400_naming_the_field(client, cache):
    await upload(client, function_source("cached.py"))
    body = {"name": "counted", "path": "cached.py", "className": "counted", "cache": cache}
    error = await error_of(await client.post(f"{API}/functions", json=body), 400, "bad_request")
    assert error["details"]["field"] == "cache"
    assert error["message"].startswith("cache: expected")
    await error_of(await client.get(f"{API}/functions/counted"), 404, "not_found")


async def test_an_async_call_while_the_first_runs_runs_its_own(client, worker, runs):
    """Documented: only a caller that waits (force, wait=) waits for an identical running
    call; an async submit needs its own job id at once."""
    await deploy(client, cache="10m")
    arguments = {"path": str(runs), "delay_s": 0.5}
    waiting = asyncio.ensure_future(call(client, arguments))
    await asyncio.sleep(0.2)
    queued = await call(client, arguments, "")
    await waiting
    deadline = time.monotonic() + 10
    while run_count(runs) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    own = await json_of(await client.get(f"{API}/jobs/{queued['id']}"))
    assert "cachedFrom" not in own
    assert run_count(runs) == 2


def test_an_unreachable_redis_is_a_miss(catalog: Catalog, engine):
    """The cache never answers 503 itself (the submit's enqueue does, as ever), nor a stale
    result: without Redis it is a miss, and the call runs."""
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    cache = ResultCache(unreachable, max_bytes=1024)
    function = Function(name="counted", path="cached.py", class_name="counted",
                        default_context="default", cache_ms=60_000)
    with engine.connect() as conn:
        found = cache.look_up(conn, function, ["sha", "default", {}], "job-1", follow=True)
    assert found == Run(claimed=False)
    unreachable.close()


def test_migration_0008_keeps_functions_and_jobs_as_they_were(empty_db: str):
    config = alembic_config(empty_db)
    command.upgrade(config, "0007")
    engine = create_engine(empty_db)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO functions (name, path, class_name, default_context, lang, tags, "
            "created_at, updated_at) VALUES ('f', 'f.py', 'f', 'default', 'python', '[]', 1, 1)"))
        conn.execute(text(
            "INSERT INTO jobs (id, function, context, arguments, file_path, class_name, status, "
            "source, create_time) VALUES ('j', 'f', 'default', '{}', 'f.py', 'f', 'finished', "
            "'http', 1)"))
    command.upgrade(config, "0008")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT cache_ms FROM functions")).scalar_one() is None
        assert conn.execute(text("SELECT cached_from FROM jobs")).scalar_one() is None
    command.downgrade(config, "0007")
    engine.dispose()


async def test_a_wait_runs_its_own_job_when_the_identical_one_outlasts_it(client, worker, runs):
    await deploy(client, cache="10m")
    arguments = {"path": str(runs), "delay_s": 1.5}
    first = asyncio.ensure_future(call(client, arguments))
    await asyncio.sleep(0.3)
    response = await client.post(f"{API}/functions/counted/jobs?wait=200ms", json=arguments)
    pending = await json_of(response, 202)
    assert pending["status"] == "queued" and "cachedFrom" not in pending
    assert pending["id"] != (await first)["jobId"]
    ended = await json_of(await client.get(f"{API}/jobs/{pending['id']}"))
    deadline = time.monotonic() + 20
    while ended["status"] != "finished" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        ended = await json_of(await client.get(f"{API}/jobs/{pending['id']}"))
    assert ended["status"] == "finished" and "cachedFrom" not in ended
    assert run_count(runs) == 2
