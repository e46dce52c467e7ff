"""Live job events: Mist's WebSockets (``/v2/api/ws/all``, ``/v2/api/ws/jobs/{id}``) and
Server-Sent Events (``/v2/api/events``), all fed by the gateway's one subscription (EventHub).

Every message is a job event exactly as published (jobs/events.py): ``initialized``, ``queued``,
``worker-assigned``, ``started``, ``cancelling``, ``cancelled``, ``finished``, ``failed``,
``logs`` (only with ``withLogs=true``) and sparkgate's ``progress``; plus, from the stream
itself, ``keep-alive`` and the final ``dropped`` notice (a client too slow to keep up: more
than ``stream_buffer_max_bytes`` unsent). A stream is live from the moment its response starts:
nothing is replayed. One client holds at most ``max_streams_per_client`` streams at once per
gateway: an API key (or JWT subject) with authentication on, an address with it off.

Filters by function or context need each event's job's function and context, and a caller who
sees only its own jobs (a submit key: docs/security.md, Tenancy) needs its owner; events from
workers carry none of them (a worker's log and progress paths know only the job id). The hub learns
them from ``initialized`` events and the rest are looked up once in the database; adding the
fields to every published event would need the worker's log and progress capture to carry them
too, for a saving of one read per job per gateway, and only for jobs that began before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web

from sparkgate.gateway.auth import identity, visible
from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.events_hub import (
    STREAM_QUEUE_SIZE,
    EventHub,
    HubEvent,
    Notice,
    Origin,
    Stream,
)
from sparkgate.gateway.log_throttle import LogThrottle
from sparkgate.gateway.openapi import JOB_ID_PARAM, filter_param, ok, param, use
from sparkgate.gateway.params import query_bool
from sparkgate.gateway.resources import HUB, SETTINGS, STORE
from sparkgate.gateway.routing import EVENTS, Endpoints, Op
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import BadRequest, NotFound
from sparkgate.jobs.events import TERMINAL_EVENTS, encode, lifecycle_event
from sparkgate.jobs.store import Job, Store

log = logging.getLogger("sparkgate.events")

endpoints = Endpoints()

_REPEATED = LogThrottle(log)

#: Mist's keep-alive period on WebSockets.
WS_KEEPALIVE_S = 60.0
#: Comments on SSE streams, often enough for proxies that cut idle connections at 30 s or more.
SSE_KEEPALIVE_S = 15.0
#: A client that takes longer than this to accept one message is gone: its connection is cut.
SEND_TIMEOUT_S = 30.0
#: Values one filter (``job``, ``function``, ``context``) may list.
MAX_FILTER_VALUES = 100

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
DROPPED_REASON = "the client did not keep up with the events; reconnect and re-read the jobs"

# A client (API key; address with authentication off) holds max_streams_per_client.
_TOO_MANY = {"429": use("TooManyRequests")}
_UPGRADE = {"101": ok(None, "switched to a WebSocket: one JSON job event per message, "
                            "`keep-alive` every 60 s"),
            "400": use("BadRequest"), **_TOO_MANY}


@dataclass(frozen=True)
class StreamLimits:
    ws_keepalive_s: float = WS_KEEPALIVE_S
    sse_keepalive_s: float = SSE_KEEPALIVE_S
    queue_size: int = STREAM_QUEUE_SIZE
    send_timeout_s: float = SEND_TIMEOUT_S


#: Set on the app to change the defaults (tests shorten the keep-alives, shrink the queue).
STREAM_LIMITS = web.AppKey("stream_limits", StreamLimits)


@dataclass(frozen=True)
class EventFilter:
    """Which events a client wants: logs or not, and (SSE) only some jobs, functions,
    contexts. Values of one filter are alternatives; different filters must all hold."""

    with_logs: bool = False
    jobs: frozenset[str] | None = None
    functions: frozenset[str] | None = None
    contexts: frozenset[str] | None = None
    # Not the client's choice: the submitter whose jobs alone its identity sees.
    owner: str | None = None

    @property
    def by_origin(self) -> bool:
        return self.functions is not None or self.contexts is not None or self.owner is not None

    def admits(self, event: HubEvent) -> bool:
        """In the hub, at once: rejects what can be told without a lookup."""
        if event.name == "logs" and not self.with_logs:
            return False
        return not (self.by_origin and event.origin is not None
                    and not self.origin_matches(event.origin))

    def origin_matches(self, origin: Origin | None) -> bool:
        if origin is None:
            return False
        return ((self.functions is None or origin.function in self.functions)
                and (self.contexts is None or origin.context in self.contexts)
                and (self.owner is None or origin.submitter == self.owner))


# ---------------------------------------------------------------------------------------------
# WebSockets, as Mist's


@endpoints.get("/v2/api/ws/all", EVENTS, Op(
    "wsAll", "events", "Every job's events (WebSocket)", _UPGRADE,
    parameters=[param("withLogs")],
    description="Mist's event socket. `400` for a request that is not a WebSocket handshake; "
                "`429` when the caller holds its limit of event streams "
                "(`max_streams_per_client`). A client that stops reading is sent a `dropped` "
                "event and closed (1013) once `stream_buffer_max_bytes` wait for it."))
async def ws_all(request: web.Request) -> web.StreamResponse:
    events = EventFilter(with_logs=query_bool(request, "withLogs"),
                         owner=identity(request).owner_scope)
    with _stream(request, events) as stream:
        ws = _websocket()
        await ws.prepare(request)
        _count_unsent(request, stream)
        await _serve_ws(request, ws, stream, events, None)
        return ws


@endpoints.get("/v2/api/ws/jobs/{id}", EVENTS, Op(
    "wsJob", "events", "One job's events (WebSocket)", {**_UPGRADE, "404": use("NotFound")},
    parameters=[JOB_ID_PARAM, param("withLogs")],
    description="Closes after the job's end event; for an ended job, sends it at once."))
async def ws_job(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    events = EventFilter(with_logs=query_bool(request, "withLogs"))
    store = request.app[STORE]
    # Subscribed before the read: an end that comes after it is in the stream.
    with _stream(request, events, jobs=(job_id,)) as stream:
        # An unknown job, or another owner's, is a 404, not a socket.
        job = visible(request, await blocking(store.get_job, job_id))
        ws = _websocket()
        await ws.prepare(request)
        _count_unsent(request, stream)
        if job.status.terminal:
            with contextlib.suppress(ConnectionError):
                await ws.send_str(encode(final_event(job)))
            await ws.close()
            return ws
        await _serve_ws(request, ws, stream, events, store)
        return ws


def _websocket() -> web.WebSocketResponse:
    # Clients have nothing to say on these sockets: no need to take large messages.
    return web.WebSocketResponse(max_msg_size=64 * 1024)


def final_event(job: Job) -> dict[str, Any]:
    """A terminal job's last event, rebuilt from the database."""
    event = lifecycle_event(job)
    if job.end_time is not None:
        event["time"] = job.end_time
    return event


