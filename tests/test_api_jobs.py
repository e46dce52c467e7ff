"""The jobs half of the HTTP API: submit, argument validation, sync waits, ``wait=``, listing,
logs, cancel.

No worker process runs here. Where a job must start or end, the test acts as the worker does,
through the real store and the real Redis: it pops the job from its RQ queue, moves it with
``store.transition`` (writing the fields a worker writes) and publishes the lifecycle event on
``jobs.events.events_channel``, from a thread while the request waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from redis import Redis

from sparkgate.gateway.app import create_app
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.events import (
    encode,
    events_channel,
    lifecycle_event,
    worker_assigned_event,
)
from sparkgate.jobs.logs.lines import LogLine
from sparkgate.jobs.publishing import control_channel
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, JobQuery, Store
from tests.api_responses import error_of, json_of
from tests.conftest import function_source

API = "/v2/api"
WORKER = "worker-test-1"
WAIT_S = 10  # upper bound for anything that should happen at once

# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


async def deploy(client, name: str, file: str, class_name: str | None = None) -> None:
    if (await client.get(f"{API}/artifacts/{file}/sha")).status == 404:
        form = aiohttp.FormData()
        form.add_field("file", function_source(file), filename=file)
        response = await client.post(f"{API}/artifacts", data=form)
        assert response.status == 200, await response.text()
    response = await client.post(f"{API}/functions", json={
        "name": name, "path": file, "className": class_name or name})
    assert response.status == 200, await response.text()


@pytest.fixture
async def echo(client) -> str:
    """``echo(spark, value: Any = None, tag: Optional[str] = None)``, deployed as ``echo``."""
    await deploy(client, "echo", "echo.py")
    return "echo"


@pytest.fixture
async def typed(client) -> str:
    await deploy(client, "typed", "typed.py")
    return "typed"


async def submit(client, function: str = "echo", body: Any = None, query: str = "") -> str:
    response = await client.post(f"{API}/functions/{function}/jobs{query}",
                                 json={} if body is None else body)
    assert response.status == 200, await response.text()
    payload = await response.json()
    assert list(payload) == ["id"]
    return payload["id"]


async def details(client, job_id: str) -> dict[str, Any]:
    return await json_of(await client.get(f"{API}/jobs/{job_id}"))


def job_count(store: Store) -> int:
    return store.list_jobs(JobQuery(limit=0), count=True)[1]


def assert_nothing_created(store: Store, queue: JobQueue, context: str = "default") -> None:
    assert job_count(store) == 0
    assert queue.queued_ids(context) == []


# What a worker does, through the real store and Redis (call these from a thread).

def publish(redis: Redis, event: dict[str, Any]) -> None:
    redis.publish(events_channel(redis), encode(event))


def start(store: Store, redis: Redis, job_id: str, worker_id: str = WORKER) -> Job:
    job = store.transition(job_id, JobStatus.STARTED, worker_id=worker_id, start_time=now_ms())
    publish(redis, worker_assigned_event(job))
    publish(redis, lifecycle_event(job))
    return job


def finish(store: Store, redis: Redis | None, job_id: str, result: Any) -> Job:
    job = store.transition(job_id, JobStatus.FINISHED, result=result, end_time=now_ms())
    if redis is not None:
        publish(redis, lifecycle_event(job))
    return job


def fail(store: Store, redis: Redis, job_id: str, error: str) -> Job:
    job = store.transition(job_id, JobStatus.FAILED, only_from={JobStatus.STARTED}, error=error,
                           end_time=now_ms())
    publish(redis, lifecycle_event(job))
    return job


async def until_waiting(client, count: int = 1) -> None:
    """Until the gateway holds ``count`` sync waiters (its status reports them)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        status = await json_of(await client.get(f"{API}/status"))
        if status["syncWaiters"] >= count:
            return
        assert time.monotonic() < deadline, "the request never started waiting"
        await asyncio.sleep(0.01)


async def until_queued(queue: JobQueue, context: str = "default") -> list[str]:
    """The ids queued for ``context``, once there is one."""
    deadline = time.monotonic() + WAIT_S
    while not (ids := await asyncio.to_thread(queue.queued_ids, context)):
        assert time.monotonic() < deadline, "no job was queued"
        await asyncio.sleep(0.01)
    return ids


async def work_one(client, store: Store, redis: Redis, queue: JobQueue,
                   outcome: Callable[[str], Any], context: str = "default") -> str:
    """Take the next job of ``context`` from its queue once a request waits for it, start it,
    then end it with ``outcome(job_id)``; returns the job id."""
    job_id = await asyncio.to_thread(queue.pop, context, WAIT_S)
    assert job_id is not None, "no job was queued"
    await until_waiting(client)
    await asyncio.to_thread(start, store, redis, job_id)
    await asyncio.to_thread(outcome, job_id)
    return job_id


# ---------------------------------------------------------------------------------------------
# Submitting


