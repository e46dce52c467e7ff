"""The gateway's single subscription to the job events channel, fanned out in process.

Two kinds of listener share it:

- Waiters (sync submits, ``?wait=``) register a job id and are woken by that job's terminal
  event; they then re-read the database, which stays the source of truth. When the subscription
  drops and comes back every waiter is woken too, since events may have been missed meanwhile.
- Streams (WebSocket and SSE clients) get every event they admit, each through a bounded queue
  of its own. A stream whose queue is full, or whose unsent bytes (queued, plus written to its
  connection and not yet taken by the client) would exceed its byte limit, is dropped: it gets
  :attr:`Notice.DROPPED` after what it already holds and nothing more, so one slow client costs
  neither memory nor the others' latency. Each client (API key, or address with authentication
  off) may hold a limited number of streams at once (:meth:`EventHub.client_slot`).
  Each event is decoded once, whatever the number of streams, and not at all while nothing
  listens; its published JSON text is handed on as is, so a stream forwards it without
  encoding it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sparkgate.gateway.event_subscription import subscribe
from sparkgate.gateway.log_throttle import LogThrottle
from sparkgate.jobs.errors import TooManyRequests
from sparkgate.jobs.events import TERMINAL_EVENTS, decode, events_channel
from sparkgate.jobs.outage import Outage

log = logging.getLogger("sparkgate.events")

RECONNECT_DELAY_S = 0.5
#: Events a stream may hold unsent before it is dropped.
STREAM_QUEUE_SIZE = 1000
#: Jobs whose function and context the hub remembers (ended jobs are forgotten at once).
ORIGINS_CAPACITY = 20_000
#: What a client at its stream limit is told to wait before it tries again.
STREAM_RETRY_AFTER_S = 5

_REPEATED = LogThrottle(log)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a job belongs: what filters by function, context or owner test."""

    function: str
    context: str
    submitter: str | None


@dataclass(frozen=True, slots=True)
class HubEvent:
    """One event as received: ``text`` is the JSON exactly as published, ``data`` its value."""

    seq: int  # this hub's count of events received, from 1
    name: str
    job_id: str | None
    data: dict[str, Any]
    text: str
    origin: Origin | None  # None: not known to the hub when the event came (see JobOrigins)


class JobWatch(asyncio.Event):
    """Set when the watched job may have ended. ``ended_with`` is its terminal event's data
    when that is what woke it; None when the subscription was lost and came back (the job may
    have ended unseen: read it)."""

    def __init__(self) -> None:
        super().__init__()
        self.ended_with: dict[str, Any] | None = None


class Notice(enum.Enum):
    DROPPED = "dropped"  # final: the stream fell behind and gets nothing more
    CLOSED = "closed"  # final: the gateway is shutting down
    RESYNC = "resync"  # the subscription was lost and is back: events may have been missed

    @property
    def final(self) -> bool:
        return self is not Notice.RESYNC


Admit = Callable[[HubEvent], bool]


def _nothing_unsent() -> int:
    return 0


class Stream:
    """A stream's end of the hub: :meth:`get` the next event or notice, in arrival order."""

    def __init__(self, admit: Admit | None, jobs: frozenset[str] | None, limit: int,
                 max_bytes: int) -> None:
        self.admit = admit
        self.jobs = jobs
        self.limit = limit
        self.max_bytes = max_bytes
        # One slot more than the limit: the final notice always fits.
        self.queue: asyncio.Queue[HubEvent | Notice] = asyncio.Queue(maxsize=limit + 1)
        self.queued_bytes = 0
        # Bytes written to the client's connection that it has not taken yet: the route sets
        # this once its response has begun (a client that stops reading grows it, not us).
        self.unsent: Callable[[], int] = _nothing_unsent
        self.ended: Notice | None = None

    async def get(self) -> HubEvent | Notice:
        item = await self.queue.get()
        if isinstance(item, HubEvent):
            self.queued_bytes -= len(item.text)
        return item

    def _offer(self, item: HubEvent | Notice) -> bool:
        """False when the stream holds its limit of events or of bytes already (the caller
        drops it). One event, however large, always fits a stream that has nothing unsent."""
        size = len(item.text) if isinstance(item, HubEvent) else 0
        backlog = self.queued_bytes + self.unsent()
        if self.queue.qsize() >= self.limit or (backlog and backlog + size > self.max_bytes):
            return False
        self.queue.put_nowait(item)
        self.queued_bytes += size
        return True

    def _end(self, notice: Notice) -> None:
        self.ended = notice
        self.queue.put_nowait(notice)


