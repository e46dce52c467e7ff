"""Slow, stalled and too many clients are bounded (gateway/connections.py, the event streams'
limits in gateway/events_hub.py, gateway/log_throttle.py).

Most tests run the app on a real TCP port with the server ``serve`` builds
(:func:`gateway.connections.make_runner`) and talk to it over raw sockets, as a slowloris or a
stalled client would; the slow ones drive a real ``sparkgate serve`` and measure it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import resource
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from sparkgate.gateway.app import create_app
from sparkgate.gateway.connections import FD_RESERVE, make_runner
from sparkgate.gateway.log_throttle import LogThrottle
from sparkgate.gateway.resources import HUB
from sparkgate.jobs.events import encode, events_channel
from sparkgate.jobs.keys import KeyStore
from sparkgate.jobs.settings import Settings
from tests.conftest import free_port
from tests.server_process import Server, running_server, stop, wait_until

API = "/v2/api"
STATUS = b"GET /v2/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


# ---------------------------------------------------------------------------------------------
# A real server on a real port, and raw clients


@dataclass(frozen=True)
class Served:
    app: web.Application
    port: int


@contextlib.asynccontextmanager
async def serving(settings: Settings, redis_url: str) -> AsyncIterator[Served]:
    runner = make_runner(create_app(settings, redis_url), settings)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Served(runner.app, port)
    finally:
        await runner.cleanup()


@pytest.fixture
async def gateway(tmp_path: Path, sqlite_url: str, redis_url: str):
    """Starts the app with these settings replaced; the connection tests need no PostgreSQL
    run of their own: they store nothing."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(**overrides: Any) -> Served:
            settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url,
                                redis_url=redis_url, **overrides)
            return await stack.enter_async_context(serving(settings, redis_url))

        yield start


async def connect(port: int, local_host: str = "127.0.0.1",
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(local_host, 0))


