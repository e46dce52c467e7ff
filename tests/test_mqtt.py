"""The MQTT interface, against the local Mosquitto with a real paho client: requests in Mist's
format run as jobs and every job's events come out on the publish topic, in order; bad requests
are answered with a ``failed`` event and change nothing; several gateways take each request
once and publish each event once; a broker outage is survived; off by default.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from redis import Redis

from sparkgate import serving
from sparkgate.gateway.mqtt import MqttInterface, decode_request, submit_request
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.errors import BadRequest, ConfigError, PayloadTooLarge
from sparkgate.jobs.events import encode, events_channel
from sparkgate.jobs.settings import Settings, load_settings
from sparkgate.jobs.store import Store
from tests.conftest import free_port
from tests.server_process import Server, running_server, wait_until

BROKER_URL = "mqtt://127.0.0.1:1883"
# In-process interfaces: a database of their own (others flush theirs between tests), and a
# lease key per test.
MQTT_REDIS_URL = "redis://127.0.0.1:6379/11"
WAIT_S = 60
LIFECYCLE = {"initialized", "queued", "worker-assigned", "started", "cancelling", "cancelled",
             "finished", "failed"}
TERMINAL = {"finished", "failed", "cancelled"}


def nonce() -> str:
    return uuid.uuid4().hex[:12]


def topics() -> tuple[str, str]:
    base = f"sparkgate-test/{nonce()}"
    return f"{base}/requests", f"{base}/events"


class Broker:
    """A paho client on the events topic that keeps what it receives, and sends requests."""

    def __init__(self, url: str, request_topic: str, event_topic: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.request_topic = request_topic
        self.received: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sgtest-{nonce()}",
                                  protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(parts.hostname or "", parts.port or 1883)
        self.client.loop_start()
        self.client.subscribe(event_topic, qos=1)
        assert subscribed.wait(10), "the test client could not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            event = json.loads(message.payload)
        except ValueError:
            event = {"not_json": message.payload}
        with self.changed:
            self.received.append(event)
            self.changed.notify_all()

    def send(self, payload: bytes | str | dict) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(self.request_topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, match: Callable[[dict], bool], what: str,
                 timeout_s: float = WAIT_S) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.received if match(e)), None)

        with self.changed:
            event = self.changed.wait_for(found, timeout_s)
        assert event is not None, f"not within {timeout_s}s: {what}; got {self.received[-20:]}"
        return event

    def matching(self, match: Callable[[dict], bool]) -> list[dict[str, Any]]:
        with self.changed:
            return [e for e in self.received if match(e)]

    def run(self, function: str, parameters: Any, **extra: Any) -> str:
        """Request a job as an MQTT client does: the id its ``initialized`` event names."""
        external_id = nonce()
        self.send({"functionId": function, "parameters": parameters,
                   "externalId": external_id, **extra})
        initialized = self.wait_for(lambda e: e.get("event") == "initialized"
                                    and e.get("externalId") == external_id,
                                    f"the job of request {external_id} is initialized")
        return initialized["id"]

    def wait_for_end(self, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("id") == job_id and e.get("event") in TERMINAL,
                             f"job {job_id} ends", timeout_s)

    def lifecycle(self, job_id: str) -> list[dict[str, Any]]:
        return self.matching(lambda e: e.get("id") == job_id and e.get("event") in LIFECYCLE)

    def refusal(self, mark: str) -> dict[str, Any]:
        """The answer to the bad request that contains ``mark``."""
        return self.wait_for(lambda e: e.get("event") == "failed" and e.get("id") is None
                             and mark in (e.get("request") or ""),
                             f"the refusal of the request marked {mark}")


# -- a real `sparkgate serve` with the interface on -------------------------------------------


@pytest.fixture(scope="module")
def server_topics() -> tuple[str, str]:
    return topics()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           server_topics: tuple[str, str]) -> Iterator[Server]:
    request_topic, event_topic = server_topics
    workdir = tmp_path_factory.mktemp("mqtt")
    with running_server(workdir, {"SPARKGATE_MQTT_URL": BROKER_URL,
                                  "SPARKGATE_MQTT_SUBSCRIBE_TOPIC": request_topic,
                                  "SPARKGATE_MQTT_PUBLISH_TOPIC": event_topic,
                                  "SPARKGATE_MQTT_CLIENT_ID": "sgtest-serve"}) as server:
        server.deploy("behaviours.py", "mqtt_sum", "sum_range")
        server.deploy("behaviours.py", "mqtt_fail", "fail")
        server.deploy("behaviours.py", "mqtt_slow", "slow_spark")
        yield server


@pytest.fixture(scope="module")
def broker(server: Server, server_topics: tuple[str, str]) -> Iterator[Broker]:
    client = Broker(BROKER_URL, *server_topics)
    # The gateway is up; make sure it has subscribed too (a request before that is dropped).
    mark = nonce()

    def answered() -> bool:
        client.send(f"probe {mark}")
        return bool(client.matching(lambda e: mark in (e.get("request") or "")))

    wait_until(answered, 30, "the gateway answers on MQTT", interval_s=0.5)
    yield client
    client.close()


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


@pytest.mark.slow
def test_a_request_runs_and_its_events_come_in_order(server: Server, broker: Broker):
    job_id = broker.run("mqtt_sum", {"n": 100})
    end = broker.wait_for_end(job_id)
    events = broker.lifecycle(job_id)
    assert names(events) == ["initialized", "queued", "worker-assigned", "started", "finished"]
    initialized, _, assigned, started, _ = events
    assert initialized["function"] == "mqtt_sum"
    assert initialized["params"] == {"n": 100}
    assert initialized["context"] == "default"
    assert assigned["workerId"] and started["workerId"] == assigned["workerId"]
    assert end["result"] == 4950
    job = server.job(job_id)
    assert (job["status"], job["jobResult"], job["source"]) == ("finished", 4950, "Async mqtt")
    assert job["externalId"] == initialized["externalId"]


@pytest.mark.slow
def test_a_failing_function_ends_with_its_error(server: Server, broker: Broker):
    job_id = broker.run("mqtt_fail", {"message": "mqtt boom"})
    end = broker.wait_for_end(job_id)
    assert names(broker.lifecycle(job_id)) == [
        "initialized", "queued", "worker-assigned", "started", "failed"]
    assert end["error"].startswith("ValueError: mqtt boom")
    assert server.job(job_id)["status"] == "failed"


@pytest.mark.slow
def test_a_running_job_cancelled_through_http(server: Server, broker: Broker):
    job_id = broker.run("mqtt_slow", {"seconds": 120})
    # Its Spark job has begun (a cancel before that would find no job group to cancel).
    broker.wait_for(lambda e: e.get("id") == job_id and e.get("event") == "progress"
                    and e["progress"]["tasks"]["total"], "the slow job's Spark job runs")
    assert server.delete(f"/jobs/{job_id}").json()["status"] == "cancelling"
    assert broker.wait_for_end(job_id, timeout_s=30)["event"] == "cancelled"
    assert names(broker.lifecycle(job_id)) == [
        "initialized", "queued", "worker-assigned", "started", "cancelling", "cancelled"]


@pytest.mark.slow
def test_jobs_submitted_over_http_are_published_too(server: Server, broker: Broker):
    job_id = server.submit("mqtt_sum", {"n": 10})
    assert broker.wait_for_end(job_id)["result"] == 45
    assert names(broker.lifecycle(job_id)) == [
        "initialized", "queued", "worker-assigned", "started", "finished"]


@pytest.mark.slow
def test_run_settings_choose_the_context(server: Server, broker: Broker):
    other = server.context(f"mqtt-{nonce()}")["name"]
    job_id = broker.run("mqtt_sum", {"n": 4}, runSettings={"contextId": other})
    assert broker.wait_for_end(job_id, timeout_s=180)["result"] == 6
    assert server.job(job_id)["context"] == other


BAD_REQUESTS = {
    # name: (payload with MARK in it, what the error says, whether its externalId can be read)
    "garbage bytes": (b"\xff\xfe\x00 MARK", "expected UTF-8 JSON", False),
    "not JSON": (b"run MARK please", "expected JSON", False),
    "a JSON array": (b'["MARK"]', "expected a JSON object", False),
    "no functionId": (b'{"function": "mqtt_sum", "externalId": "MARK"}', "functionId", True),
    "unknown function": (b'{"functionId": "no_such_function", "externalId": "MARK"}',
                         "function 'no_such_function' does not exist", True),
    "wrong argument type": (
        b'{"functionId": "mqtt_sum", "parameters": {"n": "ten"}, "externalId": "MARK"}', "n:",
        True),
    "parameters not an object": (
        b'{"functionId": "mqtt_sum", "parameters": [1], "externalId": "MARK"}', "JSON object",
        True),
    "NaN": (b'{"functionId": "mqtt_sum", "parameters": {"n": NaN}, "externalId": "MARK"}',
            "NaN", False),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_is_answered_and_changes_nothing(server: Server, broker: Broker,
                                                       case: str):
    template, message, readable = BAD_REQUESTS[case]
    mark = nonce()
    broker.send(template.replace(b"MARK", mark.encode()))
    answer = broker.refusal(mark)
    assert message in answer["error"], answer
    assert answer["code"] in ("bad_request", "invalid_arguments", "not_found")
    assert answer["externalId"] == (mark if readable else None)
    assert server.get("/jobs", params={"externalId": mark}).json() == []
    # The interface carries on.
    job_id = broker.run("mqtt_sum", {"n": 3})
    assert broker.wait_for_end(job_id)["result"] == 3


@pytest.mark.slow
def test_a_wrong_argument_type_names_the_argument(broker: Broker):
    mark = nonce()
    broker.send({"functionId": "mqtt_sum", "parameters": {"n": "ten"}, "externalId": mark})
    answer = broker.refusal(mark)
    assert answer["code"] == "invalid_arguments"
    assert [d["field"] for d in answer["details"]] == ["n"]
    assert json.loads(answer["request"])["externalId"] == mark


# -- the parts, in process -------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "message"), [
    (b"\x80", "expected UTF-8 JSON"),
    (b"{", "parse error at line 1"),
    (b"42", "got a number"),
    (b"{}", "functionId: expected the name of a function, got nothing"),
    (b'{"functionId": 7}', "functionId: expected the name of a function, got a number"),
    (b'{"functionId": "f", "externalId": 1}', "externalId: expected a string"),
    (b'{"functionId": "f", "runSettings": []}', "runSettings: expected an object"),
    (b'{"functionId": "f", "runSettings": {"contextId": 1}}', "runSettings.contextId"),
    (b'{"functionId": "f", "parameters": {"x": ' + b"[" * 100 + b"]" * 100 + b"}}",
     "nested deeper"),
    (b'{"functionId": "f", "parameters": {"x": 1e999}}', "too large"),
])
def test_bad_requests_are_named(payload: bytes, message: str):
    with pytest.raises(BadRequest) as raised:
        submit_request(decode_request(payload, 10_000))
    assert message in raised.value.message


def test_a_request_in_mists_format():
    body = decode_request(b'{"functionId": "pi", "parameters": {"samples": 5}, '
                          b'"externalId": "x", "runSettings": {"contextId": "big"}}', 10_000)
    request = submit_request(body)
    assert (request.function, request.arguments, request.external_id, request.context,
            request.source) == ("pi", {"samples": 5}, "x", "big", "mqtt")
    assert submit_request({"functionId": "pi"}).arguments == {}


def test_an_oversize_request_is_refused():
    with pytest.raises(PayloadTooLarge, match="limit is 10"):
        decode_request(b"{" + b" " * 20 + b"}", 10)


def test_settings_default_to_off_and_check_what_is_set():
    assert Settings().mqtt_url is None
    assert load_settings(environ={}).mqtt_url is None
    assert load_settings(environ={"SPARKGATE_MQTT_URL": ""}).mqtt_url is None
    on = load_settings(environ={"SPARKGATE_MQTT_URL": "mqtt://u:p@broker:1884"})
    assert (on.mqtt_subscribe_topic, on.mqtt_publish_topic) == ("sparkgate/requests",
                                                                "sparkgate/events")
    for environ, problem in [({"SPARKGATE_MQTT_URL": "http://broker"}, "mqtt_url"),
                             ({"SPARKGATE_MQTT_URL": "mqtt://u:secret@broker:x"}, "u:***@"),
                             ({"SPARKGATE_MQTT_URL": BROKER_URL,
                               "SPARKGATE_MQTT_PUBLISH_TOPIC": "a/#"}, "wildcards"),
                             # The gateway would take its own events for requests.
                             ({"SPARKGATE_MQTT_URL": BROKER_URL,
                               "SPARKGATE_MQTT_SUBSCRIBE_TOPIC": "sparkgate/#"},
                              "mqtt_subscribe_topic"),
                             ({"SPARKGATE_MQTT_URL": BROKER_URL,
                               "SPARKGATE_MQTT_SUBSCRIBE_TOPIC": "sparkgate/events"},
                              "mqtt_subscribe_topic")]:
        with pytest.raises(ConfigError, match=problem.replace("*", r"\*")):
            load_settings(environ=environ)


def test_serve_makes_no_mqtt_client_when_it_is_off(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    """The whole of `sparkgate serve` but the HTTP server itself, with the default settings
    (but for its database and Redis): no MQTT client is made, so none connects."""
    made: list[Any] = []
    served: list[Any] = []
    monkeypatch.setattr(paho, "Client", lambda *args, **kw: made.append(args))

    async def serve(app: Any, *args: Any) -> int:
        served.append(app)
        return 0

    monkeypatch.setattr(serving, "_serve", serve)
    settings = Settings(data_dir=tmp_path / "data", redis_url=MQTT_REDIS_URL,
                        deploy_examples=False, start_workers=False)
    assert settings.mqtt_url is None
    serving.run_server(settings, "127.0.0.1", free_port(), None)
    assert served and not made


def _interface(settings: Settings, sqlite_url: str, redis: Redis, **kw: Any) -> MqttInterface:
    engine = make_engine(sqlite_url)
    return MqttInterface(settings, Catalog(engine, settings.context), Store(engine), redis, **kw)


@pytest.fixture
def redis() -> Iterator[Redis]:
    client = Redis.from_url(MQTT_REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def make_interface(sqlite_url: str) -> Iterator[Callable[..., MqttInterface]]:
    """Started interfaces, stopped at the end; those of one test share a relay lease."""
    started: list[MqttInterface] = []
    lease_key = f"sgtest:mqtt-relay:{nonce()}"

    def make(settings: Settings, **kw: Any) -> MqttInterface:
        interface = _interface(settings, sqlite_url, Redis.from_url(MQTT_REDIS_URL),
                               lease_key=lease_key, **kw).start()
        started.append(interface)
        return interface

    yield make
    for interface in started:
        interface.stop()  # again, for some: a no-op


def _event(job_id: str, name: str = "queued") -> dict[str, Any]:
    return {"event": name, "id": job_id, "time": 0}


def test_two_gateways_take_each_request_once_and_publish_each_event_once(
        make_interface, redis: Redis):
    request_topic, event_topic = topics()
    settings = Settings(mqtt_url=BROKER_URL, mqtt_subscribe_topic=request_topic,
                        mqtt_publish_topic=event_topic)
    first = make_interface(settings, lease_s=1.0, renew_s=0.1)
    wait_until(lambda: first.lease.holding, 10, "the first gateway holds the relay lease")
    second = make_interface(settings, lease_s=1.0, renew_s=0.1)
    client = Broker(BROKER_URL, request_topic, event_topic)
    try:
        wait_until(lambda: first.client.is_connected() and second.client.is_connected(), 10,
                   "both gateways are connected")
        time.sleep(0.5)  # both subscriptions are made on connection
        marks = [nonce() for _ in range(20)]
        for mark in marks:
            client.send({"functionId": f"missing-{mark}", "externalId": mark})
        for mark in marks:
            client.refusal(mark)
        time.sleep(0.5)
        answers = client.matching(lambda e: e.get("externalId") in marks)
        assert sorted(a["externalId"] for a in answers) == sorted(marks)  # each once

        ids = [nonce() for _ in range(20)]
        for job_id in ids:
            redis.publish(events_channel(redis), encode(_event(job_id)))
        client.wait_for(lambda e: e.get("id") == ids[-1], "the last event is relayed")
        time.sleep(0.5)
        relayed = [e["id"] for e in client.matching(lambda e: e.get("id") in ids)]
        assert relayed == ids  # each once, in order
        assert first.lease.holding != second.lease.holding
        holder, other = (first, second) if first.lease.holding else (second, first)

        holder.stop()  # gives the lease up: the other gateway takes over
        wait_until(lambda: other.lease.holding, 5, "the other gateway takes the lease")
        late = nonce()
        redis.publish(events_channel(redis), encode(_event(late)))
        client.wait_for(lambda e: e.get("id") == late, "events are relayed by the second")
        time.sleep(0.5)
        assert len(client.matching(lambda e: e.get("id") == late)) == 1
    finally:
        client.close()


def _start_mosquitto(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen([shutil.which("mosquitto") or "mosquitto", "-c", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: _reachable(port), 10, "the private broker listens")
    return process


def _reachable(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_broker_outage_is_survived(make_interface, redis: Redis, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture):
    """A private broker, stopped and started again: the interface reconnects by itself,
    resubscribes, and takes requests and relays events as before."""
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    request_topic, event_topic = topics()
    broker = _start_mosquitto(port, tmp_path)
    caplog.set_level(logging.INFO, logger="sparkgate.mqtt")
    interface = make_interface(Settings(mqtt_url=url, mqtt_subscribe_topic=request_topic,
                                        mqtt_publish_topic=event_topic))
    try:
        wait_until(interface.client.is_connected, 10, "the interface connects")
        _check_round_trip(url, request_topic, event_topic, redis)

        broker.terminate()
        broker.wait(10)
        wait_until(lambda: not interface.client.is_connected(), 10, "the interface sees it")
        time.sleep(1.5)  # a reconnection attempt or two fails
        broker = _start_mosquitto(port, tmp_path)
        wait_until(interface.client.is_connected, 30, "the interface reconnects")
        _check_round_trip(url, request_topic, event_topic, redis)
    finally:
        interface.stop()  # while its broker is there to see it leave
        broker.terminate()
        broker.wait(10)
    messages = [r.getMessage() for r in caplog.records]
    assert any("lost the broker" in m for m in messages)
    assert any("connected to" in m and "again" in m for m in messages)


def _check_round_trip(url: str, request_topic: str, event_topic: str, redis: Redis) -> None:
    client = Broker(url, request_topic, event_topic)
    try:
        mark = nonce()

        def answered() -> bool:  # the interface may still be subscribing
            client.send({"functionId": f"missing-{mark}", "externalId": mark})
            return bool(client.matching(lambda e: e.get("externalId") == mark))

        wait_until(answered, 10, "a request is answered", interval_s=0.5)
        job_id = nonce()
        wait_until(lambda: redis.publish(events_channel(redis), encode(_event(job_id))) and
                   client.matching(lambda e: e.get("id") == job_id), 10,
                   "an event is relayed", interval_s=0.5)
    finally:
        client.close()