async def test_submit_queues_the_job(client, echo, store, queue):
    job_id = await submit(client, body={"value": [1, 2], "tag": "t"})

    job = store.get_job(job_id)
    assert job.status is JobStatus.QUEUED
    assert (job.function, job.context, job.arguments) == ("echo", "default", {"value": [1, 2],
                                                                               "tag": "t"})
    assert queue.queued_ids("default") == [job_id]


async def test_job_details_of_a_queued_job(client, echo):
    before = now_ms()
    job_id = await submit(client, body={"value": 7})

    got = await details(client, job_id)
    create_time = got.pop("createTime")
    assert before <= create_time <= now_ms()
    # No startTime, endTime, workerId or jobResult while queued: Mist leaves empty fields out.
    assert got == {
        "jobId": job_id,
        "function": "echo",
        "context": "default",
        "params": {"filePath": "echo.py", "className": "echo", "arguments": {"value": 7},
                   "action": "execute"},
        "status": "queued",
        "source": "Http",
        # sparkgate's: who submitted it (authentication is off in these tests).
        "submitter": "anonymous",
    }


async def test_external_id_and_timeouts_are_recorded(client, echo):
    job_id = await submit(client, query="?externalId=order-42&startTimeout=10s"
                                        "&performTimeout=500ms")
    got = await details(client, job_id)
    assert got["externalId"] == "order-42"
    assert (got["startTimeout"], got["performTimeout"]) == (10_000, 500)


@pytest.mark.parametrize("query", ["startTimeout=10000000000000000s",
                                   "performTimeout=99999999999999999999999d"])
async def test_absurdly_long_timeouts_are_400(client, echo, store, queue, query):
    response = await client.post(f"{API}/functions/echo/jobs?{query}", json={})
    error = await error_of(response, 400, "bad_request")
    assert error["details"]["field"] == query.split("=")[0]
    assert_nothing_created(store, queue)


async def test_jobs_take_their_contexts_default_timeouts(client, echo):
    body = {"name": "timed", "startTimeout": "2min", "performTimeout": "10s"}
    assert (await client.post(f"{API}/contexts", json=body)).status == 200

    inherited = await details(client, await submit(client, query="?context=timed"))
    assert (inherited["startTimeout"], inherited["performTimeout"]) == (120_000, 10_000)
    own = await details(client, await submit(client, query="?context=timed&startTimeout=5s"))
    assert (own["startTimeout"], own["performTimeout"]) == (5_000, 10_000)
    unbounded = await details(client, await submit(client))
    assert "startTimeout" not in unbounded
    assert "performTimeout" not in unbounded


async def test_jobs_of_a_broken_context_fail_at_once_until_it_is_updated(client, echo, catalog,
                                                                         store, queue):
    body = {"name": "fragile", "maxConnFailures": 2}
    assert (await client.post(f"{API}/contexts", json=body)).status == 200
    for _ in range(2):  # as the supervisor records its workers' crashes
        catalog.record_failure("fragile", "worker exited with code 1", 2)
    context = await json_of(await client.get(f"{API}/contexts/fragile"))
    assert (context["state"], context["workerFailures"], context["lastFailure"]) == \
        ("broken", 2, "worker exited with code 1")

    job_id = await submit(client, query="?context=fragile")
    failed = await details(client, job_id)
    assert failed["status"] == "failed"
    assert "'fragile'" in failed["jobResult"]
    assert "broken" in failed["jobResult"]
    assert queue.queued_ids("fragile") == []
    response = await asyncio.wait_for(
        client.post(f"{API}/functions/echo/jobs?force=true&context=fragile", json={}), WAIT_S)
    assert await json_of(response) == {"success": False, "payload": {},
                                       "errors": [failed["jobResult"]]}

    # Updating the context repairs it.
    assert (await client.put(f"{API}/contexts/fragile", json=body)).status == 200
    context = await json_of(await client.get(f"{API}/contexts/fragile"))
    assert (context["state"], context["workerFailures"]) == ("ok", 0)
    job_id = await submit(client, query="?context=fragile")
    assert queue.queued_ids("fragile") == [job_id]


async def test_context_query_overrides_the_default_context(client, echo, store, queue):
    assert (await client.post(f"{API}/contexts", json={"name": "other"})).status == 200

    job_id = await submit(client, query="?context=other")
    assert (await details(client, job_id))["context"] == "other"
    assert store.get_job(job_id).context == "other"
    assert queue.queued_ids("other") == [job_id]
    assert queue.queued_ids("default") == []


async def test_unknown_context_is_400_and_creates_nothing(client, echo, store, queue):
    response = await client.post(f"{API}/functions/echo/jobs?context=nope", json={})
    error = await error_of(response, 400, "bad_request")
    assert error["details"] == {"field": "context", "got": "nope"}
    assert "nope" in error["message"]
    assert_nothing_created(store, queue)
    assert queue.queued_ids("nope") == []


