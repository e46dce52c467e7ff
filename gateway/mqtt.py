"""The MQTT interface (Mist's ``mist.mqtt``): jobs requested by MQTT message, every job's events
published to MQTT. Started by ``sparkgate serve`` when ``mqtt_url`` is set.

- **Requests**, on ``mqtt_subscribe_topic``: Mist's JSON object ``{"functionId": name,
  "parameters": {...}, "externalId": "...", "runSettings": {"contextId": "..."}}`` (only
  ``functionId`` is required). Each one goes through ``submit()``, as an HTTP submit does,
  which announces the job (``initialized``, ``queued``) on the events channel. A request that
  cannot be run is answered on ``mqtt_publish_topic`` with a ``failed`` event whose ``id`` is
  null (no job was queued) and whose ``error`` says what to fix; nothing else happens.
- **Events**: every job event on the Redis events channel (whoever published it: a gateway, a
  worker, the reconciler, the supervisor) is published as it is on ``mqtt_publish_topic``,
  QoS 1, so MQTT clients follow all jobs, as Mist's did.
- **Several gateways**: every gateway takes requests, through the shared subscription
  ``$share/sparkgate/<topic>``, so that each request is taken by one of them only; events are
  published by one gateway at a time, the holder of a lease in Redis, so none is published
  twice (but for a moment after a holder stalls past its lease). A gateway cut off from the
  broker gives the lease up after ``BROKER_GRACE_S`` so that another one publishes.
- **Outages**: paho reconnects to the broker with backoff (``RECONNECT_MIN_S`` doubling up to
  ``RECONNECT_MAX_S``) and keeps unsent events meanwhile (up to ``MAX_QUEUED_EVENTS``); the
  relay resubscribes to Redis. Each outage is logged once when it starts and once when it ends.

Events are at most once, as on the WebSocket: the database stays the source of truth.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
import urllib.parse
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from redis import Redis

# The same rules as an HTTP body: no NaN or Infinity, nesting bounded.
from sparkgate.gateway.params import (
    MAX_JSON_DEPTH,
    _depth_exceeds,
    _finite_float,
    _NotFinite,
    _reject_constant,
    json_type,
)
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import BadRequest, PayloadTooLarge, SparkgateError
from sparkgate.jobs.events import encode, events_channel
from sparkgate.jobs.lease import Lease
from sparkgate.jobs.outage import Outage
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.settings import Settings, redact_url
from sparkgate.jobs.store import Store
from sparkgate.jobs.submission import SubmitRequest, submit

log = logging.getLogger("sparkgate.mqtt")

SHARE_GROUP = "sparkgate"
RELAY_LEASE_KEY = "sparkgate:mqtt-relay:lease"
LEASE_S = 5.0
RENEW_S = 1.0
BROKER_GRACE_S = 10.0
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
REDIS_RETRY_S = 1.0
KEEPALIVE_S = 30
MAX_QUEUED_EVENTS = 10_000
SUBMIT_THREADS = 4
# How much of a refused request its ``failed`` answer repeats.
ECHO_CHARS = 1000
STOP_WAIT_S = 10.0
UNSUBSCRIBE_WAIT_S = 2.0
REQUEST_FORM = '{"functionId": name, "parameters": {...}, "externalId": "..."}'


# -- requests --------------------------------------------------------------------------------


def decode_request(payload: bytes, limit: int) -> dict[str, Any]:
    """The request's JSON object, or BadRequest saying why there is none."""
    if len(payload) > limit:
        raise PayloadTooLarge(f"request: {len(payload)} bytes; the limit is {limit}")
    try:
        # UTF-8 only: json.loads would take bytes that look like UTF-16 or UTF-32 too.
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request: expected UTF-8 JSON, got bytes that are not UTF-8") from None
    try:
        body = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except _NotFinite as exc:
        raise BadRequest(f"request: expected JSON, got {exc}: JSON has no NaN or infinite "
                         "numbers") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request: expected JSON {REQUEST_FORM}, got a parse error at line "
                         f"{exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:
        raise BadRequest(f"request: expected JSON, got one that cannot be read: "
                         f"{type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request: expected a JSON object {REQUEST_FORM}, got "
                         f"{json_type(body)}")
    if _depth_exceeds(body, MAX_JSON_DEPTH):
        raise BadRequest(f"request: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return body


def submit_request(body: dict[str, Any]) -> SubmitRequest:
    """What Mist's request object asks for, or BadRequest naming the field that is wrong."""
    function = body.get("functionId")
    if not isinstance(function, str) or not function:
        got = "nothing" if function is None else json_type(function)
        raise BadRequest(f"functionId: expected the name of a function, got {got} "
                         f"(a request is {REQUEST_FORM})")
    parameters = body.get("parameters")
    run_settings = body.get("runSettings")
    run_settings = {} if run_settings is None else run_settings
    if not isinstance(run_settings, dict):
        raise BadRequest(f"runSettings: expected an object, got {json_type(run_settings)}")
    return SubmitRequest(
        function=function,
        arguments={} if parameters is None else parameters,
        source="mqtt",
        # The broker authenticated the client, not sparkgate: all MQTT jobs are "mqtt".
        submitter="mqtt",
        context=_optional_str(run_settings, "contextId", "runSettings.contextId"),
        external_id=_optional_str(body, "externalId", "externalId"),
    )


def _optional_str(body: dict[str, Any], key: str, name: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name}: expected a string, got {json_type(value)}")
    return value


def refusal_event(payload: bytes, body: dict[str, Any] | None,
                  error: SparkgateError) -> dict[str, Any]:
    """The ``failed`` event that answers a request that did not become a queued job."""
    external_id = body.get("externalId") if body is not None else None
    return {
        "event": "failed",
        "id": None,
        "externalId": external_id if isinstance(external_id, str) else None,
        "error": error.message,
        "code": error.code,
        "details": error.details,
        "request": payload[:ECHO_CHARS * 4].decode("utf-8", "replace")[:ECHO_CHARS],
        "time": now_ms(),
    }


# -- the interface ---------------------------------------------------------------------------


class MqttInterface:
    def __init__(self, settings: Settings, catalog: Catalog, store: Store, redis: Redis, *,
                 lease_s: float = LEASE_S, renew_s: float = RENEW_S,
                 broker_grace_s: float = BROKER_GRACE_S,
                 lease_key: str = RELAY_LEASE_KEY) -> None:
        assert settings.mqtt_url is not None  # its topics are checked with it (Settings)
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.redis = redis
        self.queue = JobQueue(redis)
        self.url = redact_url(settings.mqtt_url)
        self.shared_topic = f"$share/{SHARE_GROUP}/{settings.mqtt_subscribe_topic}"
        self.lease = Lease(redis, lease_key, int(lease_s * 1000), "MQTT relay", log)
        self.renew_s = renew_s
        self.broker_grace_s = broker_grace_s
        self.client = _make_client(settings)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_message = self._on_message
        self._requests: queue.Queue[bytes | None] = queue.Queue()
        self._stopping = threading.Event()
        self._unsubscribed = threading.Event()
        self._closing = False
        self._broker = Outage(log, "MQTT: cannot reach the broker %s; retrying every "
                              f"{RECONNECT_MIN_S}-{RECONNECT_MAX_S}s",
                              f"MQTT: connected to {self.url} again")
        self._disconnected_at: float | None = time.monotonic()  # not connected yet
        self._dropping = False  # events dropped: the queue of unsent ones is full
        self._relay_outage = Outage(log, "MQTT relay: cannot follow the events (%s); retrying "
                                    f"every {REDIS_RETRY_S}s",
                                    "MQTT relay: subscribed to the events again")
        self._last_publish: mqtt.MQTTMessageInfo | None = None
        self._threads = [threading.Thread(target=self._take_requests, name=f"mqtt-submit-{n}",
                                          daemon=True) for n in range(SUBMIT_THREADS)]
        self._relay = threading.Thread(target=self._run_relay, name="mqtt-relay", daemon=True)

    @classmethod
    def for_settings(cls, settings: Settings, redis_url: str, catalog: Catalog,
                     store: Store) -> MqttInterface:
        return cls(settings, catalog, store, Redis.from_url(redis_url, socket_timeout=30))

    def start(self) -> MqttInterface:
        url = urllib.parse.urlsplit(self.settings.mqtt_url or "")
        port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        self.client.connect_async(url.hostname or "", port, keepalive=KEEPALIVE_S,
                                  clean_start=True)
        self.client.loop_start()  # its thread connects, reconnects, and runs the callbacks
        for thread in (*self._threads, self._relay):
            thread.start()
        log.info("MQTT interface: broker %s, requests from %s, events to %s", self.url,
                 self.shared_topic, self.settings.mqtt_publish_topic)
        return self

    def stop(self) -> None:
        """Take no more requests, submit those received, publish what is pending, and leave."""
        if self._closing:
            return
        self._closing = True
        if self.client.is_connected():
            self.client.unsubscribe(self.shared_topic)
            # The broker sends what it had routed to us before its acknowledgement.
            self._unsubscribed.wait(UNSUBSCRIBE_WAIT_S)
        for _ in self._threads:
            self._requests.put(None)
        for thread in self._threads:
            thread.join(STOP_WAIT_S)
        self._stopping.set()
        self._relay.join(STOP_WAIT_S)  # gives the lease up, for another gateway to take
        self._flush()
        self.client.disconnect()
        self.client.loop_stop()
        self.redis.close()

    # -- requests ----------------------------------------------------------------------------

    def handle(self, payload: bytes) -> None:
        """Submit one request, or answer why not. Never raises."""
        body = None
        try:
            body = decode_request(payload, self.settings.max_body_bytes)
            # Its initialized and queued events go out before it is queued, so none of a
            # worker's can come first.
            submit(self.catalog, self.store, self.queue, submit_request(body), announce=True,
                   max_queued=self.settings.max_queued_per_context)
        except SparkgateError as exc:
            self._refuse(payload, body, exc)
        except Exception as exc:
            log.exception("MQTT request could not be handled: %r", payload[:200])
            self._refuse(payload, body, SparkgateError(f"internal error: {exc}"))

    def _take_requests(self) -> None:
        while (payload := self._requests.get()) is not None:
            self.handle(payload)

    def _refuse(self, payload: bytes, body: dict[str, Any] | None,
                error: SparkgateError) -> None:
        log.info("MQTT request refused: %s", error.message)
        try:
            self._publish(encode(refusal_event(payload, body, error)))
        except Exception:
            log.exception("the answer to a refused MQTT request could not be published")

    # -- events ------------------------------------------------------------------------------

    def _run_relay(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._relay_events()
                except Exception as exc:
                    self._relay_outage.failed(exc)
                    self._stopping.wait(REDIS_RETRY_S)
        finally:
            self.lease.release()

    def _relay_events(self) -> None:
        """Publish the channel's events while this gateway holds the lease, until stopped."""
        with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            pubsub.subscribe(events_channel(self.redis))
            self._relay_outage.ok()
            renew_at = 0.0
            while not self._stopping.is_set():
                if time.monotonic() >= renew_at:
                    self._keep_lease()
                    renew_at = time.monotonic() + self.renew_s
                message = pubsub.get_message(timeout=self.renew_s)
                if message is not None and message["type"] == "message" and self.lease.holding:
                    self._publish(message["data"])

    def _keep_lease(self) -> None:
        cut_off = self._disconnected_at
        if cut_off is None or time.monotonic() - cut_off < self.broker_grace_s:
            self.lease.hold()
        elif self.lease.holding:
            log.warning("MQTT relay: the broker has been unreachable for %.0fs; giving the "
                        "lease up to a gateway that reaches it", time.monotonic() - cut_off)
            self.lease.release()

    def _publish(self, payload: bytes | str) -> None:
        info = self.client.publish(self.settings.mqtt_publish_topic, payload, qos=1)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            if not self._dropping:
                log.warning("MQTT: %d events wait for the broker; dropping newer ones",
                            MAX_QUEUED_EVENTS)
            self._dropping = True
            return
        if self._dropping:
            log.info("MQTT: events are published again")
        self._dropping = False
        self._last_publish = info

    def _flush(self) -> None:
        """Wait a little for the last event's acknowledgement (QoS 1 keeps order)."""
        last = self._last_publish
        if last is not None and self.client.is_connected():
            with contextlib.suppress(RuntimeError, ValueError):
                last.wait_for_publish(STOP_WAIT_S / 2)

    # -- paho's callbacks (its network thread: nothing here blocks) -------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            self._broker.starts(self.url, reason, level=logging.ERROR,
                                message="MQTT: the broker %s refused the connection: %s; retrying")
            return
        if not self._broker.ok():
            log.info("MQTT: connected to %s", self.url)
        self._disconnected_at = None
        client.subscribe(self.shared_topic, qos=1)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._broker.starts(self.url)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any,
                       flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        if self._disconnected_at is not None:
            return  # it was not connected: a refused or failed connection, already logged
        self._disconnected_at = time.monotonic()
        if not self._closing:
            self._broker.starts(self.url, reason,
                                message="MQTT: lost the broker %s (%s); reconnecting")

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.error("MQTT: the broker refused the subscription to %s: %s (it needs "
                          "MQTT 5 shared subscriptions)", self.shared_topic, reason)

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                        reasons: list[ReasonCode], properties: Properties | None) -> None:
        self._unsubscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self._requests.put(bytes(message.payload))


def _make_client(settings: Settings) -> mqtt.Client:
    url = urllib.parse.urlsplit(settings.mqtt_url or "")
    client_id = (f"{settings.mqtt_client_id}-{socket.gethostname()}-{os.getpid()}-"
                 f"{uuid.uuid4().hex[:6]}")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    if url.username is not None:
        client.username_pw_set(urllib.parse.unquote(url.username),
                               None if url.password is None
                               else urllib.parse.unquote(url.password))
    if url.scheme == "mqtts":
        client.tls_set()
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    client.max_queued_messages_set(MAX_QUEUED_EVENTS)
    return client