async def _serve_ws(request: web.Request, ws: web.WebSocketResponse, stream: Stream,
                    events: EventFilter, store: Store | None) -> None:
    """Send the stream until it ends or the client leaves; the client's messages are read
    (so its close and pings are answered) and ignored."""
    sender = asyncio.create_task(_send_ws(request, ws, stream, events, store))
    try:
        async for _message in ws:
            pass
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


async def _send_ws(request: web.Request, ws: web.WebSocketResponse, stream: Stream,
                   events: EventFilter, store: Store | None) -> None:
    """``store`` is given for a job's own socket, which ends with the job. However this ends,
    the socket is closed (which also ends the reading loop of ``_serve_ws``)."""
    code: int = WSCloseCode.OK
    message = b""
    try:
        code, message = await _pump_ws(request, ws, stream, events, store)
    except ConnectionError:
        pass  # the client left, or was cut off
    except Exception:
        _failed("socket", request)
        code, message = WSCloseCode.INTERNAL_ERROR, b"internal error"
    finally:
        await ws.close(code=code, message=message)


async def _pump_ws(request: web.Request, ws: web.WebSocketResponse, stream: Stream,
                   events: EventFilter, store: Store | None) -> tuple[int, bytes]:
    """Send until the stream ends; returns how to close the socket."""
    limits = _limits(request)
    async for item in _paced(stream, limits.ws_keepalive_s):
        if item is None:
            await _send(request, limits, ws.send_str(
                encode({"event": "keep-alive", "time": now_ms()})))
            if store is not None and stream.queue.empty() and await _ended(ws, store, request):
                break
        elif isinstance(item, HubEvent):
            if not await _placed(request, events, item):
                continue
            await _send(request, limits, ws.send_str(item.text))
            if store is not None and item.name in TERMINAL_EVENTS:
                break
        elif item is Notice.RESYNC:
            if store is not None and await _ended(ws, store, request):
                break
        elif item is Notice.DROPPED:
            await _send(request, limits, ws.send_str(encode(dropped_notice())))
            return WSCloseCode.TRY_AGAIN_LATER, b"too slow"
        else:  # Notice.CLOSED
            return WSCloseCode.GOING_AWAY, b"gateway stopping"
    return WSCloseCode.OK, b""


