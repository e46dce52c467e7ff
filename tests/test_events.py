"""Live job events: WebSockets (``/v2/api/ws/all``, ``/v2/api/ws/jobs/{id}``) and SSE
(``/v2/api/events``).

Fast tests run the app in process with no worker: the test acts as the worker does, creating
jobs in the real store and publishing their events on the real Redis channel. Slow tests
(marked ``slow``) drive one real ``sparkgate serve`` with a worker, as a dashboard would.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from sparkgate.gateway.app import create_app
from sparkgate.gateway.events_hub import Notice
from sparkgate.gateway.resources import HUB
from sparkgate.gateway.routes.events import STREAM_LIMITS, StreamLimits
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.events import (
    VALUE_MAX_BYTES,
    decode,
    encode,
    events_channel,
    initialized_event,
    lifecycle_event,
    logs_event,
    progress_event,
    worker_assigned_event,
)
from sparkgate.jobs.logs.lines import LogLine
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, NewJob, Store
from tests.server_process import Server, running_server

API = "/v2/api"
WAIT_S = 10  # upper bound for anything that should happen at once
WORKER = "worker-test-1"
LIFECYCLE = ["initialized", "queued", "worker-assigned", "started"]


# ---------------------------------------------------------------------------------------------
# Reading streams as a client does


async def next_ws(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = WAIT_S,
                  keepalives: bool = False) -> dict[str, Any]:
    """The next event on the socket (keep-alives skipped unless asked for)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.receive()
            assert message.type is aiohttp.WSMsgType.TEXT, message
            event = json.loads(message.data)
            if keepalives or event["event"] != "keep-alive":
                return event


async def ws_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Every event until the server closes the socket (keep-alives skipped)."""
    events = []
    async with asyncio.timeout(WAIT_S):
        async for message in ws:
            event = json.loads(message.data)
            if event["event"] != "keep-alive":
                events.append(event)
    assert ws.closed
    return events


async def sse_items(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Each SSE message: ``{"comment": text}`` or ``{"id", "event", "data"}`` (data parsed)."""
    fields: dict[str, str] = {}
    while True:
        raw = await response.content.readline()
        if not raw:
            return
        line = raw.decode().removesuffix("\n")
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            yield {"id": fields.get("id"), "event": fields["event"],
                   "data": json.loads(fields["data"])}
            fields = {}


async def next_sse(items: AsyncIterator[dict[str, Any]], comments: bool = False,
                   timeout_s: float = WAIT_S) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        async for item in items:
            if comments or "comment" not in item:
                return item
    raise AssertionError("the stream ended")


async def open_sse(client, query: str = "") -> tuple[aiohttp.ClientResponse,
                                                       AsyncIterator[dict[str, Any]]]:
    response = await client.get(f"{API}/events{query}")
    assert response.status == 200, await response.text()
    items = sse_items(response)
    # The first bytes say the subscription is in place: every later event will be seen.
    assert await next_sse(items, comments=True) == {"comment": "connected"}
    return response, items


# ---------------------------------------------------------------------------------------------
# Fast: the app in process, the test as the worker


@pytest.fixture
def make_client(aiohttp_client, settings, redis_url):
    """A client of a new app, with stream limits of its own if given."""
    async def make(limits: StreamLimits | None = None):
        app = create_app(settings, redis_url)
        if limits is not None:
            app[STREAM_LIMITS] = limits
        return await aiohttp_client(app)
    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


@pytest.fixture
async def aredis(redis_url) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def new_job(store: Store, function: str = "f1", context: str = "default") -> Job:
    return store.create_job(NewJob(function=function, context=context, arguments={"n": 1},
                                   file_path=f"{function}.py", class_name=function,
                                   artifact_sha1=None))


async def publish(aredis: aioredis.Redis, *events: dict[str, Any]) -> None:
    async with aredis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.publish(events_channel(pipe), encode(event))
        await pipe.execute()


def job_events(store: Store, job: Job, result: Any = 42,
               announce: bool = True) -> list[dict[str, Any]]:
    """A job's whole life as its gateway and worker publish it (moving it in the store):
    ``announce`` False leaves out the gateway's part (initialized, queued)."""
    events = [initialized_event(job), lifecycle_event(job)] if announce else []
    started = store.transition(job.id, JobStatus.STARTED, worker_id=WORKER, start_time=now_ms())
    events += [worker_assigned_event(started), lifecycle_event(started),
               logs_event(job.id, [LogLine(now_ms(), "INFO", f"line of {job.id}")]),
               progress_event(job.id, {"percent": 50.0})]
    finished = store.transition(job.id, JobStatus.FINISHED, result=result, end_time=now_ms())
    return [*events, lifecycle_event(finished)]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