async def read_until_closed(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Everything the server sends until it closes; TimeoutError if it does not in time."""
    async with asyncio.timeout(timeout_s):
        return await reader.read()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
               if k}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


def parse_error(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


# ---------------------------------------------------------------------------------------------
# Header and idle timeouts


async def test_headers_trickled_past_the_header_timeout_get_408_and_a_close(gateway):
    served = await gateway(header_timeout_s=1)
    reader, writer = await connect(served.port)
    writer.write(b"GET /v2/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(50):  # a header line every 0.2 s: never done, never silent
                await asyncio.sleep(0.2)
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()

    trickling = asyncio.create_task(trickle())
    answer = await read_until_closed(reader, timeout_s=5)
    elapsed = time.monotonic() - started
    trickling.cancel()
    status, _, body = parse_error(answer)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert "header_timeout_s" in body["error"]["message"]
    assert 0.8 < elapsed < 3
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(gateway):
    served = await gateway(header_timeout_s=1)
    reader, writer = await connect(served.port)
    started = time.monotonic()
    assert await read_until_closed(reader, timeout_s=5) == b""  # nothing to answer: closed
    assert 0.8 < time.monotonic() - started < 3
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(gateway):
    served = await gateway(header_timeout_s=30, idle_timeout_s=1)
    reader, writer = await connect(served.port)
    writer.write(STATUS)
    status, _, _ = await read_response(reader)
    assert status == 200
    done = time.monotonic()
    assert await read_until_closed(reader, timeout_s=5) == b""
    assert 0.8 < time.monotonic() - done < 3
    writer.close()


async def test_the_header_timeout_spares_slow_bodies_streams_and_kept_alive_clients(gateway):
    served = await gateway(header_timeout_s=1, idle_timeout_s=30)
    # A body that takes twice the header timeout: its headers came in time.
    reader, writer = await connect(served.port)
    body = json.dumps({"name": "slowly-sent", "sparkConf": {"spark.master": "local[1]"}})
    writer.write(f"POST {API}/contexts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode())
    for piece in (body[:10], body[10:20], body[20:]):
        await asyncio.sleep(0.7)
        writer.write(piece.encode())
    status, _, answer = await read_response(reader)
    assert status == 200, answer
    # The same connection, kept alive: quiet for longer than the header timeout, then a request.
    await asyncio.sleep(1.5)
    writer.write(STATUS)
    assert (await read_response(reader))[0] == 200
    writer.close()
    # An event stream lasts as long as the client wants it.
    async with (aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{served.port}{API}/events") as response):
        assert await response.content.readuntil(b"\n\n") == b": connected\n\n"
        # (Pub/sub spans Redis databases: other tests' events may come meanwhile.)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                while await response.content.readany():
                    pass
        assert not response.content.at_eof()


# ---------------------------------------------------------------------------------------------
# The overall connection limit


async def test_connections_beyond_the_limit_get_503_at_once_and_the_rest_keep_working(gateway):
    served = await gateway(max_connections=20, header_timeout_s=30)
    clients = [await connect(served.port) for _ in range(50)]

    async def first_bytes(reader: asyncio.StreamReader) -> bytes:
        try:
            return await read_until_closed(reader, timeout_s=2)
        except TimeoutError:
            return b""  # held open, waiting for a request

    answers = await asyncio.gather(*(first_bytes(reader) for reader, _ in clients))
    refused = [parse_error(a) for a in answers if a]
    held = [c for c, a in zip(clients, answers, strict=True) if not a]
    assert (len(held), len(refused)) == (20, 30)
    for status, headers, body in refused:
        assert status == 503
        assert headers["retry-after"] == "1"
        assert body["error"]["code"] == "unavailable"
        assert "max_connections" in body["error"]["message"]

    reader, writer = held[0]  # a client that holds a slot is served as usual
    writer.write(STATUS)
    assert (await read_response(reader))[0] == 200
    for _, writer in held:
        writer.close()

    async def fresh_status() -> int:
        async with (aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{served.port}{API}/status") as response):
            return response.status

    # The slots free as their handlers end: at once, give or take a turn of the loop.
    async with asyncio.timeout(5):
        while (status := await fresh_status()) != 200:
            assert status == 503
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Streams per client


async def open_ws(session: aiohttp.ClientSession, url: str, **kw: Any) -> Any:
    try:
        return await session.ws_connect(url, **kw)
    except aiohttp.WSServerHandshakeError as exc:
        return exc


async def test_a_key_at_its_stream_limit_gets_429_while_another_key_connects(
        db_url: str, tmp_path: Path, redis_url: str, engine):
    keys = KeyStore(engine)
    alice = keys.create("alice", "read").token
    bob = keys.create("bob", "read").token
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, redis_url=redis_url,
                        auth_enabled=True, max_streams_per_client=2)
    async with serving(settings, redis_url) as served, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{served.port}{API}"
        first = await session.ws_connect(f"{base}/ws/all", headers=bearer(alice))
        second = await session.get(f"{base}/events", headers=bearer(alice))
        assert second.status == 200

        over = await session.get(f"{base}/events", headers=bearer(alice))
        assert over.status == 429
        assert over.headers["Retry-After"] == "5"
        error = (await over.json())["error"]
        assert error["code"] == "too_many_requests"
        assert error["details"] == {"client": "key:alice", "open": 2, "limit": 2}
        refused = await open_ws(session, f"{base}/ws/all?access_token={alice}")
        assert isinstance(refused, aiohttp.WSServerHandshakeError) and refused.status == 429

        others = await session.ws_connect(f"{base}/ws/all", headers=bearer(bob))
        await first.close()  # a slot freed (once its handler ends) is a slot to take again
        async with asyncio.timeout(5):
            while isinstance(again := await open_ws(session, f"{base}/ws/all",
                                                    headers=bearer(alice)), Exception):
                await asyncio.sleep(0.1)
        second.close()
        await others.close()
        await again.close()


async def test_without_authentication_streams_are_counted_per_client_address(gateway):
    served = await gateway(max_streams_per_client=1)
    url = f"http://127.0.0.1:{served.port}{API}/ws/all"
    async with aiohttp.ClientSession() as session:
        held = await session.ws_connect(url)
        refused = await open_ws(session, url)
        assert isinstance(refused, aiohttp.WSServerHandshakeError) and refused.status == 429
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as elsewhere:
        other = await elsewhere.ws_connect(url)
        await other.close()
    await held.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------------------------
# Clients that stop reading


def big_event(i: int, job_id: str = "job-1", size: int = 16 * 1024) -> str:
    return encode({"event": "logs", "id": job_id, "events": [
        {"from": job_id, "message": f"{i}:" + "x" * size, "timeStamp": i, "level": "INFO"}]})


async def stalled_ws(port: int, path: str = f"{API}/ws/all?withLogs=true",
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that completes the handshake and then never reads."""
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer, head = await stalled_client(port, (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"))
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def stalled_client(port: int, request: str,
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A client that sends ``request``, reads the response's head and then stops reading."""
    sock = socket.socket()
    # Before connecting, so the window is small from the start (and not below one segment).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request.encode())
    return reader, writer, await reader.readuntil(b"\r\n\r\n")


async def test_a_stream_over_its_byte_limit_is_dropped_and_told_why(gateway, redis_url: str):
    served = await gateway(stream_buffer_max_bytes=64 * 1024)
    hub = served.app[HUB]
    aredis = aioredis.Redis.from_url(redis_url)
    job_id = f"job-{os.urandom(4).hex()}"
    async with aiohttp.ClientSession() as session:
        reading = await session.ws_connect(
            f"http://127.0.0.1:{served.port}{API}/ws/all?withLogs=true")
        stalled, _ = await stalled_ws(served.port)
        await wait_until_async(lambda: hub.streaming == 2)
        sent = 0
        while hub.streaming == 2:  # until the kernel's buffers are full, and then 64 KB more
            assert sent < 1000, "16 MB sent and the stalled stream is still there"
            sent += 1
            await aredis.publish(events_channel(aredis), big_event(sent, job_id))
            while (got := await reading.receive_json(timeout=10))["id"] != job_id:
                pass
            assert got["events"][0]["timeStamp"] == sent  # the one that reads misses nothing
        await reading.close()

    # Read at last, the stalled client gets what was sent before the drop, the notice, the close.
    frames = [frame async for frame in ws_frames(stalled)]
    texts = [json.loads(payload) for opcode, payload in frames if opcode == 1]
    assert texts[-1]["event"] == "dropped"
    assert "did not keep up" in texts[-1]["reason"]
    opcode, payload = frames[-1]
    assert (opcode, int.from_bytes(payload[:2]), payload[2:]) == (8, 1013, b"too slow")
    await aredis.aclose()


async def test_an_sse_client_that_stops_reading_is_dropped_too(gateway, redis_url: str):
    served = await gateway(stream_buffer_max_bytes=64 * 1024)
    hub = served.app[HUB]
    aredis = aioredis.Redis.from_url(redis_url)
    reader, writer, head = await stalled_client(
        served.port, f"GET {API}/events?withLogs=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    await wait_until_async(lambda: hub.streaming == 1)
    sent = 0
    while hub.streaming == 1:
        assert sent < 1000, "16 MB sent and the stalled stream is still there"
        sent += 1
        await aredis.publish(events_channel(aredis), big_event(sent))
        await asyncio.sleep(0)  # the hub takes each event before the next
    body = b""
    async with asyncio.timeout(20):  # read at last: what it held, the notice, the last chunk
        while not body.endswith(b"\r\n0\r\n\r\n"):
            body += await reader.read(65536)
    assert b"event: dropped\n" in body[-2000:]
    writer.close()
    await aredis.aclose()


async def ws_frames(reader: asyncio.StreamReader) -> AsyncIterator[tuple[int, bytes]]:
    """The server's (unmasked) WebSocket frames as (opcode, payload), up to the close frame."""
    async with asyncio.timeout(20):
        while True:
            first, second = await reader.readexactly(2)
            length = second & 0x7F
            if length >= 126:
                length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8))
            frame = (first & 0x0F, await reader.readexactly(length))
            yield frame
            if frame[0] == 8:
                return


async def wait_until_async(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Logging repeated errors


def test_repeated_errors_are_logged_a_few_times_then_summed_up(caplog):
    throttle = LogThrottle(logging.getLogger("sparkgate.test"), every_s=0.5, burst=3)
    with caplog.at_level(logging.WARNING, logger="sparkgate.test"):
        for _ in range(100):
            throttle.log(logging.WARNING, "reset", "connection reset by %s", "10.0.0.1")
        throttle.log(logging.WARNING, "other", "another kind")
        time.sleep(0.6)
        throttle.log(logging.WARNING, "reset", "connection reset by %s", "10.0.0.1")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["connection reset by 10.0.0.1"] * 3 + [
        "another kind",
        "connection reset by 10.0.0.1 (suppressed 97 similar in the 0.5s before)"]


async def test_a_flood_of_bad_requests_from_one_source_is_a_few_log_lines(gateway, caplog):
    served = await gateway()
    with caplog.at_level(logging.DEBUG):
        for _ in range(50):
            reader, writer = await connect(served.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad header line\r\n\r\n")
            status, _, _ = await read_response(reader)
            assert status == 400
            writer.close()
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING
              and "Error handling request" in r.getMessage()]
    assert 1 <= len(logged) <= 3


# ---------------------------------------------------------------------------------------------
# A real `sparkgate serve`


def limit_descriptors(count: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
    return apply


DESCRIPTORS = 1024


@pytest.mark.slow
def test_a_connection_flood_never_exhausts_descriptors_nor_breaks_status(tmp_path: Path):
    """With 1,024 descriptors, serve fits its connection limit to them: a flood of 1,200
    connections is refused beyond it, and /status keeps answering on a kept-alive
    connection and on new ones."""
    server = start_serve(tmp_path, {"SPARKGATE_START_WORKERS": "false",
                                    "SPARKGATE_DEPLOY_EXAMPLES": "false"},
                         preexec_fn=limit_descriptors(DESCRIPTORS))
    try:
        kept = socket.create_connection(("127.0.0.1", server.port))
        flood = []
        deadline = time.monotonic() + 30
        while len(flood) < 1200 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # a connection the server could not take
                flood.append(socket.create_connection(("127.0.0.1", server.port), timeout=1))
        for _ in range(3):
            kept.sendall(STATUS)
            assert raw_status(kept) == 200
        open_files = psutil.Process(server.process.pid).num_fds()
        for sock in flood:
            sock.close()
        assert server.get("/status").status_code == 200
        assert open_files < DESCRIPTORS
        log = server.log.read_text()
        assert f"max_connections lowered from 4096 to {DESCRIPTORS - FD_RESERVE}" in log
        assert log.count("refusing connections") <= 3
        assert "Traceback" not in log
        kept.close()
    finally:
        stop(server)


def raw_status(sock: socket.socket) -> int:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1])


def start_serve(workdir: Path, env: dict[str, str], **popen: Any) -> Server:
    """running_server's start, with Popen options of the test's own."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    full_env["SPARKGATE_PROCESSES"] = "1"  # one gateway process, as the tests expect
    full_env.update({"SPARKGATE_DATA_DIR": str(workdir / "data"), "SPARKGATE_PORT": str(port),
                     **env})
    log = workdir / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(["sparkgate", "serve"], env=full_env, cwd=workdir,
                                   stdout=out, stderr=subprocess.STDOUT, **popen)
    server = Server(f"http://127.0.0.1:{port}", port, process, log, workdir / "data", full_env)
    wait_until(lambda: _answers(server), 120, "serve answers")
    return server


def _answers(server: Server) -> bool:
    assert server.process.poll() is None, server.log.read_text()
    try:
        return server.get("/status").status_code == 200
    except OSError:
        return False


@pytest.mark.slow
async def test_stalled_websocket_clients_keep_the_gateway_memory_bounded(tmp_path: Path,
                                                                          redis_url: str):
    """200 WebSocket clients that never read while 16 KB events flow for 15 s: each holds
    at most stream_buffer_max_bytes, so the gateway grows by tens of MB, not by the events."""
    env = {"SPARKGATE_START_WORKERS": "false", "SPARKGATE_DEPLOY_EXAMPLES": "false",
           "SPARKGATE_REDIS_URL": redis_url, "SPARKGATE_STREAM_BUFFER_MAX_BYTES": "65536",
           "SPARKGATE_MAX_STREAMS_PER_CLIENT": "0"}
    with running_server(tmp_path, env, wait_for_worker=False) as server:
        gateway = psutil.Process(server.process.pid)
        clients = [await stalled_ws(server.port) for _ in range(200)]
        before = gateway.memory_info().rss
        aredis = aioredis.Redis.from_url(redis_url)
        peak, slowest_status = before, 0.0
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 15:
            for _ in range(50):
                i += 1
                await aredis.publish(events_channel(aredis), big_event(i))
            await asyncio.sleep(0.05)
            peak = max(peak, gateway.memory_info().rss)
            asked = time.monotonic()
            status = await asyncio.to_thread(server.get, "/status")
            assert status.status_code == 200
            slowest_status = max(slowest_status, time.monotonic() - asked)
        await aredis.aclose()
        growth_mb = (peak - before) / 2**20
        print(f"events {i}, rss before {before / 2**20:.0f} MB, peak growth {growth_mb:.0f} MB, "
              f"slowest /status {slowest_status * 1000:.0f} ms")
        assert growth_mb < 40
        assert slowest_status < 2
        assert server.log.read_text().count("dropping an event stream") <= 6
        for _, writer in clients:
            writer.close()
