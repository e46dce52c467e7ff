"""sparkgate-client's rules that a real gateway seldom shows, through httpx's MockTransport:
which failures are retried (a request that may have been sent only if it can be repeated),
Retry-After as a date, answers without the API's error shape, a gateway without log offsets
(Mist), and the event stream's parsing. The client against a real gateway: test_client.py."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import httpx
import pytest
from sparkgate_client import (
    Client,
    ConnectionFailed,
    NotFound,
    RetryPolicy,
    ServerError,
    Unavailable,
)
from sparkgate_client._protocol import Comment, SSEParser, log_records
from sparkgate_client.models import Event
from sparkgate_client.retry import retry_after_s

FAST = RetryPolicy(attempts=3, backoff_s=0.001, max_backoff_s=0.001)
JOB = {"jobId": "j1", "function": "add", "context": "default", "status": "finished",
       "params": {"arguments": {"x": 1}}, "source": "Http", "createTime": 1, "jobResult": 2}


def client(handler: Callable[[httpx.Request], httpx.Response],
           retry: RetryPolicy = FAST) -> Client:
    return Client("http://gateway", retry=retry, transport=httpx.MockTransport(handler))


def test_a_connection_refused_is_retried_for_any_request():
    tries: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(request.method)
        if len(tries) == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json=JOB)

    with client(handler) as sparkgate:
        assert sparkgate.job("j1").cancel().id == "j1"
    assert tries == ["DELETE", "DELETE"]


def test_a_connection_broken_after_sending_is_retried_only_where_repeating_is_harmless():
    tries: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(request.method)
        if len(tries) % 2:
            raise httpx.ReadError("connection reset")
        return httpx.Response(200, json=JOB)

    with client(handler) as sparkgate:
        with pytest.raises(ConnectionFailed) as broken:
            sparkgate.job("j1").cancel()  # a repeat could cancel twice: 409
        assert isinstance(broken.value.__cause__, httpx.ReadError)
        tries.clear()
        assert sparkgate.get_job("j1").result == 2
        tries.clear()
        assert sparkgate.run("add", x=1) == 2  # a submit: its Idempotency-Key makes it safe
    assert tries == ["POST", "POST"]


def test_retry_after_as_a_date_and_the_policy_giving_up():
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after_s(later) <= 30
    assert retry_after_s("7") == 7.0 and retry_after_s("soon") is None

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": later}, json={
            "error": {"code": "unavailable", "message": "redis is down", "details": None}})

    started = time.monotonic()
    with client(handler, RetryPolicy(budget_s=10)) as sparkgate, \
            pytest.raises(Unavailable) as refused:
        sparkgate.status()  # waiting 30 s would overrun the budget: no retry
    assert time.monotonic() - started < 5
    assert refused.value.code == "unavailable" and 28 <= refused.value.retry_after <= 30


def test_answers_without_the_error_shape_still_get_their_status_class():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/nope"):
            return httpx.Response(404, text="<html>not here</html>")
        return httpx.Response(502, text="Bad Gateway")

    with client(handler) as sparkgate:
        with pytest.raises(NotFound) as missing:
            sparkgate.function("nope")
        assert missing.value.code == "not_found" and "not here" in missing.value.message
        with pytest.raises(ServerError) as bad:
            sparkgate.functions()
        assert bad.value.status == 502


def test_logs_from_a_gateway_without_offsets_come_once_each():
    """Mist (and sparkgate before offsets) answer the whole log and no headers."""
    lines = ["INFO t [j1] started", "INFO t [j1] one", "ERROR t [j1] Traceback:\n  File x"]
    reads = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/logs"):
            reads["n"] += 1
            return httpx.Response(200, text="".join(f"{line}\n" for line in lines[:reads["n"]]))
        return httpx.Response(200, json={**JOB, "status": "started" if reads["n"] < 3
                                         else "finished"})

    with client(handler) as sparkgate:
        assert list(sparkgate.job("j1").logs(follow=True, poll_s=0.001)) == lines


def test_the_event_stream_parser():
    parser = SSEParser()
    fed = [parser.feed(line) for line in [
        ": connected", "", "id: 7", "event: progress", 'data: {"id": "j1",', 'data: "progress":',
        'data: {"percent": 50.0}}', "", "event: nothing", "", "data: not json", ""]]
    items = [item for item in fed if item is not None]
    assert items[0] == Comment("connected")
    assert items[1] == Event("progress", {"id": "j1", "progress": {"percent": 50.0}}, "7")
    assert (items[1].percent, items[1].job_id, items[1].ended) == (50.0, "j1", False)
    assert items[2] == Event("message", {"data": "not json"})
    assert len(items) == 3  # an event without data is not dispatched


def test_log_records_keep_a_traceback_together():
    text = "INFO a [j] x\nERROR b [j] Traceback:\n  File y\n  ValueError\nINFO c [j] z\n"
    assert log_records(text) == ["INFO a [j] x", "ERROR b [j] Traceback:\n  File y\n  ValueError",
                                 "INFO c [j] z"]
    assert log_records("") == []