WITH_LOGS = [*LIFECYCLE, "logs", "progress", "finished"]
WITHOUT_LOGS = [*LIFECYCLE, "progress", "finished"]


async def test_every_subscriber_gets_every_event_in_order(client, store, aredis):
    sockets = [await client.ws_connect(f"{API}/ws/all?withLogs=true") for _ in range(3)]
    _, sse = await open_sse(client, "?withLogs=true")
    first, second = new_job(store), new_job(store, "f2")
    published = job_events(store, first) + job_events(store, second, result={"x": [1]})

    await publish(aredis, *published)

    for ws in sockets:
        got = [await next_ws(ws) for _ in published]
        assert got == published  # the JSON as published, field for field
    seen = [await next_sse(sse) for _ in published]
    assert [item["data"] for item in seen] == published
    assert [item["event"] for item in seen] == names(published)
    ids = [int(item["id"]) for item in seen]
    assert ids == sorted(set(ids))  # increasing, one per event
    for ws in sockets:
        await ws.close()


async def test_logs_only_with_logs(client, store, aredis):
    quiet = await client.ws_connect(f"{API}/ws/all")
    default_false = await client.ws_connect(f"{API}/ws/all?withLogs=false")
    loud = await client.ws_connect(f"{API}/ws/all?withLogs=true")
    _, quiet_sse = await open_sse(client)
    job = new_job(store)

    await publish(aredis, *job_events(store, job))

    assert names([await next_ws(loud) for _ in WITH_LOGS]) == WITH_LOGS
    for ws in (quiet, default_false):
        assert names([await next_ws(ws) for _ in WITHOUT_LOGS]) == WITHOUT_LOGS
    assert [(await next_sse(quiet_sse))["event"] for _ in WITHOUT_LOGS] == WITHOUT_LOGS


async def test_job_socket_has_only_its_job_and_closes_after_its_end(client, store, aredis):
    job, other = new_job(store), new_job(store)
    ws = await client.ws_connect(f"{API}/ws/jobs/{job.id}?withLogs=true")
    mine = job_events(store, job)

    await publish(aredis, *job_events(store, other)[:3], *mine, *job_events(store, new_job(store)))

    assert await ws_until_closed(ws) == mine
    assert ws.close_code == aiohttp.WSCloseCode.OK


async def test_job_socket_of_an_ended_job_sends_its_end_from_the_database(client, store):
    job = new_job(store)
    job_events(store, job, result={"answer": 42})  # never published: only the database knows
    ended = store.get_job(job.id)

    ws = await client.ws_connect(f"{API}/ws/jobs/{job.id}")

    assert await ws_until_closed(ws) == [{"event": "finished", "id": job.id, "time":
                                          ended.end_time, "result": {"answer": 42}}]


async def test_job_socket_ends_when_the_end_event_was_lost(make_client, store):
    """Pub/sub may lose an event; the job's socket checks the database at each keep-alive."""
    client = await make_client(StreamLimits(ws_keepalive_s=0.2))
    job = new_job(store)
    ws = await client.ws_connect(f"{API}/ws/jobs/{job.id}")
    store.transition(job.id, JobStatus.CANCELLED, end_time=now_ms())  # and no event

    events = await ws_until_closed(ws)

    assert names(events) == ["cancelled"]
    assert events[0]["id"] == job.id


async def test_job_socket_rereads_the_job_when_the_subscription_comes_back(client, store,
                                                                             redis):
    """Events published while the hub's subscription was down are lost: its job sockets
    read their job again once it is back."""
    job = new_job(store)
    ws = await client.ws_connect(f"{API}/ws/jobs/{job.id}")
    store.transition(job.id, JobStatus.CANCELLED, end_time=now_ms())  # and no event

    await asyncio.to_thread(kill_own_subscription, redis)

    assert names(await ws_until_closed(ws)) == ["cancelled"]


def kill_own_subscription(redis) -> None:
    """Cut this process's subscription(s) to the events channel, and no one else's."""
    import psutil

    mine = {f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.Process().net_connections("tcp")
            if c.raddr}
    killed = 0
    for entry in redis.client_list(_type="pubsub"):
        if entry["addr"] in mine:
            killed += redis.client_kill_filter(_id=entry["id"])
    assert killed