async def test_unknown_function_is_404_and_creates_nothing(client, echo, store, queue):
    response = await client.post(f"{API}/functions/nope/jobs", json={})
    error = await error_of(response, 404, "not_found")
    assert error["details"] == {"function": "nope"}
    assert_nothing_created(store, queue)


async def test_empty_body_means_no_arguments(client, echo, store):
    response = await client.post(f"{API}/functions/echo/jobs")
    job_id = (await json_of(response))["id"]
    assert store.get_job(job_id).arguments == {}
    assert (await details(client, job_id))["params"]["arguments"] == {}


async def test_body_that_is_not_json_is_400(client, echo, store, queue):
    response = await client.post(f"{API}/functions/echo/jobs", data=b'{"value": 1,}',
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["details"] == {"line": 1, "column": 13}
    assert "line 1 column 13" in error["message"]
    assert_nothing_created(store, queue)


async def test_body_over_the_size_limit_is_413(aiohttp_client, settings, redis_url, store,
                                               queue):
    client = await aiohttp_client(
        create_app(dataclasses.replace(settings, max_body_bytes=100), redis_url))
    await deploy(client, "echo", "echo.py")
    at_limit = json.dumps({"value": "x" * 87}).encode()
    assert len(at_limit) == 100

    response = await client.post(f"{API}/functions/echo/jobs", data=at_limit + b" ",
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 413, "payload_too_large")
    assert error["message"] == "request body is 101 bytes; the limit is 100"
    assert_nothing_created(store, queue)
    await submit(client, body=json.loads(at_limit))


@pytest.mark.parametrize(("body", "got"), [
    (b"[1, 2]", "array of 2"), (b'"x"', 'string "x"'), (b"null", "null"), (b"3", "number 3")])
async def test_body_that_is_not_an_object_is_400(client, echo, store, queue, body, got):
    response = await client.post(f"{API}/functions/echo/jobs", data=body,
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "invalid_arguments")
    assert error["details"] == [{"field": "(body)", "expected": "object", "got": got}]
    assert_nothing_created(store, queue)


async def test_uninspected_function_takes_any_object_but_not_an_array(client, store, queue):
    form = aiohttp.FormData()
    form.add_field("file", b"def later(spark, **kw):\n    return kw\n", filename="later.py")
    assert (await client.post(f"{API}/artifacts", data=form)).status == 200
    response = await client.post(f"{API}/functions?force=true",
                                 json={"name": "later", "path": "later.py", "className": "x"})
    assert response.status == 200

    job_id = await submit(client, "later", {"anything": {"goes": [1]}})
    assert store.get_job(job_id).arguments == {"anything": {"goes": [1]}}
    response = await client.post(f"{API}/functions/later/jobs", json=[1])
    await error_of(response, 400, "invalid_arguments")
    assert job_count(store) == 1


@pytest.mark.parametrize(("function", "body"), [
    ("echo", b'{"value": NaN}'),
    ("echo", b'{"value": Infinity}'),
    ("echo", b'{"value": [-Infinity]}'),
    ("echo", b'{"value": 1e400}'),  # Python would read inf
    ("typed", b'{"ratio": NaN}'),
])
async def test_non_finite_numbers_are_not_json(client, echo, typed, store, queue, function,
                                               body):
    response = await client.post(f"{API}/functions/{function}/jobs", data=body,
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["message"].startswith("request body: expected JSON")
    assert "NaN or infinite" in error["message"]
    assert_nothing_created(store, queue)


async def test_an_integer_too_long_to_read_is_400(client, echo, store, queue):
    body = b'{"value": ' + b"7" * 5000 + b"}"
    response = await client.post(f"{API}/functions/echo/jobs", data=body,
                                 headers={"Content-Type": "application/json"})
    error = await error_of(response, 400, "bad_request")
    assert error["message"].startswith("request body: ")
    assert_nothing_created(store, queue)


async def test_deeply_nested_arguments_are_stored_or_refused(client, echo, store, queue):
    depth = 900
    value = inner = []
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    body = b'{"value": ' + b"[" * depth + b"]" * depth + b"}"
    response = await client.post(f"{API}/functions/echo/jobs", data=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status in (200, 400), await response.text()
    if response.status == 400:
        error = await error_of(response, 400, "bad_request")
        assert "deep" in error["message"]
        assert_nothing_created(store, queue)
    else:
        job_id = (await response.json())["id"]
        assert store.get_job(job_id).arguments == {"value": value}


@pytest.mark.parametrize(("query", "field"), [
    ("force=maybe", "force"),
    ("wait=soon", "wait"),
    ("startTimeout=soon", "startTimeout"),
    ("performTimeout=-1s", "performTimeout"),
    ("externalId=" + "x" * 256, "externalId"),
    ("externalId=a%00b", "externalId"),
    ("context=a%0Ab", "context"),
])
async def test_bad_submit_query_is_400_naming_the_parameter(client, echo, store, queue, query,
                                                            field):
    response = await client.post(f"{API}/functions/echo/jobs?{query}", json={"value": 1})
    error = await error_of(response, 400, "bad_request")
    assert error["details"]["field"] == field
    assert f"query parameter {field}:" in error["message"]
    assert_nothing_created(store, queue)


@pytest.mark.parametrize(("query", "field"), [
    ("limit=-1", "limit"),
    ("limit=abc", "limit"),
    ("limit=1001", "limit"),
    ("limit=1_0", "limit"),  # int() would read 10
    ("limit=%D9%A3", "limit"),  # an Arabic-Indic 3, which int() reads too
    ("offset=x", "offset"),
    ("offset=-3", "offset"),
    ("status=bogus", "status"),
    ("status=queued,bogus", "status"),
    ("paginate=maybe", "paginate"),
    ("externalId=a%00b", "externalId"),
])
async def test_bad_list_query_is_400_naming_the_parameter(client, query, field):
    error = await error_of(await client.get(f"{API}/jobs?{query}"), 400, "bad_request")
    assert error["details"]["field"] == field
    assert f"query parameter {field}:" in error["message"]


# ---------------------------------------------------------------------------------------------
# Argument validation against tests/functions/typed.py

VALID = {"count": 1, "ratio": 0.5, "label": "x", "enabled": True, "items": [1, 2],
         "weights": {"a": 1.0}}


@pytest.mark.parametrize("changes", [
    {},
    {"ratio": 2},  # an integer is a fine float
    {"count": -5, "items": [], "weights": {}},
    {"note": None, "anything": None},  # null for the Optional ones
    {"note": "text", "anything": {"any": ["thing", 1, None]}},
    {"nested": [{"k": ["a", "b"]}, {}]},
    {"weights": {"BRK.B": 0.25, "a b": 1}},
    {"count": 10**20},
])
async def test_arguments_that_fit_are_accepted(client, typed, store, queue, changes):
    arguments = {**VALID, **changes}
    job_id = await submit(client, "typed", arguments)
    assert store.get_job(job_id).arguments == arguments
    assert queue.queued_ids("default") == [job_id]


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != key}


ALL_NAMES = "count, ratio, label, enabled, items, weights, note, anything, nested"


@pytest.mark.parametrize(("arguments", "field", "expected", "got"), [
    ({**VALID, "count": 1.5}, "count", "integer", "number 1.5"),
    ({**VALID, "count": "1"}, "count", "integer", 'string "1"'),
    ({**VALID, "count": True}, "count", "integer", "boolean true"),
    ({**VALID, "count": None}, "count", "integer", "null"),
    ({**VALID, "ratio": "x"}, "ratio", "number", 'string "x"'),
    ({**VALID, "ratio": True}, "ratio", "number", "boolean true"),
    ({**VALID, "label": 5}, "label", "string", "number 5"),
    ({**VALID, "enabled": 1}, "enabled", "boolean", "number 1"),
    ({**VALID, "enabled": "true"}, "enabled", "boolean", 'string "true"'),
    ({**VALID, "items": [1, "two", 3]}, "items[1]", "integer", 'string "two"'),
    ({**VALID, "items": "1,2"}, "items", "array of integer", 'string "1,2"'),
    ({**VALID, "weights": {"a": "heavy"}}, "weights.a", "number", 'string "heavy"'),
    ({**VALID, "weights": {"BRK.B": False}}, 'weights["BRK.B"]', "number", "boolean false"),
    ({**VALID, "weights": [1]}, "weights", "object with number values", "array of 1"),
    ({**VALID, "note": 5}, "note", "string or null", "number 5"),
    ({**VALID, "nested": [{"k": [1]}]}, "nested[0].k[0]", "string", "number 1"),
    (without("label"), "label", "string", "nothing"),
    ({**VALID, "colour": "red"}, "colour", f"one of: {ALL_NAMES}", "colour"),
])
async def test_arguments_that_do_not_fit_are_400(client, typed, store, queue, arguments, field,
                                                 expected, got):
    response = await client.post(f"{API}/functions/typed/jobs", json=arguments)
    error = await error_of(response, 400, "invalid_arguments")
    assert error["details"] == [{"field": field, "expected": expected, "got": got}]
    assert error["message"].startswith(f"invalid argument: {field}: ")
    assert_nothing_created(store, queue)


async def test_every_problem_is_reported_in_one_400(client, typed, store, queue):
    arguments = {"count": "1", "ratio": True, "enabled": True, "items": [1, "x"],
                 "weights": {}, "colour": 1}
    response = await client.post(f"{API}/functions/typed/jobs", json=arguments)
    error = await error_of(response, 400, "invalid_arguments")
    assert [p["field"] for p in error["details"]] == \
        ["count", "ratio", "items[1]", "colour", "label"]
    assert error["message"].startswith("5 invalid arguments: count: expected integer")
    assert "label: missing (string)" in error["message"]
    assert_nothing_created(store, queue)


async def test_a_flood_of_problems_gives_a_bounded_error(client, typed, store, queue):
    arguments = {**VALID, "items": ["x"] * 150}
    response = await client.post(f"{API}/functions/typed/jobs", json=arguments)
    error = await error_of(response, 400, "invalid_arguments")
    assert len(error["details"]) == 100
    assert error["details"][99] == {"field": "items[99]", "expected": "integer",
                                    "got": 'string "x"'}
    assert error["message"].startswith("150 invalid arguments: items[0]: ")
    assert error["message"].endswith("; and 140 more")
    assert_nothing_created(store, queue)


# ---------------------------------------------------------------------------------------------
# Waiting for the end: force=true (Mist's sync call) and wait=


async def test_sync_call_answers_with_the_result(client, echo, store, redis, queue):
    result = {"value": 42, "tag": None}
    worker = asyncio.create_task(work_one(
        client, store, redis, queue, lambda job_id: finish(store, redis, job_id, result)))

    response = await asyncio.wait_for(
        client.post(f"{API}/functions/echo/jobs?force=true", json={"value": 42}), WAIT_S)
    job_id = await asyncio.wait_for(worker, WAIT_S)

    assert await json_of(response) == {"success": True, "payload": result, "errors": []}
    assert store.get_job(job_id).status is JobStatus.FINISHED


async def test_sync_call_of_a_failing_job(client, echo, store, redis, queue):
    message = "ValueError: boom\nTraceback (most recent call last): ..."
    worker = asyncio.create_task(work_one(
        client, store, redis, queue, lambda job_id: fail(store, redis, job_id, message)))

    response = await asyncio.wait_for(
        client.post(f"{API}/functions/echo/jobs?force=true", json={}), WAIT_S)
    await asyncio.wait_for(worker, WAIT_S)

    assert await json_of(response) == {"success": False, "payload": {}, "errors": [message]}


async def test_sync_call_of_a_job_cancelled_meanwhile(client, echo, store, queue):
    request = asyncio.create_task(client.post(f"{API}/functions/echo/jobs?force=true", json={}))
    await until_waiting(client)
    # The gateway watches a sync job before submitting it: wait for the job itself too.
    [job_id] = await until_queued(queue)

    assert (await client.delete(f"{API}/jobs/{job_id}")).status == 200
    response = await asyncio.wait_for(request, WAIT_S)
    assert await json_of(response) == {
        "success": False, "payload": {}, "errors": [f"job {job_id} was cancelled"]}


@pytest.mark.parametrize(("query", "answer"), [
    ("force=true", lambda job_id: {"success": True, "payload": {"early": True}, "errors": []}),
    ("wait=5s", lambda job_id: {"jobId": job_id, "status": "finished",
                                "jobResult": {"early": True}}),
])
async def test_a_job_that_ends_before_the_wait_begins_still_answers(client, echo, store, redis,
                                                                    query, answer):
    """The job ends while the request is still submitting it, and its end is never announced
    (as when a worker's publish fails). Provoked for certain: Redis is paused for writes, so
    the gateway's enqueue (the last step of its submit) cannot return while the test, acting
    as the worker, ends the job in the database without an event. Only the waiter's own reads
    of the database (every RECHECK_S, and at its deadline) can answer it."""
    redis.client_pause(WAIT_S * 1000, all=False)
    try:
        request = asyncio.create_task(
            client.post(f"{API}/functions/echo/jobs?{query}", json={"value": 1}))
        job_id = await _first_job_id(store)
        # The request is stuck in its enqueue: it has not reached its wait yet.
        await asyncio.to_thread(store.transition, job_id, JobStatus.STARTED, worker_id=WORKER,
                                start_time=now_ms())
        await asyncio.to_thread(finish, store, None, job_id, {"early": True})
    finally:
        redis.client_unpause()

    response = await asyncio.wait_for(request, WAIT_S)
    body = await json_of(response)
    expected = answer(job_id)
    assert {k: body.get(k) for k in expected} == expected


async def _first_job_id(store: Store) -> str:
    deadline = time.monotonic() + WAIT_S
    while True:
        jobs, _ = await asyncio.to_thread(store.list_jobs, JobQuery())
        if jobs:
            return jobs[0].id
        assert time.monotonic() < deadline, "the job was never created"
        await asyncio.sleep(0.005)


async def test_sync_calls_with_an_instant_worker(client, echo, store, redis, queue):
    """A worker that ends each job the moment it is queued: every sync call still answers,
    whichever comes first, the end or the wait."""
    rounds = 10

    def serve() -> None:
        for _ in range(rounds):
            job_id = queue.pop("default", WAIT_S)
            assert job_id is not None
            job = start(store, redis, job_id)
            finish(store, redis, job_id, job.arguments["value"] * 2)

    worker = asyncio.create_task(asyncio.to_thread(serve))
    for n in range(rounds):
        response = await asyncio.wait_for(
            client.post(f"{API}/functions/echo/jobs?force=true", json={"value": n}), WAIT_S)
        assert await json_of(response) == {"success": True, "payload": n * 2, "errors": []}
    await asyncio.wait_for(worker, WAIT_S)


async def test_many_sync_calls_each_get_their_own_result(client, echo, store, redis, queue):
    """One event subscription serves every waiter: each is woken by its own job's end."""
    count = 20

    def serve() -> None:
        popped = [queue.pop("default", WAIT_S) for _ in range(count)]
        for job_id in reversed(popped):  # end them in another order than they came
            job = start(store, redis, job_id)
            finish(store, redis, job_id, {"echo": job.arguments["value"]})

    requests = [asyncio.create_task(client.post(f"{API}/functions/echo/jobs?force=true",
                                                json={"value": n})) for n in range(count)]
    await until_waiting(client, count)
    await asyncio.wait_for(asyncio.to_thread(serve), WAIT_S)
    responses = await asyncio.wait_for(asyncio.gather(*requests), WAIT_S)
    for n, response in enumerate(responses):
        assert await json_of(response) == {"success": True, "payload": {"echo": n},
                                           "errors": []}
    assert (await json_of(await client.get(f"{API}/status")))["syncWaiters"] == 0


async def test_wait_that_runs_out_answers_202_with_where_to_look(client, echo, store):
    started = time.monotonic()
    response = await client.post(f"{API}/functions/echo/jobs?wait=200ms", json={})
    elapsed = time.monotonic() - started

    body = await json_of(response, 202)
    job_id = body["id"]
    assert body == {"id": job_id, "status": "queued", "url": f"/v2/api/jobs/{job_id}"}
    assert response.headers["Location"] == f"/v2/api/jobs/{job_id}"
    assert 0.2 <= elapsed < WAIT_S
    assert store.get_job(job_id).status is JobStatus.QUEUED


async def test_wait_that_sees_the_end_answers_200_with_the_details(client, echo, store, redis,
                                                                   queue):
    result = {"value": "done", "tag": None}
    worker = asyncio.create_task(work_one(
        client, store, redis, queue, lambda job_id: finish(store, redis, job_id, result)))

    response = await asyncio.wait_for(
        client.post(f"{API}/functions/echo/jobs?wait=5s", json={"value": "done"}), WAIT_S)
    job_id = await asyncio.wait_for(worker, WAIT_S)

    body = await json_of(response)
    assert body["jobId"] == job_id
    assert body["status"] == "finished"
    assert body["jobResult"] == result
    assert body["workerId"] == WORKER
    assert body["createTime"] <= body["startTime"] <= body["endTime"]


# ---------------------------------------------------------------------------------------------
# Listing


async def submit_many(client, count: int, function: str = "echo") -> list[str]:
    return [await submit(client, function, {"value": n}) for n in range(count)]


async def ids(client, query: str = "", path: str = "/jobs") -> list[str]:
    body = await json_of(await client.get(f"{API}{path}{query}"))
    assert isinstance(body, list)
    return [job["jobId"] for job in body]


async def test_list_is_newest_first_with_limit_and_offset(client, echo):
    submitted = await submit_many(client, 5)
    newest_first = submitted[::-1]

    assert await ids(client) == newest_first
    assert await ids(client, "?limit=2") == newest_first[:2]
    assert await ids(client, "?limit=2&offset=2") == newest_first[2:4]
    assert await ids(client, "?offset=4") == newest_first[4:]
    assert await ids(client, "?offset=5") == []
    listed = await json_of(await client.get(f"{API}/jobs?limit=1"))
    assert listed == [await details(client, newest_first[0])]


async def test_list_shows_25_by_default(client, echo):
    submitted = await submit_many(client, 26)
    assert await ids(client) == submitted[::-1][:25]


async def test_paginate_adds_the_total(client, echo):
    submitted = await submit_many(client, 4)
    body = await json_of(await client.get(f"{API}/jobs?paginate=true&limit=3&offset=1"))
    assert set(body) == {"jobs", "total", "totalExact"}
    assert (body["total"], body["totalExact"]) == (4, True)
    assert [j["jobId"] for j in body["jobs"]] == submitted[::-1][1:4]


@pytest.fixture
async def jobs_in_each_status(client, echo, store) -> dict[str, str]:
    """One job in each status a worker or a cancel can leave it in."""
    queued, started, finished, failed, cancelled = await submit_many(client, 5)
    store.transition(started, JobStatus.STARTED, worker_id=WORKER, start_time=now_ms())
    store.transition(finished, JobStatus.STARTED, worker_id="worker-other", start_time=now_ms())
    store.transition(finished, JobStatus.FINISHED, result=1, end_time=now_ms())
    store.transition(failed, JobStatus.STARTED, worker_id=WORKER, start_time=now_ms())
    store.transition(failed, JobStatus.FAILED, error="boom", end_time=now_ms())
    assert (await client.delete(f"{API}/jobs/{cancelled}")).status == 200
    return {"queued": queued, "started": started, "finished": finished, "failed": failed,
            "cancelled": cancelled}


@pytest.mark.parametrize(("query", "statuses"), [
    ("?status=queued", ["queued"]),
    ("?status=queued&status=finished", ["finished", "queued"]),
    ("?status=started,failed", ["failed", "started"]),
    ("?status=cancelled,queued&status=failed", ["cancelled", "failed", "queued"]),
    ("?status=cancelling", []),
])
async def test_status_filter_repeated_or_comma_separated(client, jobs_in_each_status, query,
                                                         statuses):
    expected = sorted((jobs_in_each_status[s] for s in statuses), reverse=True)  # newest first
    body = await json_of(await client.get(f"{API}/jobs{query}"))
    assert [j["jobId"] for j in body] == expected
    assert sorted(j["status"] for j in body) == statuses


async def test_details_as_a_worker_leaves_them(client, jobs_in_each_status):
    finished = await details(client, jobs_in_each_status["finished"])
    assert finished["jobResult"] == 1
    assert finished["workerId"] == "worker-other"
    assert finished["startTime"] <= finished["endTime"]
    failed = await details(client, jobs_in_each_status["failed"])
    assert (failed["status"], failed["jobResult"]) == ("failed", "boom")
    started = await details(client, jobs_in_each_status["started"])
    assert "endTime" not in started
    assert "jobResult" not in started


async def test_worker_jobs_lists_the_jobs_of_that_worker(client, jobs_in_each_status):
    expected = [jobs_in_each_status["failed"], jobs_in_each_status["started"]]
    assert await ids(client, path=f"/workers/{WORKER}/jobs") == expected
    assert await ids(client, "?status=failed", path=f"/workers/{WORKER}/jobs") == expected[:1]
    assert await ids(client, path="/workers/worker-other/jobs") == \
        [jobs_in_each_status["finished"]]
    assert await ids(client, path="/workers/nobody/jobs") == []


async def test_function_jobs_lists_only_that_function(client, echo):
    await deploy(client, "echo2", "echo.py", class_name="echo")
    first = await submit(client, "echo")
    second = await submit(client, "echo2")
    third = await submit(client, "echo")

    assert await ids(client, path="/functions/echo/jobs") == [third, first]
    assert await ids(client, path="/functions/echo2/jobs") == [second]
    body = await json_of(await client.get(f"{API}/functions/echo/jobs?paginate=true&limit=1"))
    assert (body["total"], [j["jobId"] for j in body["jobs"]]) == (2, [third])
    error = await error_of(await client.get(f"{API}/functions/nope/jobs"), 404, "not_found")
    assert error["details"] == {"function": "nope"}


async def test_list_filters_by_external_id_and_context(client, echo):
    assert (await client.post(f"{API}/contexts", json={"name": "other"})).status == 200
    tagged = await submit(client, query="?externalId=abc")
    elsewhere = await submit(client, query="?context=other")
    await submit(client)

    assert await ids(client, "?externalId=abc") == [tagged]
    assert await ids(client, "?context=other") == [elsewhere]


async def test_list_filters_by_function(client, echo):
    await deploy(client, "echo2", "echo.py", class_name="echo")
    first = await submit(client, "echo")
    await submit(client, "echo2")
    assert await ids(client, "?function=echo") == [first]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/jobs/a%00b"), ("GET", "/jobs/a%00b/logs"), ("DELETE", "/jobs/a%00b"),
    ("GET", "/functions/a%00b/jobs"), ("POST", "/functions/a%00b/jobs")])
