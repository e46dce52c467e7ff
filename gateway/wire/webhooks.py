"""Webhooks on the wire: a subscription (never its secret, but once, as it is created), what
``POST /v2/api/webhooks`` takes, and a delivery with its attempts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparkgate.gateway.wire.fields import ABSENT, Absent, Reading, read_present, schema_of, wire
from sparkgate.gateway.wire.schema import STRING, TIME_MS, array, obj
from sparkgate.jobs.errors import BadRequest
from sparkgate.jobs.webhooks import (
    EVENTS,
    MIN_SECRET_CHARS,
    PENDING,
    Attempt,
    Delivery,
    Subscription,
    checked_url,
)

_EVENT: dict[str, Any] = {"enum": list(EVENTS)}
_NULLABLE_NAME: dict[str, Any] = {"type": ["string", "null"]}


def _read_url(raw: Any) -> str:
    try:
        return checked_url(raw, "url")
    except BadRequest:
        raise ValueError("an absolute http:// or https:// URL") from None


def _read_events(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw or any(e not in EVENTS for e in raw):
        raise ValueError(f"a non-empty list of {', '.join(EVENTS)}")
    return sorted(set(raw), key=EVENTS.index)


def _read_secret(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) < MIN_SECRET_CHARS or len(raw) > 255 \
            or not raw.isprintable():
        raise ValueError(f"a string of {MIN_SECRET_CHARS} to 255 printable characters")
    return raw


def _read_name(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw or not raw.isprintable():
        raise ValueError("a name, or null")
    return raw


@dataclass(slots=True)
class WebhookInfo:
    id: str = wire("id", STRING)
    url: str = wire("url", STRING, reads=Reading(
        {"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$", "maxLength": 2000,
         "description": "where deliveries are POSTed; loopback and private addresses "
                        "allowed (an admin chose them)"},
        _read_url))
    events: list[str] = wire("events", array(_EVENT), reads=Reading(
        {"type": "array", "items": _EVENT, "minItems": 1}, _read_events))
    function: str | None = wire("function", _NULLABLE_NAME, reads=Reading(
        {**_NULLABLE_NAME, "description": "only this function's jobs"}, _read_name))
    schedule: str | None = wire("schedule", _NULLABLE_NAME, reads=Reading(
        {**_NULLABLE_NAME, "description": "only this schedule's jobs"}, _read_name))
    created_by: str = wire("createdBy", STRING)
    created_at: int = wire("createdAt", TIME_MS)
    secret: str | Absent = wire("secret", reads=Reading(
        {"type": "string", "minLength": MIN_SECRET_CHARS, "maxLength": 255,
         "description": "signs each delivery (HMAC-SHA256); left out, one is made. Answered "
                        "only by the create"}, _read_secret), optional=True)

    @classmethod
    def of(cls, subscription: Subscription, with_secret: bool = False) -> WebhookInfo:
        s = subscription
        return cls(s.id, s.url, list(s.events), s.function, s.schedule, s.created_by,
                   s.created_at, s.secret if with_secret else ABSENT)


@dataclass(frozen=True)
class Subscribing:
    url: str
    events: list[str]
    function: str | None
    schedule: str | None
    secret: str | None

    @classmethod
    def read(cls, body: dict[str, Any]) -> Subscribing:
        values = read_present(WebhookInfo, body, "webhook")
        missing = [name for name in ("url", "events") if name not in values]
        if missing:
            raise BadRequest(f"webhook: {', '.join(missing)} missing",
                             {"field": missing[0], "expected": "present", "got": "nothing"})
        return cls(values["url"], values["events"], values.get("function"),
                   values.get("schedule"), values.get("secret"))


_ATTEMPT = obj({"at": TIME_MS, "latencyMs": {"type": "integer"},
                "statusCode": {"type": ["integer", "null"]},
                "error": {"type": ["string", "null"]}})


@dataclass(slots=True)
class DeliveryInfo:
    id: str = wire("id", STRING, description="also sent as X-Sparkgate-Delivery")
    webhook_id: str | None = wire("webhookId", {"type": ["string", "null"],
                                                "description": "null: the job's callbackUrl"})
    url: str = wire("url", STRING)
    job_id: str = wire("jobId", STRING)
    event: str = wire("event", _EVENT)
    status: str = wire("status", {"enum": ["pending", "delivered", "failed"],
                                  "description": "failed: given up (webhook_retry_for_s)"})
    created_at: int = wire("createdAt", TIME_MS)
    delivered_at: int | None = wire("deliveredAt", {"type": ["integer", "null"]})
    next_attempt: int | None = wire("nextAttempt", {"type": ["integer", "null"],
                                                    "description": "pending: when it is due"})
    attempts: list[dict[str, Any]] = wire("attempts", array(_ATTEMPT), description=(
        "every attempt, oldest first"))

    @classmethod
    def of(cls, delivery: Delivery, attempts: list[Attempt]) -> DeliveryInfo:
        d = delivery
        return cls(d.id, d.webhook_id, d.url, d.job_id, d.event, d.status, d.created_at,
                   d.delivered_at, d.next_attempt_ms if d.status == PENDING else None,
                   [{"at": a.at_ms, "latencyMs": a.latency_ms, "statusCode": a.status_code,
                     "error": a.error} for a in attempts])


WEBHOOK = schema_of(WebhookInfo, "a subscription to job events")
DELIVERY = schema_of(DeliveryInfo, "a delivery of one job event to one URL")