async def test_clients_that_leave_are_unsubscribed(make_client):
    client = await make_client(StreamLimits(sse_keepalive_s=0.1))
    hub = client.app[HUB]
    ws = await client.ws_connect(f"{API}/ws/all")
    response, _ = await open_sse(client)
    assert hub.streaming == 2

    await ws.close()
    response.close()

    async with asyncio.timeout(WAIT_S):
        while hub.streaming:
            await asyncio.sleep(0.02)


async def test_job_socket_of_an_unknown_job_is_404_before_upgrading(client):
    response = await client.get(f"{API}/ws/jobs/no-such-job", headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    assert client.app[HUB].streaming == 0


@pytest.mark.parametrize("path", ["/ws/all", "/ws/jobs/x", "/events"])
async def test_bad_with_logs_is_400(client, path):
    response = await client.get(f"{API}{path}?withLogs=maybe")
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["code"], error["details"]["field"]) == ("bad_request", "withLogs")


@pytest.mark.parametrize("query, field", [("job=a%01b", "job"), ("function=" + "f" * 256,
                                          "function"), ("context=" + ",".join(
                                              str(n) for n in range(101)), "context")])
async def test_bad_filter_is_400_naming_it(client, query, field):
    response = await client.get(f"{API}/events?{query}")
    assert response.status == 400
    body = await response.json()
    assert list(body) == ["error"]
    assert (body["error"]["code"], body["error"]["details"]["field"]) == ("bad_request", field)


async def test_sse_response_is_an_event_stream(client, store, aredis):
    response, _ = await open_sse(client)
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    job = new_job(store)
    await publish(aredis, initialized_event(job))

    raw = b""
    while not raw.endswith(b"\n\n"):
        raw += await asyncio.wait_for(response.content.readline(), WAIT_S)
        raw = raw.lstrip(b"\n")  # the end of the opening comment

    assert re.fullmatch(rb"id: \d+\nevent: initialized\ndata: \{[^\n]*\}\n\n", raw), raw


async def test_sse_filters_by_job_function_and_context(client, store, aredis):
    a = new_job(store, "fa", "ctx1")
    b = new_job(store, "fb", "ctx1")
    c = new_job(store, "fc", "ctx2")
    _, by_job = await open_sse(client, f"?job={a.id},{c.id}")
    _, by_job_repeated = await open_sse(client, f"?job={a.id}&job={c.id}")
    _, by_function = await open_sse(client, "?function=fb&function=fc")
    _, by_context = await open_sse(client, "?context=ctx1")
    _, by_both = await open_sse(client, "?function=fa,fc&context=ctx2")
    events = {j.id: job_events(store, j) for j in (a, b, c)}

    await publish(aredis, *events[a.id], *events[b.id], *events[c.id])

    async def collect(items, *jobs):
        expected = [e for j in jobs for e in events[j.id] if e["event"] != "logs"]
        return [(await next_sse(items))["data"] for _ in expected] == expected

    assert await collect(by_job, a, c)
    assert await collect(by_job_repeated, a, c)
    assert await collect(by_function, b, c)
    assert await collect(by_context, a, b)
    assert await collect(by_both, c)
    # Nothing else came: the next thing each stream says is a later job's event.
    d = new_job(store, "fc", "ctx2")
    await publish(aredis, initialized_event(d))
    assert (await next_sse(by_both))["data"]["id"] == d.id


async def test_function_filter_reads_the_database_once_for_a_job_it_never_saw_begin(
        client, store, aredis, monkeypatch):
    """Events from workers carry only the job id: a job whose ``initialized`` this gateway
    did not see (submitted before it started) is looked up, once."""
    job, other = new_job(store, "fa"), new_job(store, "fb")
    reads: list[str] = []
    real_get = Store.get_job
    monkeypatch.setattr(Store, "get_job",
                        lambda self, job_id: reads.append(job_id) or real_get(self, job_id))
    _, by_function = await open_sse(client, "?function=fa")
    _, also_by_function = await open_sse(client, "?function=fa")
    mine = job_events(store, job, announce=False)

    await publish(aredis, *job_events(store, other, announce=False), *mine)

    expected = [e for e in mine if e["event"] != "logs"]
    for items in (by_function, also_by_function):
        assert [(await next_sse(items))["data"] for _ in expected] == expected
    assert sorted(reads) == sorted([job.id, other.id])