async def test_a_name_with_a_nul_character_is_not_found(client, store, method, path):
    response = await client.request(method, API + path, json={} if method == "POST" else None)
    error = await error_of(response, 404, "not_found")
    [name] = error["details"].values()
    assert name == "a\x00b"
    assert job_count(store) == 0


async def test_get_unknown_job_is_404(client):
    error = await error_of(await client.get(f"{API}/jobs/no-such-job"), 404, "not_found")
    assert error["details"] == {"jobId": "no-such-job"}


# ---------------------------------------------------------------------------------------------
# Logs

T0 = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z


async def test_logs_in_mist_line_format(client, echo, store):
    job_id = await submit(client)
    store.append_logs(job_id, [
        LogLine(T0, "INFO", "started on worker w"),
        LogLine(T0 + 1001, "WARN", "low memory"),
        LogLine(T0 + 2000, "ERROR", "Traceback (most recent call last):\n  File x\nValueError"),
    ])

    response = await client.get(f"{API}/jobs/{job_id}/logs")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == (
        f"INFO 2023-11-14T22:13:20.123Z [{job_id}] started on worker w\n"
        f"WARN 2023-11-14T22:13:21.124Z [{job_id}] low memory\n"
        f"ERROR 2023-11-14T22:13:22.123Z [{job_id}] Traceback (most recent call last):\n"
        "    File x\n"
        "  ValueError\n"
    )