class JobOrigins:
    """job id → :class:`Origin`, for filters on events that carry only the job id (those from
    workers). Learnt from the events that name them (``initialized``), otherwise looked up once
    through ``lookup`` (the database); bounded, least recently used first out."""

    def __init__(self, capacity: int = ORIGINS_CAPACITY) -> None:
        self.capacity = capacity
        self._known: OrderedDict[str, Origin | None] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Origin | None]] = {}

    def __len__(self) -> int:
        return len(self._known)

    def get(self, job_id: str) -> Origin | None:
        origin = self._known.get(job_id)
        if origin is not None:
            self._known.move_to_end(job_id)
        return origin

    def remember(self, job_id: str, origin: Origin | None) -> None:
        """``origin`` None records a job that does not exist."""
        self._known[job_id] = origin
        self._known.move_to_end(job_id)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self._known.pop(job_id, None)

    async def resolve(self, job_id: str,
                      lookup: Callable[[str], Awaitable[Origin | None]]) -> Origin | None:
        """The job's origin, with one ``lookup`` however many streams ask at once."""
        if job_id in self._known:
            return self.get(job_id)
        pending = self._pending.get(job_id)
        if pending is None:
            pending = asyncio.ensure_future(lookup(job_id))
            self._pending[job_id] = pending
            pending.add_done_callback(lambda done: self._looked_up(job_id, done))
        return await asyncio.shield(pending)

    def _looked_up(self, job_id: str, done: asyncio.Future[Origin | None]) -> None:
        self._pending.pop(job_id, None)
        if not done.cancelled() and done.exception() is None:
            self.remember(job_id, done.result())