async def test_a_job_announced_while_nobody_listened_is_filtered_all_the_same(
        client, store, aredis, monkeypatch):
    """A gateway that nobody listens to (async submits only) leaves the events it hears
    unread; a stream opened later places their jobs by the database, once each."""
    job, other = new_job(store, "fa"), new_job(store, "fb")
    await publish(aredis, initialized_event(job), lifecycle_event(job),
                  initialized_event(other), lifecycle_event(other))
    await asyncio.sleep(0.5)  # heard by the hub, with no listener yet
    reads: list[str] = []
    real_get = Store.get_job
    monkeypatch.setattr(Store, "get_job",
                        lambda self, job_id: reads.append(job_id) or real_get(self, job_id))
    _, by_function = await open_sse(client, "?function=fa")
    mine = job_events(store, job, announce=False)

    await publish(aredis, *job_events(store, other, announce=False), *mine)

    expected = [e for e in mine if e["event"] != "logs"]
    assert [(await next_sse(by_function))["data"] for _ in expected] == expected
    assert sorted(reads) == sorted([job.id, other.id])


async def test_a_subscriber_that_falls_behind_is_dropped_and_the_others_are_not(client, store,
                                                                                 aredis):
    hub = client.app[HUB]
    ws = await client.ws_connect(f"{API}/ws/all")
    with hub.subscribe(limit=5, max_bytes=1 << 20) as slow:  # never read while the events come
        job = new_job(store)
        published = job_events(store, job)

        await publish(aredis, *published)

        assert [await next_ws(ws) for _ in WITHOUT_LOGS] == [
            e for e in published if e["event"] != "logs"]
        held = [slow.queue.get_nowait() for _ in range(6)]
        assert [item.data for item in held[:5]] == published[:5]  # what it held, in order
        assert held[5] is Notice.DROPPED  # then the notice, and nothing more
        assert slow.queue.empty()
        assert hub.streaming == 1  # the dropped one is gone, the socket stays


async def test_a_socket_that_falls_behind_gets_a_final_notice(make_client, store, aredis):
    client = await make_client(StreamLimits(queue_size=2))
    ws = await client.ws_connect(f"{API}/ws/all")
    jobs = [new_job(store) for _ in range(20)]

    # One burst: the hub takes it in one read, faster than any socket is written.
    await publish(aredis, *[initialized_event(job) for job in jobs])

    events = await ws_until_closed(ws)
    assert events[-1]["event"] == "dropped"
    assert "did not keep up" in events[-1]["reason"]
    assert 0 < len(events) - 1 < len(jobs)
    assert ws.close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER


async def test_keep_alives(make_client):
    client = await make_client(StreamLimits(ws_keepalive_s=0.1, sse_keepalive_s=0.1))
    before = now_ms()
    ws = await client.ws_connect(f"{API}/ws/all")
    _, sse = await open_sse(client)

    for _ in range(2):
        keepalive = await next_ws(ws, timeout_s=2, keepalives=True)
        assert set(keepalive) == {"event", "time"}
        assert keepalive["event"] == "keep-alive"
        assert before <= keepalive["time"] <= now_ms()
        assert await next_sse(sse, comments=True, timeout_s=2) == {"comment": "keep-alive"}


async def test_events_of_a_sparkgate_on_another_redis_database_never_arrive(
        make_client, store, aredis, redis_url: str):
    """Pub/sub channels span a Redis server's databases: each sparkgate's are its own."""
    client = await make_client()
    ws = await client.ws_connect(f"{API}/ws/all")
    other_db = 1 if aredis.connection_pool.connection_kwargs.get("db", 0) != 1 else 2
    neighbour = aioredis.Redis.from_url(f"{redis_url.rpartition('/')[0]}/{other_db}")
    try:
        theirs, mine = new_job(store), new_job(store)
        await publish(neighbour, initialized_event(theirs))
        await publish(aredis, initialized_event(mine))
        assert (await next_ws(ws))["id"] == mine.id
    finally:
        await neighbour.aclose()


async def test_keep_alives_come_on_time_while_events_flow(make_client, store, aredis):
    client = await make_client(StreamLimits(ws_keepalive_s=0.3))
    ws = await client.ws_connect(f"{API}/ws/all")
    job = new_job(store)
    started = time.monotonic()
    keepalives = 0
    while keepalives < 2:
        await publish(aredis, initialized_event(job))
        await asyncio.sleep(0.02)
        while (await next_ws(ws, keepalives=True))["event"] != "initialized":
            keepalives += 1
        assert time.monotonic() - started < 3


