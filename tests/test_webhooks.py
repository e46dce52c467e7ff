"""Webhooks on SQLite and PostgreSQL with real Redis and real HTTP receivers: subscriptions
checked as they are made, deliveries written in the status change's own transaction, and the
sender's signing, retries, giving up and isolation of a receiver that hangs.

The sender runs here in a thread as serve runs it; job status changes are made through the
store, as a worker makes them. tests/test_webhooks_e2e.py has a real `sparkgate serve`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import IllegalTransition
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Store
from sparkgate.jobs.webhooks import WebhookBook
from sparkgate.webhook_sender import WebhookSender
from tests.api_responses import error_of, json_of
from tests.receiver import HANG, receiving
from tests.test_api_jobs import API, deploy, submit

SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture
async def add(client) -> str:
    await deploy(client, "add", "plain.py")
    return "add"


async def subscribe(client, url: str, events: list[str] | None = None, **fields: Any) -> dict:
    body = {"url": url, "events": events or ["started", "finished", "failed", "cancelled"],
            "secret": SECRET, **fields}
    return await json_of(await client.post(f"{API}/webhooks", json=body))


def run_job(store: Store, job_id: str, end: JobStatus = JobStatus.FINISHED) -> None:
    """What a worker does: start the job, then end it (a fresh store: the app's reads the
    subscriptions at most a second old)."""
    store = Store(store.engine)
    store.transition(job_id, JobStatus.STARTED, worker_id="w1", start_time=now_ms())
    fields = {"result": 2} if end is JobStatus.FINISHED else {"error": "boom"}
    store.transition(job_id, end, end_time=now_ms(), **fields)


@contextmanager
def sending(store: Store, settings: Settings, **overrides: Any) -> Iterator[WebhookSender]:
    settings = dataclasses.replace(settings, **{"webhook_backoff_s": 0.3,
                                                "webhook_timeout_s": 3.0, **overrides})
    sender = WebhookSender(WebhookBook(store.engine), Store(store.engine), settings)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,))
    thread.start()
    try:
        yield sender
    finally:
        stop.set()
        thread.join(timeout=30)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The check docs/webhooks.md shows a receiver."""
    timestamp = headers["X-Sparkgate-Timestamp"]
    expected = "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Sparkgate-Signature"])


# -- subscriptions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "field"), [
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"events": []}, "events"),
    ({"events": ["done"]}, "events"),
    ({"secret": "short"}, "secret"),
    ({"function": "nothing"}, "function"),
    ({"schedule": "nothing"}, "schedule"),
    ({"colour": "red"}, "colour"),
])
async def test_a_subscription_that_could_not_work_is_refused_naming_the_field(client, add,
                                                                             fields, field):
    body = {"url": "http://127.0.0.1:9/hook", "events": ["finished"], **fields}
    response = await client.post(f"{API}/webhooks", json=body)
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    details = error["details"]
    named = [p["field"] for p in details] if isinstance(details, list) else [details["field"]]
    assert field in named, error
    assert await json_of(await client.get(f"{API}/webhooks")) == []


async def test_the_secret_is_answered_once_and_a_made_one_is_long(client, add):
    given = await subscribe(client, "http://127.0.0.1:9/hook", function="add")
    assert given["secret"] == SECRET and given["function"] == "add"
    made = await json_of(await client.post(f"{API}/webhooks", json={
        "url": "https://hooks.example.com/x", "events": ["finished", "failed", "finished"]}))
    assert len(made["secret"]) >= 32 and made["events"] == ["finished", "failed"]
    listed = await json_of(await client.get(f"{API}/webhooks"))
    assert [w["id"] for w in listed] == [given["id"], made["id"]]
    assert all("secret" not in w for w in listed)
    assert "secret" not in await json_of(await client.get(f"{API}/webhooks/{made['id']}"))
    await json_of(await client.delete(f"{API}/webhooks/{made['id']}"))
    await error_of(await client.get(f"{API}/webhooks/{made['id']}"), 404, "not_found")


# -- the outbox ------------------------------------------------------------------------------


async def test_each_wanted_status_change_writes_its_delivery_with_it(client, add, store):
    ends = await subscribe(client, "http://127.0.0.1:9/ends", ["finished", "failed"],
                           function="add")
    await deploy(client, "echo", "echo.py")
    other = await subscribe(client, "http://127.0.0.1:9/other", ["started"], function="echo")
    job_id = await submit(client, "add", {"x": 1})
    failed_id = await submit(client, "add", {"x": 2})
    run_job(store, job_id)
    run_job(store, failed_id, JobStatus.FAILED)
    with pytest.raises(IllegalTransition):  # a change that does not happen writes nothing
        Store(store.engine).transition(job_id, JobStatus.FAILED, error="late")
    book = WebhookBook(store.engine)
    deliveries = sorted((d.job_id, d.event, d.status, d.url)
                        for d, _ in book.deliveries(ends["id"]))
    assert deliveries == sorted([(job_id, "finished", "pending", ends["url"]),
                                 (failed_id, "failed", "pending", ends["url"])])
    assert book.deliveries(other["id"]) == []
    jobs_view = await json_of(await client.get(f"{API}/jobs/{job_id}/deliveries"))
    assert [(d["event"], d["webhookId"]) for d in jobs_view] == [("finished", ends["id"])]


