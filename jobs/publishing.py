"""Publishing on Redis pub/sub, from everywhere: job events on the events channel
(jobs/events.py), control messages on a worker's own channel.

Events are best effort: the database holds every job's state, and an event only tells a live
view sooner. So a failed publish is handed to ``on_error`` (by default, a warning) and never
raised: raising would abandon the work that produced the event (a worker's claimed job left
started until the reconciler fails it as "worker lost"). A caller that queues events with other
commands in its own pipeline (``add_events``) answers for that pipeline's errors itself.

Control messages are not best effort: the caller of a cancel or a stop learns that it failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from sparkgate.jobs.events import encode, events_channel
from sparkgate.jobs.redis_wire import packed, queued

log = logging.getLogger("sparkgate.events")

Event = dict[str, Any]
OnError = Callable[[RedisError], object]


class _Publishing(Protocol):
    connection_pool: Any

    def publish(self, channel: str, message: str) -> Any: ...


def add_events(pipe: _Publishing, *events: Event) -> None:
    """Queue ``events`` on a pipeline (sync or async) that the caller executes."""
    channel = events_channel(pipe)
    for event in events:
        pipe.publish(channel, encode(event))


def publish(redis: Redis, *events: Event, along: Callable[[Pipeline], object] | None = None,
            on_error: OnError | None = None) -> None:
    """Publish ``events`` in one round trip, after the commands ``along`` queues on the same
    pipeline (not a transaction), if any. Never raises ``RedisError``."""
    try:
        with redis.pipeline(transaction=False) as pipe:
            if along is not None:
                along(pipe)
            add_events(pipe, *events)
            pipe.execute()
    except RedisError as exc:
        if on_error is None:
            _warn_lost(events, exc)
        else:
            on_error(exc)


class Announcement:
    """Events (after the commands ``along`` queues) sent at once, their replies read later, on
    a connection held until then: a worker announces a job's start without waiting for Redis's
    answer before it runs the function, and its end (``then``) follows on the same connection,
    so its commands come after the start's and both replies are read in one wait: one round
    trip for the pair. Best effort, as ``publish``: a failure is a warning."""

    def __init__(self, redis: Redis, *events: Event,
                 along: Callable[[Pipeline], object] | None = None) -> None:
        self.redis = redis
        self._conn: Any = None
        self._unread = 0
        try:
            self._conn = redis.connection_pool.get_connection()
            self._send(events, along)
        except RedisError as exc:
            self._drop(events, exc)

    def then(self, *events: Event) -> None:
        """Publish ``events`` after the announcement's, read every reply, let go."""
        if self._conn is None:  # the announcement failed: its connection is gone
            publish(self.redis, *events)
            return
        try:
            self._send(events)
            self.close()
        except RedisError as exc:
            self._drop(events, exc)

    def close(self) -> None:
        """Read what is left of the replies and give the connection back to its pool."""
        if self._conn is None:
            return
        try:
            while self._unread:
                self._unread -= 1
                with contextlib.suppress(ResponseError):
                    self._conn.read_response()
        except RedisError as exc:
            self._drop((), exc)
            return
        self.redis.connection_pool.release(self._conn)
        self._conn = None

    def _send(self, events: Sequence[Event], along: Callable[[Pipeline], object] | None = None,
              ) -> None:
        # A pipeline only to queue the commands as the other publishers do: never executed.
        pipe = self.redis.pipeline(transaction=False)
        if along is not None:
            along(pipe)
        add_events(pipe, *events)
        commands = queued(pipe)
        self._conn.send_packed_command(packed(commands))
        self._unread += len(commands)

    def _drop(self, events: Sequence[Event], exc: RedisError) -> None:
        _warn_lost(tuple(events), exc)
        if self._conn is not None:
            self._conn.disconnect()  # replies may be half read: it cannot be reused as is
            self.redis.connection_pool.release(self._conn)
            self._conn = None


async def publish_async(redis: AsyncRedis, *events: Event) -> None:
    """``publish`` on the gateway's loop, with its asynchronous client."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            add_events(pipe, *events)
            await pipe.execute()
    except RedisError as exc:
        _warn_lost(events, exc)


def _warn_lost(events: tuple[Event, ...], exc: RedisError) -> None:
    names = ", ".join(f"{e.get('event')} of job {e.get('id')}" for e in events)
    log.warning("event(s) not published (%s): %s", names, exc)


# -- control messages ------------------------------------------------------------------------


def control_channel(worker_id: str) -> str:
    """The channel a worker listens to for messages meant for it alone."""
    return f"sparkgate:control:{worker_id}"


def send_control(redis: Redis, worker_id: str, message: dict[str, Any]) -> None:
    redis.publish(control_channel(worker_id), json.dumps(message))


async def send_control_async(redis: AsyncRedis, worker_id: str, message: dict[str, Any]) -> None:
    await redis.publish(control_channel(worker_id), json.dumps(message))