async def test_streams_end_when_the_gateway_stops(client):
    ws = await client.ws_connect(f"{API}/ws/all")
    response, _ = await open_sse(client)

    client.app[HUB].end_streams()

    assert await ws_until_closed(ws) == []
    assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    assert await asyncio.wait_for(response.content.read(), WAIT_S) == b"\n"  # no more


async def test_waiters_and_streams_share_the_subscription(client, store, aredis):
    """A sync waiter is still woken by the end, with streams listening to the same events."""
    hub = client.app[HUB]
    ws = await client.ws_connect(f"{API}/ws/all")
    job = new_job(store)
    with hub.watch(job.id) as ended:
        await publish(aredis, *job_events(store, job))
        await asyncio.wait_for(ended.wait(), WAIT_S)
    assert names([await next_ws(ws) for _ in WITHOUT_LOGS]) == WITHOUT_LOGS


# ---------------------------------------------------------------------------------------------
# Slow: one real `sparkgate serve` with a worker


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("events")) as server:
        for function, name in (("ev_sleep", "sleep_python"), ("ev_fail", "fail"),
                               ("ev_chatty", "chatty"), ("ev_slow", "slow_spark")):
            server.deploy("behaviours.py", function, name)
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


class Recorder:
    """Everything a socket receives, kept by job id, read in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.by_job: dict[str, list[dict[str, Any]]] = {}
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            event = json.loads(message.data)
            if event["event"] != "keep-alive":
                self.by_job.setdefault(event["id"], []).append(event)
                self.changed.set()

    async def until(self, job_id: str, name: str, timeout_s: float = 90,
                    where: Any = lambda event: True) -> list[dict]:
        """The job's events so far, once one named ``name`` (and ``where`` it) has come."""
        async with asyncio.timeout(timeout_s):
            while True:
                events = list(self.by_job.get(job_id, []))
                if any(e["event"] == name and where(e) for e in events):
                    return events
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        await self.ws.close()
        await self.task


@pytest.fixture
async def recorders(server: Server, http) -> AsyncIterator[dict[bool, Recorder]]:
    """``/ws/all`` twice: ``{True: withLogs=true, False: withLogs=false}``."""
    made = {with_logs: Recorder(await http.ws_connect(
        f"{server.url}{API}/ws/all?withLogs={str(with_logs).lower()}"))
        for with_logs in (True, False)}
    yield made
    for recorder in made.values():
        await recorder.close()


async def submit(http, server: Server, function: str, arguments: dict) -> str:
    async with http.post(f"{server.url}{API}/functions/{function}/jobs",
                         json=arguments) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["id"]


def lifecycle_only(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] not in ("logs", "progress")]


@pytest.mark.slow
async def test_real_finished_job_sequence(server, http, recorders):
    job_id = await submit(http, server, "ev_sleep", {"seconds": 0.1})

    events = await recorders[False].until(job_id, "finished")

    assert names(events) == [*LIFECYCLE, "finished"]
    assert events[-1]["result"] == {"slept": 0.1}
    assert events[0]["function"] == "ev_sleep"
    assert events[0]["params"] == {"seconds": 0.1}
    assert events[2]["workerId"] == events[3]["workerId"]
    assert all(e["id"] == job_id for e in events)
    with_logs = await recorders[True].until(job_id, "finished")
    assert lifecycle_only(with_logs) == events


@pytest.mark.slow
async def test_real_failed_job_sequence(server, http, recorders):
    job_id = await submit(http, server, "ev_fail", {"message": "no luck"})

    events = await recorders[False].until(job_id, "failed")

    assert names(events) == [*LIFECYCLE, "failed"]
    assert events[-1]["error"].startswith("ValueError: no luck")


@pytest.mark.slow
async def test_real_cancelled_running_job_sequence(server, http, recorders):
    job_id = await submit(http, server, "ev_slow", {"seconds": 120})
    # Running Spark tasks: its progress says so.
    await recorders[False].until(job_id, "progress",
                                 where=lambda e: e["progress"]["tasks"]["total"] > 0)

    async with http.delete(f"{server.url}{API}/jobs/{job_id}") as response:
        assert response.status == 200, await response.text()
    events = await recorders[False].until(job_id, "cancelled", timeout_s=30)

    # Progress events may come while it runs, and while its cancel is under way.
    assert re.fullmatch(r"initialized queued worker-assigned started (progress )+cancelling "
                        r"(progress )*cancelled", " ".join(names(events))), names(events)


