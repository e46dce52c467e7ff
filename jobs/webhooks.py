"""Webhooks: apps told of job events by an HTTP POST instead of polling (docs/webhooks.md).

- A **subscription** (admin-made) names a URL, the events it wants (``started``, ``finished``,
  ``failed``, ``cancelled``), a secret that signs each delivery, and optionally one function or
  schedule whose jobs alone it wants.
- A job's own ``callbackUrl`` (spark-jobserver's), allowed only for URLs on an allow-list, is
  told of the job's end.
- The **outbox**: every status change that a subscription or a callback wants writes a
  delivery row in the change's own transaction (``Outbox.add``, called by the store), so a
  change that happened always has its deliveries, whatever crashes next. The sender
  (sparkgate/webhook_sender.py) attempts them, at least once each, with retries.

The outbox knows the subscriptions from a copy read at most ``REFRESH_S`` old: a status change
costs no extra query, and a new subscription applies to the jobs whose changes come after it
within a second.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, delete, insert, select, update

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import now_ms, writing
from sparkgate.jobs.errors import BadRequest, NotFound
from sparkgate.jobs.ids import uuid7
from sparkgate.jobs.state import JobStatus

EVENTS = ("started", "finished", "failed", "cancelled")
# What a job's callbackUrl is told of: its end.
CALLBACK_EVENTS = ("finished", "failed", "cancelled")
EVENT_OF = {JobStatus.STARTED: "started", JobStatus.FINISHED: "finished",
            JobStatus.FAILED: "failed", JobStatus.CANCELLED: "cancelled"}
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
REFRESH_S = 1.0
MIN_SECRET_CHARS = 16


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    function: str | None
    schedule: str | None
    created_by: str
    created_at: int

    @classmethod
    def from_row(cls, row: Any) -> Subscription:
        values = dict(row)
        values["events"] = tuple(values["events"])
        return cls(**values)

    def wants(self, job: Any, event: str) -> bool:
        return (event in self.events
                and self.function in (None, job.function)
                and self.schedule in (None, job.schedule))


def checked_url(url: Any, field: str) -> str:
    """An absolute http(s) URL, or a 400 naming ``field``."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is not None:
            parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or not url.isascii() or any(ord(c) < 0x21 or c == "\x7f" for c in url) \
            or len(url) > 2000:
        raise BadRequest(f"{field}: expected an absolute http:// or https:// URL (at most 2000 "
                         f"ASCII characters, no spaces; a host that is not ASCII punycoded), "
                         f"got {url!r}",
                         {"field": field, "expected": "http(s) URL", "got": repr(url)[:200]})
    return url


def callback_allowed(url: str, allowed: Sequence[str]) -> bool:
    """``url`` starts with one of the ``allowed`` prefixes, compared as URLs: the scheme, host
    and port whole (``https://hooks.example.com`` does not allow ``...example.com.evil``)."""
    target = urlsplit(url)
    for prefix in allowed:
        base = urlsplit(prefix)
        if (target.scheme, target.hostname, target.port) != (base.scheme, base.hostname,
                                                             base.port):
            continue
        if target.path.startswith(base.path.rstrip("/") + "/") or target.path == base.path \
                or not base.path.strip("/"):
            return True
    return False


class Outbox:
    """Writes the deliveries a job's status change calls for, in that change's transaction."""

    def __init__(self) -> None:
        self._subscriptions: tuple[Subscription, ...] = ()
        self._read_at = -math.inf

    def add(self, conn: Connection, jobs: Sequence[Any]) -> None:
        """Deliveries for ``jobs`` (each just moved to its ``status``), in ``conn``'s
        transaction."""
        changed = [(job, EVENT_OF[job.status]) for job in jobs if job.status in EVENT_OF]
        if not changed:
            return
        subscriptions = self._current(conn)
        now = now_ms()
        rows = [_delivery_row(s.id, s.url, job.id, event, now)
                for job, event in changed for s in subscriptions if s.wants(job, event)]
        rows += [_delivery_row(None, job.callback_url, job.id, event, now)
                 for job, event in changed
                 if getattr(job, "callback_url", None) and event in CALLBACK_EVENTS]
        if rows:
            conn.execute(insert(t.webhook_deliveries), rows)

    def _current(self, conn: Connection) -> tuple[Subscription, ...]:
        if time.monotonic() - self._read_at > REFRESH_S:
            rows = conn.execute(select(t.webhooks)).mappings()
            self._subscriptions = tuple(Subscription.from_row(r) for r in rows)
            self._read_at = time.monotonic()
        return self._subscriptions


def _delivery_row(webhook_id: str | None, url: str, job_id: str, event: str,
                  now: int) -> dict[str, Any]:
    return {"id": uuid7(), "webhook_id": webhook_id, "url": url, "job_id": job_id,
            "event": event, "status": PENDING, "attempts": 0, "next_attempt_ms": now,
            "created_at": now}


@dataclass(frozen=True)
class Delivery:
    id: str
    webhook_id: str | None
    url: str
    job_id: str
    event: str
    status: str
    attempts: int
    next_attempt_ms: int
    created_at: int
    delivered_at: int | None
    body: str | None


