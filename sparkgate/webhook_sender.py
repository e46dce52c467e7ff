"""Sending webhooks: the outbox's deliveries (jobs/webhooks.py) POSTed, signed and retried.

Every ``sparkgate serve`` runs a sender, in a thread of its own with its own event loop, so no
receiver ever holds back job processing. Senders need no leader: each attempt is claimed first
(a conditional update that also says until when), so two senders do not send one delivery at
once, and a sender that dies mid-attempt leaves the delivery due again when its claim runs out:
a delivery is made at least once, and a receiver tells a repeat by its delivery id.

At most ``PER_DESTINATION`` attempts go to one receiver (scheme, host and port) at a time: a
receiver that hangs holds up to that many of the sender's slots, never the others'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.exc import DBAPIError

from sparkgate.gateway.routes.status import sparkgate_version
from sparkgate.gateway.wire.fields import to_json
from sparkgate.gateway.wire.jobs import JobDetails
from sparkgate.jobs.db import json_text, now_ms
from sparkgate.jobs.errors import NotFound
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.store import Job, Store
from sparkgate.jobs.webhooks import DELIVERED, FAILED, PENDING, Attempt, Delivery, WebhookBook

log = logging.getLogger("sparkgate.webhooks")

SIGNATURE_HEADER = "X-Sparkgate-Signature"
TIMESTAMP_HEADER = "X-Sparkgate-Timestamp"
EVENT_HEADER = "X-Sparkgate-Event"
DELIVERY_HEADER = "X-Sparkgate-Delivery"
PER_DESTINATION = 4
POLL_S = 0.2
MAX_BACKOFF_S = 600.0
# A claim outlives its attempt's timeout by this much before another sender may take it over.
CLAIM_SLACK_MS = 5_000


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``timestamp.body`` (docs/webhooks.md)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def render(delivery: Delivery, job: Job, max_value_bytes: int) -> str:
    """The body of ``delivery``: the event and the job's details as the API shows them, its
    arguments, result or error replaced by a marker (as in listings) when larger than
    ``max_value_bytes``."""
    oversized = {}
    for name in ("arguments", "result", "error"):
        value = getattr(job, name)
        if value is not None and (size := len(json_text(value).encode())) > max_value_bytes:
            oversized[name] = size
    if oversized:
        job = dataclasses.replace(job, oversized=oversized)
    return json.dumps({"event": delivery.event, "deliveryId": delivery.id,
                       "webhookId": delivery.webhook_id, "job": to_json(JobDetails.of(job))})


@dataclasses.dataclass
class WebhookSender:
    book: WebhookBook
    store: Store
    settings: Settings

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
        busy: Counter[str] = Counter()
        tasks: set[asyncio.Task[None]] = set()
        failing = False
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                try:
                    await self._start_due(session, busy, tasks)
                    failing = False
                except DBAPIError as exc:
                    if not failing:
                        log.warning("webhook deliveries paused, retrying: %s", exc)
                    failing = True
                await asyncio.sleep(POLL_S)
            for task in tasks:  # their claims run out and another sender (or the next) retries
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _start_due(self, session: aiohttp.ClientSession, busy: Counter[str],
                         tasks: set[asyncio.Task[None]]) -> None:
        room = self.settings.webhook_max_in_flight - len(tasks)
        if room <= 0:
            return
        due = await asyncio.to_thread(self.book.due, now_ms(), room * PER_DESTINATION)
        claim_ms = round(self.settings.webhook_timeout_s * 1000) + CLAIM_SLACK_MS
        for delivery in due:
            destination = _destination(delivery.url)
            if busy[destination] >= PER_DESTINATION or len(tasks) >= \
                    self.settings.webhook_max_in_flight:
                continue
            if not await asyncio.to_thread(self.book.claim, delivery, now_ms() + claim_ms):
                continue
            busy[destination] += 1
            task = asyncio.create_task(self._attempt(session, delivery))
            tasks.add(task)
            task.add_done_callback(functools.partial(_ended, busy, tasks, destination))

    async def _attempt(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        try:
            await self._deliver(session, delivery)
        except DBAPIError as exc:  # the claim runs out, and the delivery is due again
            log.warning("webhook delivery %s: its attempt could not be recorded: %s",
                        delivery.id, exc)
        except Exception:
            log.exception("webhook delivery %s failed", delivery.id)

    async def _deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        try:
            body, secret = await asyncio.to_thread(self._prepare, delivery)
        except NotFound as exc:
            await self._record(delivery, time.monotonic(), None, str(exc.message), give_up=True)
            return
        if delivery.webhook_id is not None and secret is None:
            await self._record(delivery, time.monotonic(), None, "the webhook was deleted",
                               give_up=True)
            return
        payload = body.encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json",
                   "User-Agent": f"sparkgate/{sparkgate_version()} webhooks",
                   DELIVERY_HEADER: delivery.id, EVENT_HEADER: delivery.event,
                   TIMESTAMP_HEADER: timestamp}
        if secret:
            headers[SIGNATURE_HEADER] = signature(secret, timestamp, payload)
        started = time.monotonic()
        code, error = None, None
        try:
            async with session.post(delivery.url, data=payload, headers=headers,
                                    allow_redirects=False) as response:
                code = response.status
                await response.content.read(1 << 16)
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except TimeoutError:
            error = f"no answer within {self.settings.webhook_timeout_s:g}s"
        except aiohttp.ClientError as exc:
            error = str(exc) or type(exc).__name__
        await self._record(delivery, started, code, error)

    def _prepare(self, delivery: Delivery) -> tuple[str, str | None]:
        body = delivery.body
        if body is None:
            job = self.store.get_job(delivery.job_id)
            body = render(delivery, job, self.settings.listing_value_max_bytes)
            self.book.keep_body(delivery, body)
        if delivery.webhook_id is None:
            return body, self.settings.callback_secret
        return body, self.book.secret_of(delivery)

    async def _record(self, delivery: Delivery, started: float, code: int | None,
                      error: str | None, give_up: bool = False) -> None:
        latency_ms = round((time.monotonic() - started) * 1000)
        attempt = Attempt(now_ms() - latency_ms, latency_ms, code, error)
        if error is None:
            status, next_ms = DELIVERED, now_ms()
        else:
            backoff_s = min(MAX_BACKOFF_S,
                            self.settings.webhook_backoff_s * 2 ** delivery.attempts)
            next_ms = now_ms() + round(backoff_s * 1000)
            retry_until = delivery.created_at + round(self.settings.webhook_retry_for_s * 1000)
            status = FAILED if give_up or next_ms > retry_until else PENDING
            log.info("webhook delivery %s to %s: attempt %d failed (%s)%s", delivery.id,
                     delivery.url, delivery.attempts + 1, error,
                     "; given up" if status == FAILED else "")
        await asyncio.to_thread(self.book.record, delivery, attempt, status, next_ms)


def _ended(busy: Counter[str], tasks: set[asyncio.Task[None]], destination: str,
           task: asyncio.Task[None]) -> None:
    busy[destination] -= 1
    tasks.discard(task)


def _destination(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"