@pytest.mark.slow
async def test_real_logs_only_with_logs(server, http, recorders):
    job_id = await submit(http, server, "ev_chatty", {"name": "kappa", "lines": 3})

    with_logs = await recorders[True].until(job_id, "finished")
    without = await recorders[False].until(job_id, "finished")

    assert names(without) == [*LIFECYCLE, "finished"]
    assert lifecycle_only(with_logs) == without
    lines = [line for e in with_logs if e["event"] == "logs" for line in e["events"]]
    messages = [line["message"] for line in lines]
    for n in range(3):
        assert f"kappa print {n}" in messages
    assert all(line["from"] == job_id for line in lines)
    assert all(set(line) == {"from", "message", "timeStamp", "level"} for line in lines)
    # Logs come between the start and the end.
    first_log = names(with_logs).index("logs")
    assert names(with_logs).index("started") < first_log < len(with_logs) - 1


@pytest.mark.slow
async def test_real_job_socket_follows_the_job_and_closes(server, http):
    job_id = await submit(http, server, "ev_sleep", {"seconds": 1.5})
    async with http.ws_connect(f"{server.url}{API}/ws/jobs/{job_id}") as ws:
        events = []
        async for message in ws:
            events.append(json.loads(message.data))
    assert ws.close_code == aiohttp.WSCloseCode.OK
    assert events[-1] == {**events[-1], "event": "finished", "id": job_id,
                          "result": {"slept": 1.5}}
    assert set(names(events)) <= {"worker-assigned", "started", "finished"}

    # Once it has ended: its end, from the database, and the socket closes.
    async with http.ws_connect(f"{server.url}{API}/ws/jobs/{job_id}") as ws:
        again = [json.loads(message.data) async for message in ws]
    assert ws.close_code == aiohttp.WSCloseCode.OK
    assert names(again) == ["finished"]
    assert again[0]["result"] == {"slept": 1.5}


@pytest.mark.slow
async def test_real_unknown_job_socket_is_404(server, http):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{server.url}{API}/ws/jobs/no-such-job")
    assert refused.value.status == 404


@pytest.mark.slow
async def test_real_sse_filters_by_function_and_by_job(server, http):
    async with http.get(f"{server.url}{API}/events?function=ev_fail") as by_function:
        items = sse_items(by_function)
        assert await next_sse(items, comments=True) == {"comment": "connected"}
        noise = await submit(http, server, "ev_sleep", {"seconds": 0})
        job_id = await submit(http, server, "ev_fail", {})
        seen = []
        while not seen or seen[-1]["event"] != "failed":
            seen.append(await next_sse(items, timeout_s=90))
    assert [item["event"] for item in seen] == [*LIFECYCLE, "failed"]
    assert all(item["data"]["id"] == job_id for item in seen)
    assert [item["data"]["event"] for item in seen] == [item["event"] for item in seen]

    slow = await submit(http, server, "ev_sleep", {"seconds": 2})
    async with http.get(f"{server.url}{API}/events",
                        params={"job": f"{slow},{noise}", "withLogs": "true"}) as by_job:
        items = sse_items(by_job)
        seen = []
        while not seen or seen[-1]["event"] != "finished":
            seen.append(await next_sse(items, timeout_s=90))
    assert {item["data"]["id"] for item in seen} == {slow}
    assert seen[-1]["data"]["result"] == {"slept": 2}
    assert "logs" in [item["event"] for item in seen]


# ---------------------------------------------------------------------------------------------
# The published text


def test_an_event_carries_any_json_value_and_caps_only_what_is_too_large():
    result = {"big": 2**70, "negative": -(2**65), "nested": [{"x": 1.5}], "text": "é ☃"}
    event = {"event": "finished", "id": "j1", "time": 1, "result": result}
    assert decode(encode(event)) == event  # integers beyond 64 bits stay integers
    assert decode(encode({**event, "result": {1: "a"}}))["result"] == {"1": "a"}

    large = "x" * VALUE_MAX_BYTES
    ended = decode(encode({**event, "params": {"x": 1}, "result": large}))
    assert ended["params"] == {"x": 1} and ended["truncated"] == ["result"]
    assert ended["result"]["truncated"] is True
    # Only a value over the limit is replaced, however large the event as a whole.
    near = "y" * (VALUE_MAX_BYTES - 100)
    both = decode(encode({**event, "params": near, "result": near}))
    assert both["params"] == near and both["result"] == near and "truncated" not in both
