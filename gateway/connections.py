"""The gateway's HTTP server, bounded against slow, stalled and too many clients.

aiohttp alone reads request headers for as long as a client cares to trickle them (a slowloris
holds a connection, and a file descriptor, for the whole keep-alive timeout) and accepts
connections until the process runs out of descriptors, after which even healthy requests fail.
:func:`make_runner` builds the one server that ``serve`` and the tests run, with:

- ``header_timeout_s``: a request's line and headers must arrive within this long of the
  connection opening, or of their first byte on a kept-alive connection; else 408 and close.
- ``idle_timeout_s``: a kept-alive connection with no request in flight is closed after this
  long (aiohttp's keep-alive timeout).
- ``max_connections``: a connection beyond this many gets 503 with Retry-After at once and is
  closed; the limit is lowered to fit the process's file descriptors if it would not.

Repeated errors from aiohttp's request handling (bad requests, resets) go through a
:class:`LogThrottle`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from sparkgate.gateway.errors import MAX_LINE_BYTES, protocol_error
from sparkgate.gateway.log_throttle import LogThrottle
from sparkgate.jobs.settings import Settings

log = logging.getLogger("sparkgate.connections")

#: A refused connection is kept this long at most for its 503 to reach the client before the
#: close (closing at once, with its request unread, may reset it and lose the answer)...
REFUSED_LINGER_S = 1.0
#: ...but no more than this many at once: in a flood, the rest are closed as soon as their 503
#: is written.
MAX_LINGERING = 64
#: asyncio accepts up to the listen backlog (aiohttp's default, 128) connections at each turn
#: of the loop, and a refused one's descriptor is closed only a few turns later: a flood holds
#: up to about three such batches beyond the counted connections.
ACCEPT_BURST = 3 * 128
#: Descriptors kept for everything but counted client connections: the gateway's own (database
#: pool, Redis, the files it reads, the supervisor's pipes to its workers), the refused ones
#: lingering, and an accept burst.
FD_RESERVE = 128 + MAX_LINGERING + ACCEPT_BURST
RETRY_AFTER_S = 1

_THROTTLE = LogThrottle(log)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    idle_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.header_timeout_s, settings.idle_timeout_s,
                   fit_to_descriptors(settings.max_connections))


def make_runner(app: web.Application, settings: Settings, **kwargs: Any) -> web.AppRunner:
    """The runner of ``app`` with every server option ``serve`` uses; ``kwargs`` go to
    :class:`aiohttp.web.AppRunner` (``handle_signals``, ``shutdown_timeout``...)."""
    return GatewayRunner(app, ConnectionLimits.from_settings(settings), **kwargs)


def fit_to_descriptors(max_connections: int) -> int:
    """``max_connections``, lowered (with a warning) to what the descriptor limit allows once
    a soft limit short of it is raised toward it, as far as the hard limit lets it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    fitted = max(1, soft - FD_RESERVE)
    log.warning("max_connections lowered from %d to %d: the process may open %d files "
                "(ulimit -n), %d of which are kept for the gateway's own use",
                max_connections, fitted, soft, FD_RESERVE)
    return fitted