async def test_callback_url_is_refused_unless_the_settings_allow_it(make_client, client, add,
                                                                    store):
    query = "?callbackUrl=http://127.0.0.1:9/cb"
    error = await error_of(await client.post(f"{API}/functions/add/jobs{query}",
                                             json={"x": 1}), 400, "bad_request")
    assert error["details"]["field"] == "callbackUrl" and "callbacks are off" in \
        error["message"]
    allowing = await make_client(callback_url_allowed=("http://127.0.0.1:9/",))
    for refused in ("http://127.0.0.1:9.evil.com/cb", "http://127.0.0.1:10/cb",
                    "https://127.0.0.1:9/cb"):
        await error_of(await allowing.post(f"{API}/functions/add/jobs?callbackUrl={refused}",
                                           json={"x": 1}), 400, "bad_request")
    job_id = await submit(allowing, "add", {"x": 1}, query)
    run_job(store, job_id)
    found = WebhookBook(store.engine).deliveries(job_id=job_id)
    assert [(d.event, d.url, d.webhook_id) for d, _ in found] == [
        ("finished", "http://127.0.0.1:9/cb", None)]  # its end only, not its start


# -- the sender ------------------------------------------------------------------------------


async def test_deliveries_are_signed_as_documented(client, add, store, settings):
    with receiving() as receiver:
        hook = await subscribe(client, receiver.url, ["finished"])
        job_id = await submit(client, "add", {"x": 1})
        run_job(store, job_id)
        with sending(store, settings):
            (received,) = receiver.wait_for(1)
    assert verify(SECRET, received.headers, received.body)
    assert not verify("another-secret-entirely", received.headers, received.body)
    body = received.json
    assert (body["event"], body["webhookId"], body["job"]["jobId"], body["job"]["status"],
            body["job"]["jobResult"]) == ("finished", hook["id"], job_id, "finished", 2)
    assert received.headers["X-Sparkgate-Event"] == "finished"
    (delivery,) = await json_of(await client.get(f"{API}/webhooks/{hook['id']}/deliveries"))
    assert received.headers["X-Sparkgate-Delivery"] == delivery["id"]
    assert delivery["status"] == "delivered" and delivery["nextAttempt"] is None
    assert [a["statusCode"] for a in delivery["attempts"]] == [200]


async def test_a_receiver_answering_500_twice_gets_the_third_attempt(client, add, store,
                                                                     settings):
    with receiving([500, 500]) as receiver:
        hook = await subscribe(client, receiver.url, ["finished"])
        run_job(store, await submit(client, "add", {"x": 1}))
        with sending(store, settings, webhook_backoff_s=0.3):
            first, second, third = receiver.wait_for(3)
    assert first.body == second.body == third.body
    assert len({r.headers["X-Sparkgate-Delivery"] for r in (first, second, third)}) == 1
    # Backoff doubles: 0.3 s, then 0.6 s (each at least; the sender looks every 0.2 s).
    assert second.at - first.at >= 0.3 and third.at - second.at >= 0.6
    (delivery,) = await json_of(await client.get(f"{API}/webhooks/{hook['id']}/deliveries"))
    assert delivery["status"] == "delivered"
    assert [(a["statusCode"], a["error"]) for a in delivery["attempts"]] == [
        (500, "HTTP 500"), (500, "HTTP 500"), (200, None)]
    assert all(a["latencyMs"] >= 0 for a in delivery["attempts"])


async def test_a_delivery_is_given_up_after_its_retry_time(client, add, store, settings):
    with receiving([500] * 100) as receiver:
        hook = await subscribe(client, receiver.url, ["finished"])
        run_job(store, await submit(client, "add", {"x": 1}))
        with sending(store, settings, webhook_backoff_s=0.2, webhook_retry_for_s=1.0):
            receiver.wait_for(2)
            deliveries = await _until(client, hook, lambda d: d["status"] == "failed")
    attempts = deliveries[0]["attempts"]
    assert 2 <= len(attempts) <= 4 and deliveries[0]["nextAttempt"] is None


async def test_a_receiver_that_hangs_holds_back_no_other(client, add, store, settings):
    with receiving([HANG] * 20) as hanging, receiving() as healthy:
        await subscribe(client, hanging.url, ["finished"])
        await subscribe(client, healthy.url, ["finished"])
        for x in range(6):
            run_job(store, await submit(client, "add", {"x": x}))
        with sending(store, settings, webhook_timeout_s=20.0):
            received = healthy.wait_for(6, timeout_s=5)
            # At most PER_DESTINATION (4) attempts wait on the hanging receiver at once.
            hanging.wait_for(4, timeout_s=5)
            time.sleep(0.5)
            assert len(hanging.received) == 4
    assert sorted(r.json["job"]["params"]["arguments"]["x"] for r in received) == list(range(6))


async def test_a_receiver_that_was_down_gets_it_when_back(client, add, store, settings):
    with receiving() as probe:
        port = probe.port  # a port that was free; nothing listens on it now
    hook = await subscribe(client, f"http://127.0.0.1:{port}/hook", ["finished"])
    run_job(store, await submit(client, "add", {"x": 1}))
    with sending(store, settings, webhook_backoff_s=0.3):
        deliveries = await _until(client, hook, lambda d: len(d["attempts"]) >= 2)
        assert deliveries[0]["status"] == "pending"
        assert all(a["statusCode"] is None and a["error"] for a in deliveries[0]["attempts"])
        with receiving(port=port) as receiver:
            receiver.wait_for(1, timeout_s=10)
            deliveries = await _until(client, hook, lambda d: d["status"] == "delivered")
    assert deliveries[0]["attempts"][-1]["statusCode"] == 200


async def _until(client, hook: dict, condition, timeout_s: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        deliveries = await json_of(await client.get(f"{API}/webhooks/{hook['id']}/deliveries"))
        if deliveries and condition(deliveries[0]):
            return deliveries
        assert time.monotonic() < deadline, deliveries
        await asyncio.sleep(0.1)