async def _ended(ws: web.WebSocketResponse, store: Store, request: web.Request) -> bool:
    """Whether the job of this socket has ended, its end event lost (pub/sub is at most once):
    then that event is sent from the database."""
    job = await blocking(store.get_job, request.match_info["id"])
    if not job.status.terminal:
        return False
    await _send(request, _limits(request), ws.send_str(encode(final_event(job))))
    return True


# ---------------------------------------------------------------------------------------------
# Server-Sent Events


@endpoints.get("/v2/api/events", EVENTS, Op(
    "events", "events", "Job events (Server-Sent Events)",
    {"200": ok({"type": "string"}, "`id: n`, `event: <name>`, `data: <json>` per event; "
               "`: keep-alive` every 15 s; live only", "text/event-stream"),
     "400": use("BadRequest"), **_TOO_MANY},
    parameters=[filter_param("job", "only these jobs"),
                filter_param("function", "only jobs of these functions"),
                filter_param("context", "only jobs of these contexts"),
                param("withLogs")]))
async def sse(request: web.Request) -> web.StreamResponse:
    events = EventFilter(
        with_logs=query_bool(request, "withLogs"),
        jobs=query_values(request, "job"),
        functions=query_values(request, "function"),
        contexts=query_values(request, "context"),
        owner=identity(request).owner_scope,
    )
    if request.method == "HEAD":  # aiohttp would send a stream's bytes after HEAD's headers
        return web.Response(headers=SSE_HEADERS)
    limits = _limits(request)
    with _stream(request, events, jobs=events.jobs) as stream:
        response = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await response.prepare(request)
            _count_unsent(request, stream)
            # Also sends the headers (aiohttp holds them until the first bytes).
            await _send(request, limits, response.write(b": connected\n\n"))
            await _send_sse(request, response, stream, events)
            await response.write_eof()
        except ConnectionError:
            pass  # the client left, or was cut off
        except Exception:
            # The response has begun: no error response can follow; the stream just ends.
            # The path only: the query may hold an access_token.
            _failed("stream", request)
            if request.transport is not None:
                request.transport.close()
        return response


async def _send_sse(request: web.Request, response: web.StreamResponse, stream: Stream,
                    events: EventFilter) -> None:
    limits = _limits(request)
    async for item in _paced(stream, limits.sse_keepalive_s):
        if item is None:
            await _send(request, limits, response.write(b": keep-alive\n\n"))
        elif isinstance(item, HubEvent):
            if not await _placed(request, events, item):
                continue
            await _send(request, limits, response.write(sse_message(item)))
        elif item is Notice.DROPPED:
            notice = encode(dropped_notice())
            await _send(request, limits,
                        response.write(f"event: dropped\ndata: {notice}\n\n".encode()))
            return
        elif item is Notice.CLOSED:
            return


def sse_message(event: HubEvent) -> bytes:
    data = event.text
    if "\n" in data or "\r" in data:  # published pretty-printed: SSE data is one line here
        data = encode(event.data)
    name = event.name if "\n" not in event.name and "\r" not in event.name else "message"
    return f"id: {event.seq}\nevent: {name}\ndata: {data}\n\n".encode()


async def _placed(request: web.Request, events: EventFilter, event: HubEvent) -> bool:
    """Whether the stream takes an event that the hub let through unplaced (its job's origin
    was unknown when it came), once its origin is known."""
    if not events.by_origin or event.origin is not None:
        return True
    return await _origin_matches(request.app[HUB], request.app[STORE], events, event)