async def test_logs_are_only_that_jobs(client, echo, store):
    mine, other = await submit_many(client, 2)
    store.append_logs(other, [LogLine(T0, "INFO", "not mine")])
    store.append_logs(mine, [LogLine(T0, "DEBUG", "mine")])
    text = await (await client.get(f"{API}/jobs/{mine}/logs")).text()
    assert text == f"DEBUG 2023-11-14T22:13:20.123Z [{mine}] mine\n"


async def test_logs_are_empty_while_there_are_none(client, echo):
    job_id = await submit(client)
    response = await client.get(f"{API}/jobs/{job_id}/logs")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == ""


async def test_logs_of_an_unknown_job_are_404(client):
    error = await error_of(await client.get(f"{API}/jobs/nope/logs"), 404, "not_found")
    assert error["details"] == {"jobId": "nope"}


# ---------------------------------------------------------------------------------------------
# Cancel


async def test_cancel_of_a_queued_job(client, echo, store, queue):
    job_id = await submit(client)
    kept = await submit(client)
    before = now_ms()

    cancelled = await json_of(await client.delete(f"{API}/jobs/{job_id}"))
    assert cancelled["jobId"] == job_id
    assert cancelled["status"] == "cancelled"
    assert before <= cancelled["endTime"] <= now_ms()
    assert "jobResult" not in cancelled
    assert queue.queued_ids("default") == [kept]
    job = store.get_job(job_id)
    assert (job.status, job.end_time) == (JobStatus.CANCELLED, cancelled["endTime"])
    assert await details(client, job_id) == cancelled


