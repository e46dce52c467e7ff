"""Webhooks through a real `sparkgate serve` and real receivers: a delivery to a receiver that
is down while the gateway restarts arrives once both are back; a receiver that hangs does not
delay the end of any job nor another receiver's deliveries. The default context runs on the
python engine (no JVM)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.receiver import HANG, receiving
from tests.server_process import Server, running_server, wait_until

pytestmark = pytest.mark.slow

ENV = {"SPARKGATE_CONTEXT_ENGINE": "python", "SPARKGATE_DEPLOY_EXAMPLES": "false",
       "SPARKGATE_WEBHOOK_BACKOFF_S": "0.5", "SPARKGATE_WEBHOOK_TIMEOUT_S": "10"}


def subscribe(server: Server, url: str, events: list[str]) -> dict:
    response = server.post("/webhooks", json={"url": url, "events": events,
                                              "secret": "0123456789abcdef"})
    assert response.status_code == 200, response.text
    return response.json()


def deliveries(server: Server, hook: dict) -> list[dict]:
    response = server.get(f"/webhooks/{hook['id']}/deliveries")
    assert response.status_code == 200, response.text
    return response.json()


def run_sync(server: Server, x: int) -> float:
    started = time.monotonic()
    response = server.post("/functions/add/jobs", params={"force": "true"}, json={"x": x})
    assert response.status_code == 200 and response.json()["payload"] == x + 1, response.text
    return time.monotonic() - started


def test_a_receiver_down_while_the_gateway_restarts_still_gets_the_delivery(tmp_path: Path):
    with receiving() as probe:
        port = probe.port  # free again: nothing listens on it until the receiver starts
    with running_server(tmp_path, ENV) as server:
        server.deploy("plain.py", "add", "add")
        hook = subscribe(server, f"http://127.0.0.1:{port}/hook", ["finished"])
        time.sleep(1.2)  # the worker's copy of the subscriptions is at most a second old
        run_sync(server, 1)
        wait_until(lambda: deliveries(server, hook) and deliveries(server, hook)[0]["attempts"],
                   15, "a first, failed attempt")
    with receiving(port=port) as receiver, running_server(tmp_path, ENV) as server:
        (received,) = receiver.wait_for(1, timeout_s=30)
        (delivery,) = wait_until(lambda: [d for d in deliveries(server, hook)
                                          if d["status"] == "delivered"], 15, "delivered")
    assert received.json["event"] == "finished" and received.json["job"]["jobResult"] == 2
    assert delivery["attempts"][0]["statusCode"] is None
    assert delivery["attempts"][-1]["statusCode"] == 200


def test_a_receiver_that_hangs_delays_no_job_and_no_other_receiver(tmp_path: Path):
    with ExitStack() as stack:
        hanging = stack.enter_context(receiving([HANG] * 100))
        healthy = stack.enter_context(receiving())
        server = stack.enter_context(running_server(tmp_path, ENV))
        server.deploy("plain.py", "add", "add")
        subscribe(server, hanging.url, ["started", "finished"])
        subscribe(server, healthy.url, ["finished"])
        time.sleep(1.2)
        # Each sync call ends long before the hanging receiver's 10 s attempts would.
        took = [run_sync(server, x) for x in range(8)]
        assert max(took) < 5, took
        received = healthy.wait_for(8, timeout_s=10)
    assert sorted(r.json["job"]["params"]["arguments"]["x"] for r in received) == list(range(8))
    assert len(hanging.received) <= 4