def error_bytes(status: HTTPStatus, code: str, message: str, retry_after_s: int | None = None,
                ) -> bytes:
    """A whole HTTP response in the gateway's error shape, for a connection that has no
    request object to answer (the request never arrived, or was never read)."""
    body = json.dumps({"error": {"code": code, "message": message, "details": None}}).encode()
    head = [f"HTTP/1.1 {status.value} {status.phrase}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]
    if retry_after_s is not None:
        head.append(f"Retry-After: {retry_after_s}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GatewayRunner(web.AppRunner):
    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        # A client that hangs up ends its request: no waiter outlives its caller.
        kwargs.setdefault("handler_cancellation", True)
        super().__init__(app, keepalive_timeout=limits.idle_timeout_s, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self.limits)


class GuardedServer(web.Server):
    """aiohttp's server (the protocol factory of the listening socket), its connections
    counted and each served by a :class:`GuardedHandler`."""

    def __init__(self, plain: web.Server, limits: ConnectionLimits) -> None:
        # aiohttp builds its Server inside AppRunner with the app's own handler arguments;
        # they are taken over as they are.
        super().__init__(plain.request_handler, request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation, loop=plain._loop,
                         **plain._kwargs)
        self.limits = limits
        self.lingering = 0  # refused connections waiting for their client to read the 503

    @property
    def full(self) -> bool:
        return len(self._connections) >= self.limits.max_connections

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedHandler(RequestHandler):
    """One connection: refused when the server is full, closed when a request's headers take
    longer than the header timeout, its errors logged through the throttle."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.limits = manager.limits
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        # The length of the request line being read, while its end is not seen: tells a
        # request line that is too long (414) from a header that is (431).
        self._line_bytes = 0
        self._line_read = False
        # Whether the request line of the last message parsed (or refused) was too long, taken
        # as the parser finished with it: more bytes of the same refused request may arrive
        # before its answer is made, and would start measuring a line anew.
        self._parsed_line_too_long = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(self._manager, GuardedServer)
        if self._manager.full:
            self._refuse(transport)  # type: ignore[arg-type]
            return
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._between_requests():
            self._arm_header_timer()
        self._header_bytes += len(data)
        self._measure_request_line(data)
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._parsed_line_too_long = self._line_bytes > MAX_LINE_BYTES
            self._disarm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        key = (args[0] if args else "", type(exc).__name__, self._peer_host())
        _THROTTLE.log(logging.ERROR, key, *args, exc_info=exc)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None,
                     ) -> web.StreamResponse:
        """aiohttp's plain-text answer to what its parser refuses, in the gateway's shape."""
        super().handle_error(request, status, exc, message)  # logs; raises if too late to answer
        response = protocol_error(status, exc, self._parsed_line_too_long)
        response.force_close()
        return response

    def _measure_request_line(self, data: bytes) -> None:
        if self._line_read:
            return
        end = data.find(b"\n")
        self._line_read = end >= 0
        self._line_bytes += len(data) if end < 0 else end

    def _refuse(self, transport: asyncio.Transport) -> None:
        """503 at once, then close once the client has read it (or after a short linger)."""
        server = self._manager
        assert isinstance(server, GuardedServer)
        self._manager = None  # never served, never counted: connection_lost has nothing to do
        self._close = True  # what the client sends is ignored
        _THROTTLE.log(logging.WARNING, "full", "refusing connections: max_connections (%d) "
                      "are open", self.limits.max_connections)
        transport.write(error_bytes(
            HTTPStatus.SERVICE_UNAVAILABLE, "unavailable",
            f"the gateway has its limit of {self.limits.max_connections} connections open "
            "(max_connections); retry shortly", RETRY_AFTER_S))
        if server.lingering >= MAX_LINGERING or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # the client gave up already (ENOTCONN)
            transport.close()
            return
        server.lingering += 1

        def close() -> None:
            server.lingering -= 1
            transport.close()

        self._loop.call_later(REFUSED_LINGER_S, close)

    def _between_requests(self) -> bool:
        return not (self._request_in_progress or self._messages or self._upgraded
                    or self._payload_parser is not None or self._close or self._force_close)

    def _arm_header_timer(self) -> None:
        self._header_bytes = 0
        self._line_bytes = 0
        self._line_read = False
        self._header_timer = self._loop.call_later(self.limits.header_timeout_s,
                                                   self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        waiting = self._waiter is not None and not self._waiter.done()
        if not waiting or self.transport is None:
            return  # a request is in hand: what it does is not the header timeout's business
        _THROTTLE.log(logging.INFO, ("header timeout", self._peer_host()),
                      "closed a connection from %s: no complete request headers within "
                      "header_timeout_s (%gs)", self._peer_host(), self.limits.header_timeout_s)
        if self._header_bytes:  # a client that began a request is told why it ends
            self.transport.write(error_bytes(
                HTTPStatus.REQUEST_TIMEOUT, "request_timeout",
                f"the request's line and headers did not arrive within "
                f"{self.limits.header_timeout_s:g}s (header_timeout_s)"))
        self.force_close()

    def _peer_host(self) -> str:
        peer = self.peername
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)
