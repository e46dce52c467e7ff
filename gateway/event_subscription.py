"""The gateway's connection subscribed to the job events channel, read without redis-py.

Every gateway process reads each of a job's events (six for a job that runs); through
redis-py's asyncio pub/sub each cost ~55 us of the gateway's CPU (its stream reader, its
parser wrapper, a dict per message), about a third of a millisecond for each sync call. Here
the socket's bytes go straight to hiredis's parser (the one redis-py uses underneath) and each
message's payload to the hub. redis-py still says how to reach Redis: the URL as it parsed it
(host and port or unix socket, TLS settings, credentials).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError

#: How long connecting and subscribing may take when the URL sets no socket_connect_timeout.
CONNECT_TIMEOUT_S = 10.0

OnMessage = Callable[[bytes], None]


class Subscription(asyncio.Protocol):
    """One subscribed connection. Messages that arrive before :meth:`deliver_to` names their
    reader are held, so the reader sees them in order after whatever it does first."""

    def __init__(self) -> None:
        self._parser = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._transport: asyncio.Transport | None = None
        self._on_message: OnMessage | None = None
        self._held: list[bytes] = []
        self._replies: list[asyncio.Future[Any]] = []
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        while (reply := self._parser.gets()) is not False:
            if type(reply) is list and reply and reply[0] == b"message":
                if self._on_message is None:
                    self._held.append(reply[2])
                else:
                    self._on_message(reply[2])
            elif self._replies:
                self._replies.pop(0).set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError(f"the event subscription's connection closed: "
                                     f"{exc or 'by the server'}")
        for waiting in self._replies:
            if not waiting.done():
                waiting.set_exception(error)
        self._replies.clear()
        if not self._lost.done():
            self._lost.set_exception(error)

    # -- use ---------------------------------------------------------------------------------

    async def command(self, *args: str) -> Any:
        """Send a command and return its reply; a Redis error reply is raised."""
        assert self._transport is not None
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies.append(reply)
        # hiredis's stub types the tuple as of one element; it takes any number.
        self._transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        answer = await reply
        if isinstance(answer, ResponseError):
            raise answer
        return answer

    def deliver_to(self, on_message: OnMessage) -> None:
        """From now on each message's payload goes to ``on_message`` as it arrives."""
        self._on_message = on_message
        held, self._held = self._held, []
        for payload in held:
            on_message(payload)

    async def lost(self) -> None:
        """Returns never: raises redis's ConnectionError once the connection is gone."""
        await asyncio.shield(self._lost)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if not self._lost.done():
            self._lost.cancel()
        elif not self._lost.cancelled():
            self._lost.exception()  # seen: nobody may be waiting on it any more


async def subscribe(redis: aioredis.Redis, channel: str) -> Subscription:
    """A connection to ``redis``'s server subscribed to ``channel``."""
    pool = redis.connection_pool
    options = pool.connection_kwargs
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(options.get("socket_connect_timeout") or CONNECT_TIMEOUT_S):
        if "path" in options:
            _, subscription = await loop.create_unix_connection(
                Subscription, options["path"])
        else:
            ssl = None
            if issubclass(pool.connection_class, aioredis.SSLConnection):
                ssl = pool.connection_class(**options).ssl_context.get()
            _, subscription = await loop.create_connection(
                Subscription, options.get("host", "localhost"), options.get("port", 6379),
                ssl=ssl)
        try:
            if options.get("password") is not None:
                username = options.get("username")
                await subscription.command("AUTH", *([username] if username else []),
                                           options["password"])
            await subscription.command("SUBSCRIBE", channel)
        except BaseException:
            subscription.close()
            raise
    return subscription