class EventHub:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.origins = JobOrigins()
        self._waiters: dict[str, set[JobWatch]] = defaultdict(set)
        self._streams: set[Stream] = set()  # those that take every job's events
        self._job_streams: dict[str, set[Stream]] = defaultdict(set)
        self._per_client: Counter[str] = Counter()
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._subscription = Outage(log, "event subscription lost (%s); reconnecting",
                                    "event subscription restored")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sparkgate-events")
        # Serve no request before the subscription exists, or an early job's end could be missed.
        await asyncio.wait_for(self._subscribed.wait(), timeout=30)

    async def stop(self) -> None:
        self.end_streams()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- waiters -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[JobWatch]:
        """Set when ``job_id`` may have ended; registered for the ``with`` block."""
        signal = JobWatch()
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

    # -- streams -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self, admit: Admit | None = None, jobs: Iterable[str] | None = None,
                  limit: int = STREAM_QUEUE_SIZE, *, max_bytes: int) -> Iterator[Stream]:
        """A stream of the events that ``admit`` accepts (all when None), of the ``jobs``
        given (all jobs when None), from now until the ``with`` block ends."""
        stream = Stream(admit, None if jobs is None else frozenset(jobs), limit, max_bytes)
        self._add(stream)
        try:
            yield stream
        finally:
            self._remove(stream)

    @contextlib.contextmanager
    def client_slot(self, client: str, limit: int) -> Iterator[None]:
        """One of ``client``'s at most ``limit`` streams (0: no limit) in this gateway, for
        the ``with`` block; TooManyRequests (429, Retry-After) when it holds them all."""
        held = self._per_client[client]
        if limit and held >= limit:
            raise TooManyRequests(
                f"{client} has {held} event streams open in this gateway, its limit "
                f"(max_streams_per_client); close one, or retry in {STREAM_RETRY_AFTER_S} s",
                retry_after_s=STREAM_RETRY_AFTER_S,
                details={"client": client, "open": held, "limit": limit})
        self._per_client[client] += 1
        try:
            yield
        finally:
            self._per_client[client] -= 1
            if not self._per_client[client]:
                del self._per_client[client]

    @property
    def streaming(self) -> int:
        return len(self._all_streams())

    def end_streams(self) -> None:
        """Every stream gets :attr:`Notice.CLOSED` (the gateway is stopping)."""
        for stream in self._all_streams():
            self._remove(stream)
            stream._end(Notice.CLOSED)

    def _add(self, stream: Stream) -> None:
        if stream.jobs is None:
            self._streams.add(stream)
        else:
            for job_id in stream.jobs:
                self._job_streams[job_id].add(stream)

    def _remove(self, stream: Stream) -> None:
        self._streams.discard(stream)
        for job_id in stream.jobs or ():
            by_job = self._job_streams.get(job_id)
            if by_job is not None:
                by_job.discard(stream)
                if not by_job:
                    del self._job_streams[job_id]

    def _all_streams(self) -> list[Stream]:
        streams = set(self._streams)
        for by_job in self._job_streams.values():
            streams.update(by_job)
        return list(streams)

    def _deliver(self, stream: Stream, item: HubEvent | Notice) -> None:
        if not stream._offer(item):
            _REPEATED.log(logging.WARNING, "dropped", "dropping an event stream whose client "
                          "fell behind (%d events, or %d bytes, unsent)", stream.limit,
                          stream.max_bytes)
            self._remove(stream)
            stream._end(Notice.DROPPED)

    # -- the subscription --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                # Once per outage: reconnecting every RECONNECT_DELAY_S is not news.
                self._subscription.failed(exc)
            self._wake_all()
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _listen(self) -> None:
        subscription = await subscribe(self.redis, events_channel(self.redis))
        try:
            self._subscription.ok()
            self._subscribed.set()
            self._wake_all()
            for stream in self._all_streams():
                self._deliver(stream, Notice.RESYNC)
            subscription.deliver_to(self._dispatch)
            await subscription.lost()
        finally:
            subscription.close()

    def _dispatch(self, raw: bytes | str) -> None:
        if not (self._waiters or self._streams or self._job_streams):
            # Nobody here listens: not decoded. A gateway taking async submits hears every event
            # it publishes (and its workers'): decoding them cost ~10% of its CPU a submit. A
            # stream opened later looks up, once, the origin of a job it never saw begin.
            return
        event = self._decode(raw)
        if event is None:
            return
        if event.name in TERMINAL_EVENTS:
            for signal in self._waiters.get(event.job_id or "", ()):
                signal.ended_with = event.data
                signal.set()
        targets = list(self._streams)
        if event.job_id is not None:
            targets.extend(self._job_streams.get(event.job_id, ()))
        for stream in targets:
            if stream.admit is None or stream.admit(event):
                self._deliver(stream, event)
        if event.name in TERMINAL_EVENTS and event.job_id is not None:
            # Its streams have the origin with the event; nothing of the job is expected after.
            self.origins.forget(event.job_id)

    def _decode(self, raw: bytes | str) -> HubEvent | None:
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            data: Any = decode(text)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            _REPEATED.log(logging.WARNING, "not json", "ignoring an event that is not JSON: %r",
                          raw[:200])
            return None
        name = data.get("event") if isinstance(data, dict) else None
        if not isinstance(name, str):
            _REPEATED.log(logging.WARNING, "no name", "ignoring an event that names no event: "
                          "%r", raw[:200])
            return None
        job_id = data.get("id")
        if not isinstance(job_id, str):
            job_id = None
        origin = None
        if job_id is not None:
            function, context = data.get("function"), data.get("context")
            if isinstance(function, str) and isinstance(context, str):
                submitter = data.get("submitter")
                self.origins.remember(job_id, Origin(
                    sys.intern(function), sys.intern(context),
                    sys.intern(submitter) if isinstance(submitter, str) else None))
            origin = self.origins.get(job_id)
        self._seq += 1
        return HubEvent(self._seq, name, job_id, data, text, origin)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for signal in waiters:
                signal.set()

