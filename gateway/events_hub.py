"""The gateway's single subscription to the job events channel, fanned out in process.

Waiters (sync submits, ``?wait=``) register a job id and are woken by that job's terminal
event; they then re-read the database, which stays the source of truth. When the subscription
drops and comes back every waiter is woken too, since events may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from jobs.events import CHANNEL, TERMINAL_EVENTS, decode

log = logging.getLogger("sparkgate.events")

RECONNECT_DELAY_S = 0.5


class EventHub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sparkgate-events")
        # Serve no request before the subscription exists, or an early job's end could be missed.
        await asyncio.wait_for(self._subscribed.wait(), timeout=30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when ``job_id`` may have ended; registered for the ``with`` block."""
        signal = asyncio.Event()
        self._waiters[job_id].add(signal)
        try:
            yield signal
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(signal)
                if not waiters:
                    del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                log.warning("event subscription lost (%s); reconnecting", exc)
            self._wake_all()
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _listen(self) -> None:
        async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(CHANNEL)
            self._subscribed.set()
            self._wake_all()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self._dispatch(message["data"])

    def _dispatch(self, raw: bytes) -> None:
        try:
            event = decode(raw)
        except ValueError:
            log.warning("ignoring an event that is not JSON: %r", raw[:200])
            return
        if event.get("event") in TERMINAL_EVENTS:
            for signal in self._waiters.get(event.get("id"), ()):
                signal.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for signal in waiters:
                signal.set()