async def _origin_matches(hub: EventHub, store: Store, events: EventFilter,
                          event: HubEvent) -> bool:
    if event.job_id is None:
        return False
    try:
        origin = await hub.origins.resolve(event.job_id, lambda job_id: _origin_of(store, job_id))
    except Exception as exc:  # the database is unavailable: the event cannot be placed
        _REPEATED.log(logging.WARNING, ("origin", type(exc)), "event %s of job %s left out of "
                      "a filtered stream: its function and context could not be read (%s)",
                      event.name, event.job_id, exc)
        return False
    return events.origin_matches(origin)


async def _origin_of(store: Store, job_id: str) -> Origin | None:
    try:
        job = await blocking(store.get_job, job_id)
    except NotFound:
        return None
    return Origin(job.function, job.context, job.submitter)


def query_values(request: web.Request, name: str) -> frozenset[str] | None:
    """A filter's values, the parameter repeated and/or comma-separated; None when absent."""
    values = [value.strip() for raw in request.query.getall(name, [])
              for value in raw.split(",") if value.strip()]
    if not values:
        return None
    if len(values) > MAX_FILTER_VALUES:
        raise BadRequest(f"query parameter {name}: expected at most {MAX_FILTER_VALUES} values, "
                         f"got {len(values)}", {"field": name, "limit": MAX_FILTER_VALUES})
    for value in values:
        if len(value) > 255 or any(ord(c) < 0x20 or c == "\x7f" for c in value):
            raise BadRequest(
                f"query parameter {name}: expected names or ids of at most 255 characters "
                f"without control characters, got {value[:80]!r}",
                {"field": name, "expected": "names or ids", "got": value[:255]})
    return frozenset(values)


# ---------------------------------------------------------------------------------------------
# Shared


def dropped_notice() -> dict[str, Any]:
    return {"event": "dropped", "reason": DROPPED_REASON, "time": now_ms()}


async def end_streams(app: web.Application) -> None:
    """``on_shutdown``: streams end at once instead of holding the shutdown for its timeout."""
    if HUB in app:
        app[HUB].end_streams()


@contextlib.contextmanager
def _stream(request: web.Request, events: EventFilter,
            jobs: Iterable[str] | None = None) -> Iterator[Stream]:
    """The client's stream of ``events``: one of its limited slots, and a queue bounded in
    events and in bytes."""
    settings = request.app[SETTINGS]
    hub = request.app[HUB]
    with (hub.client_slot(stream_client(request), settings.max_streams_per_client),
          hub.subscribe(events.admits, jobs=jobs, limit=_limits(request).queue_size,
                        max_bytes=settings.stream_buffer_max_bytes) as stream):
        yield stream


def stream_client(request: web.Request) -> str:
    """Whose stream this is, for max_streams_per_client: with authentication off every
    caller is the same anonymous admin, so its address tells clients apart."""
    if request.app[SETTINGS].auth_enabled:
        return identity(request).client
    return f"address:{request.remote}"


def _count_unsent(request: web.Request, stream: Stream) -> None:
    """The stream's unsent bytes include what its connection holds for the client; and the
    kernel's send buffer, which a stalled client fills first, gets the same bound (else it
    grows to megabytes per client, in memory the whole host shares)."""
    transport = request.transport
    if transport is None:
        return
    stream.unsent = transport.get_write_buffer_size
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, stream.max_bytes)


def _failed(kind: str, request: web.Request) -> None:
    """A stream ended by a bug: logged with its traceback, a few times per interval."""
    _REPEATED.log(logging.ERROR, (kind, sys.exc_info()[0]), "event %s %s failed", kind,
                  request.path, exc_info=True)


def _limits(request: web.Request) -> StreamLimits:
    return request.app.get(STREAM_LIMITS) or StreamLimits()


async def _paced(stream: Stream, keepalive_s: float) -> AsyncIterator[HubEvent | Notice | None]:
    """The stream's items until a final notice (included), and None each time a keep-alive
    is due: every ``keepalive_s``, busy or not."""
    loop = asyncio.get_running_loop()
    due = loop.time() + keepalive_s
    while True:
        if loop.time() >= due:
            due = loop.time() + keepalive_s
            yield None
            continue
        try:
            async with asyncio.timeout_at(due):
                item = await stream.get()
        except TimeoutError:
            continue
        yield item
        if isinstance(item, Notice) and item.final:
            return


async def _send(request: web.Request, limits: StreamLimits, sending: Any) -> None:
    """Await one write; a client that does not take it within the send timeout is cut off."""
    try:
        async with asyncio.timeout(limits.send_timeout_s):
            await sending
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("the client stopped reading") from None