async def test_cancel_removes_the_job_from_its_own_contexts_queue(client, echo, queue):
    assert (await client.post(f"{API}/contexts", json={"name": "other"})).status == 200
    job_id = await submit(client, query="?context=other")
    kept = await submit(client)
    assert queue.queued_ids("other") == [job_id]

    assert (await json_of(await client.delete(f"{API}/jobs/{job_id}")))["status"] == "cancelled"
    assert queue.queued_ids("other") == []
    assert queue.queued_ids("default") == [kept]


async def test_cancel_twice_is_409_naming_the_status(client, echo):
    job_id = await submit(client)
    assert (await client.delete(f"{API}/jobs/{job_id}")).status == 200

    error = await error_of(await client.delete(f"{API}/jobs/{job_id}"), 409, "conflict")
    assert "cancelled" in error["message"]
    assert error["details"] == {"jobId": job_id, "status": "cancelled"}


async def test_cancel_of_a_started_job_asks_its_worker(client, echo, store, redis):
    job_id = await submit(client)
    store.transition(job_id, JobStatus.STARTED, worker_id=WORKER, start_time=now_ms())
    control = redis.pubsub()
    control.subscribe(control_channel(WORKER))
    confirmation = control.get_message(timeout=WAIT_S)
    assert confirmation is not None
    assert confirmation["type"] == "subscribe"

    try:
        cancelling = await json_of(await client.delete(f"{API}/jobs/{job_id}"))
        assert cancelling["status"] == "cancelling"
        assert "endTime" not in cancelling
        assert store.get_job(job_id).status is JobStatus.CANCELLING
        message = await asyncio.to_thread(control.get_message, timeout=WAIT_S)
        assert message is not None
        assert message["type"] == "message"
        assert json.loads(message["data"]) == {"cancel": job_id}
        # Cancelling again while the worker works on it is not an error.
        again = await json_of(await client.delete(f"{API}/jobs/{job_id}"))
        assert again["status"] == "cancelling"
    finally:
        control.close()


async def test_cancel_of_a_finished_job_is_409_and_it_stays_finished(client, echo, store):
    job_id = await submit(client)
    store.transition(job_id, JobStatus.STARTED, worker_id=WORKER, start_time=now_ms())
    store.transition(job_id, JobStatus.FINISHED, result={"ok": True}, end_time=now_ms())

    error = await error_of(await client.delete(f"{API}/jobs/{job_id}"), 409, "conflict")
    assert error["details"] == {"jobId": job_id, "status": "finished"}
    assert "finished" in error["message"]
    got = await details(client, job_id)
    assert (got["status"], got["jobResult"]) == ("finished", {"ok": True})


async def test_cancel_of_an_unknown_job_is_404(client):
    error = await error_of(await client.delete(f"{API}/jobs/nope"), 404, "not_found")
    assert error["details"] == {"jobId": "nope"}