@dataclass(frozen=True)
class Attempt:
    at_ms: int
    latency_ms: int
    status_code: int | None
    error: str | None


class WebhookBook:
    """Subscriptions and their deliveries in the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, url: str, events: Sequence[str], secret: str | None,
               function: str | None, schedule: str | None, by: str) -> Subscription:
        row = {"id": uuid7(), "url": url, "events": list(events),
               "secret": secret or secrets.token_urlsafe(32), "function": function,
               "schedule": schedule, "created_by": by, "created_at": now_ms()}
        with writing(self.engine) as conn:
            conn.execute(insert(t.webhooks), row)
        return Subscription.from_row(row)

    def list_webhooks(self) -> list[Subscription]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.webhooks).order_by(t.webhooks.c.created_at))
            return [Subscription.from_row(r) for r in rows.mappings()]

    def get(self, webhook_id: str) -> Subscription:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.webhooks).where(t.webhooks.c.id == webhook_id)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"webhook {webhook_id} does not exist", {"webhook": webhook_id})
        return Subscription.from_row(row)

    def delete(self, webhook_id: str) -> Subscription:
        """The subscription, gone with its deliveries not yet made."""
        subscription = self.get(webhook_id)
        d = t.webhook_deliveries.c
        with writing(self.engine) as conn:
            conn.execute(delete(t.webhook_deliveries).where(d.webhook_id == webhook_id,
                                                            d.status == PENDING))
            conn.execute(delete(t.webhooks).where(t.webhooks.c.id == webhook_id))
        return subscription

    def deliveries(self, webhook_id: str | None = None, job_id: str | None = None,
                   limit: int = 50) -> list[tuple[Delivery, list[Attempt]]]:
        """Newest first, each with its attempts (oldest first)."""
        d = t.webhook_deliveries.c
        conditions = []
        if webhook_id is not None:
            conditions.append(d.webhook_id == webhook_id)
        if job_id is not None:
            conditions.append(d.job_id == job_id)
        statement = (select(t.webhook_deliveries).where(*conditions)
                     .order_by(d.created_at.desc(), d.id.desc()).limit(limit))
        a = t.webhook_attempts.c
        with self.engine.connect() as conn:
            found = [Delivery(**r) for r in conn.execute(statement).mappings()]
            attempts: dict[str, list[Attempt]] = {f.id: [] for f in found}
            if found:
                rows = conn.execute(
                    select(a.delivery_id, a.at_ms, a.latency_ms, a.status_code, a.error)
                    .where(a.delivery_id.in_(list(attempts))).order_by(a.id)).all()
                for delivery_id, *attempt in rows:
                    attempts[delivery_id].append(Attempt(*attempt))
        return [(f, attempts[f.id]) for f in found]

    # -- the sender's side -------------------------------------------------------------------

    def due(self, now: int, limit: int) -> list[Delivery]:
        d = t.webhook_deliveries.c
        statement = (select(t.webhook_deliveries)
                     .where(d.status == PENDING, d.next_attempt_ms <= now)
                     .order_by(d.next_attempt_ms).limit(limit))
        with self.engine.connect() as conn:
            return [Delivery(**r) for r in conn.execute(statement).mappings()]

    def claim(self, delivery: Delivery, until_ms: int) -> bool:
        """Take ``delivery`` for one attempt, until ``until_ms`` (a sender that dies with it
        leaves it due again then); false if another sender took it first."""
        d = t.webhook_deliveries.c
        with writing(self.engine) as conn:
            changed = conn.execute(
                update(t.webhook_deliveries)
                .where(d.id == delivery.id, d.status == PENDING,
                       d.next_attempt_ms == delivery.next_attempt_ms)
                .values(next_attempt_ms=until_ms, attempts=d.attempts + 1))
        return bool(changed.rowcount)

    def secret_of(self, delivery: Delivery) -> str | None:
        """The subscription's secret; None for a callback, or a subscription deleted since."""
        if delivery.webhook_id is None:
            return None
        with self.engine.connect() as conn:
            return conn.execute(select(t.webhooks.c.secret)
                                .where(t.webhooks.c.id == delivery.webhook_id)).scalar()

    def keep_body(self, delivery: Delivery, body: str) -> None:
        with writing(self.engine) as conn:
            conn.execute(update(t.webhook_deliveries)
                         .where(t.webhook_deliveries.c.id == delivery.id).values(body=body))

    def record(self, delivery: Delivery, attempt: Attempt, status: str,
               next_attempt_ms: int) -> None:
        """An attempt, and where it leaves the delivery."""
        values: dict[str, Any] = {"status": status, "next_attempt_ms": next_attempt_ms}
        if status == DELIVERED:
            values["delivered_at"] = attempt.at_ms + attempt.latency_ms
        with writing(self.engine) as conn:
            conn.execute(insert(t.webhook_attempts), {"delivery_id": delivery.id,
                                                      **vars(attempt)})
            conn.execute(update(t.webhook_deliveries)
                         .where(t.webhook_deliveries.c.id == delivery.id).values(**values))
