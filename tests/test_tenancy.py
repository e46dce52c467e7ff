"""Who sees what: with authentication on, a submit key (or a JWT holding only submit) sees,
follows and cancels only the jobs it submitted; read and admin see every owner's jobs; secret-
looking Spark settings are shown to admins only. docs/security.md, "Tenancy", is the contract.

Real gateway app, real Redis and PostgreSQL/SQLite (``db_url`` runs each test on both).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis import Redis

from sparkgate.gateway.app import create_app
from sparkgate.gateway.redaction import REDACTED
from sparkgate.jobs.errors import ConfigError
from sparkgate.jobs.events import encode, events_channel, logs_event, progress_event
from sparkgate.jobs.keys import KeyStore
from sparkgate.jobs.logs.lines import LogLine
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import NewJob, Store
from sparkgate.jobs.worker_registry import WorkerRegistry
from tests.api_responses import error_of, json_of
from tests.conftest import function_source
from tests.server_process import Server, create_key, running_server
from tests.test_auth_routes import rule_of

API = "/v2/api"
ISSUER = "https://login.example.test/"
SECRET_CONF = {
    "spark.hadoop.fs.s3a.access.key": "AKIAEXAMPLE",
    "spark.hadoop.fs.s3a.secret.key": "s3-secret-value",
    "spark.ssl.keyStorePassword": "hunter2",
    "spark.hadoop.fs.azure.account.key.acct.blob.core.windows.net": "azure-key",
    "spark.mongodb.read.connection.uri": "mongodb://app:pw@db:27017/sales",
    "spark.sql.catalog.pg.url": "jdbc:postgresql://db/sales?user=app&password=pw",
    "spark.executor.memory": "1g",
}
PUBLIC_CONF = {"spark.executor.memory": "1g"}
# Owners' names unique to this run: Redis pub/sub channels are shared by all of a server's
# databases, so tests elsewhere on it publish events too, and must not pass for ours.
ALICE, BOB = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def client(aiohttp_client, settings, redis_url, tmp_path: Path, signer):
    pem = tmp_path / "jwt.pem"
    pem.write_bytes(signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    on = dataclasses.replace(settings, auth_enabled=True, jwt_issuer=ISSUER,
                             jwt_public_key_file=pem)
    return await aiohttp_client(create_app(on, redis_url))


@dataclasses.dataclass(frozen=True)
class People:
    admin: str
    reader: str
    alice: str
    bob: str


@pytest.fixture
async def people(client, engine) -> People:
    keys = KeyStore(engine)
    found = People(admin=keys.create("admin", "admin").token,
                   reader=keys.create("reader", "read").token,
                   alice=keys.create(ALICE, "submit").token,
                   bob=keys.create(BOB, "submit").token)
    form = aiohttp.FormData()
    form.add_field("file", function_source("echo.py"), filename="echo.py")
    uploaded = await client.post(f"{API}/artifacts", data=form, headers=bearer(found.admin))
    assert uploaded.status == 200, await uploaded.text()
    await json_of(await client.post(f"{API}/functions", headers=bearer(found.admin), json={
        "name": "echo", "path": "echo.py", "className": "echo"}))
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_of(signer: Any, sub: str, roles: list[str]) -> str:
    return jwt.encode({"iss": ISSUER, "sub": sub, "roles": roles, "exp": int(time.time()) + 600},
                      signer, algorithm="RS256")


async def submit(client, token: str, **kw: Any) -> str:
    headers = {**bearer(token), **kw.pop("headers", {})}
    response = await client.post(f"{API}/functions/echo/jobs", json={"value": 1},
                                 headers=headers, **kw)
    return (await json_of(response))["id"]


async def listed(client, token: str, path: str = "/jobs") -> tuple[set[str], int]:
    body = await json_of(await client.get(f"{API}{path}", params={"paginate": "true"},
                                          headers=bearer(token)))
    return {job["jobId"] for job in body["jobs"]}, body["total"]


# ---------------------------------------------------------------------------------------------
# Jobs: reads, logs, cancels and listings


async def test_a_submit_key_reads_and_cancels_only_its_own_jobs(client, people: People):
    mine = await submit(client, people.alice)
    theirs = await submit(client, people.bob)
    nowhere = "00000000-0000-7000-8000-000000000000"

    assert (await json_of(await client.get(f"{API}/jobs/{mine}",
                                           headers=bearer(people.alice))))["jobId"] == mine
    missing = await error_of(await client.get(f"{API}/jobs/{nowhere}",
                                              headers=bearer(people.alice)), 404, "not_found")
    # Another owner's job answers exactly as a job that does not exist: ids reveal nothing.
    hidden = await error_of(await client.get(f"{API}/jobs/{theirs}",
                                             headers=bearer(people.alice)), 404, "not_found")
    assert hidden == {**missing, "message": missing["message"].replace(nowhere, theirs),
                      "details": {"jobId": theirs}}
    await error_of(await client.get(f"{API}/jobs/{theirs}/logs", headers=bearer(people.alice)),
                   404, "not_found")
    await error_of(await client.delete(f"{API}/jobs/{theirs}", headers=bearer(people.alice)),
                   404, "not_found")
    assert (await json_of(await client.get(f"{API}/jobs/{theirs}",
                                           headers=bearer(people.bob))))["status"] == "queued"
    assert (await client.get(f"{API}/jobs/{mine}/logs", headers=bearer(people.alice))).status \
        == 200
    cancelled = await json_of(await client.delete(f"{API}/jobs/{mine}",
                                                  headers=bearer(people.alice)))
    assert cancelled["status"] == "cancelled"

    # read and admin see every owner's jobs; only admin cancels another's.
    for token in (people.reader, people.admin):
        assert (await json_of(await client.get(f"{API}/jobs/{theirs}",
                                               headers=bearer(token))))["submitter"] \
            == f"key:{BOB}"
    await error_of(await client.delete(f"{API}/jobs/{theirs}", headers=bearer(people.reader)),
                   403, "forbidden")
    assert (await json_of(await client.delete(f"{API}/jobs/{theirs}",
                                              headers=bearer(people.admin))))["status"] \
        == "cancelled"


async def test_every_route_of_one_job_hides_another_owners_job(client, people: People):
    """Walks the app's router: a route added for one job must scope it too. A route only admins
    may call (a job's webhook deliveries) refuses a submit key whoever's job it names: the
    answer tells nothing of another owner's job."""
    theirs = await submit(client, people.bob)
    own = await submit(client, people.alice)
    app = client.server.app
    routes = sorted({(route.method, resource.canonical)
                     for resource in app.router.resources()
                     for route in resource if "/jobs/{id}" in resource.canonical})
    assert len(routes) >= 5  # GET, HEAD and DELETE of the job, its logs, its socket
    for method, path in routes:
        response = await client.request(method, path.replace("{id}", theirs),
                                        headers=bearer(people.alice))
        if rule_of(app, method, path).role == "admin":
            mine = await client.request(method, path.replace("{id}", own),
                                        headers=bearer(people.alice))
            assert response.status == mine.status == 403, (method, path, response.status)
            continue
        assert response.status == 404, (method, path, response.status)
        if method != "HEAD":
            assert (await response.json())["error"]["message"] == f"job {theirs} does not exist"
    assert (await json_of(await client.get(f"{API}/jobs/{theirs}",
                                           headers=bearer(people.bob))))["status"] == "queued"


async def test_listings_and_totals_hold_only_the_callers_jobs(client, people: People,
                                                             store: Store):
    alices = {await submit(client, people.alice) for _ in range(2)}
    bobs = {await submit(client, people.bob)}
    # Both owners' jobs on one worker.
    for job_id in (*sorted(alices)[:1], *bobs):
        store.transition(job_id, JobStatus.STARTED, worker_id="w-shared", start_time=1)

    for path in ("/jobs", "/functions/echo/jobs", "/workers/w-shared/jobs"):
        seen, total = await listed(client, people.alice, path)
        expected = alices if path != "/workers/w-shared/jobs" else set(sorted(alices)[:1])
        assert (seen, total) == (expected, len(expected)), path
        seen, total = await listed(client, people.bob, path)
        assert (seen, total) == (bobs, 1), path
    for token in (people.reader, people.admin):
        assert await listed(client, token) == (alices | bobs, 3)
    plain = await json_of(await client.get(f"{API}/jobs", headers=bearer(people.bob)))
    assert [job["jobId"] for job in plain] == list(bobs)


async def test_jwt_subjects_are_owners_and_several_roles_add_up(client, people: People,
                                                               signer):
    carol = token_of(signer, "carol", ["submit"])
    dave = token_of(signer, "dave", ["submit"])
    operator = token_of(signer, "olga", ["read", "submit"])
    carols = await submit(client, carol)
    daves = await submit(client, dave)
    alices = await submit(client, people.alice)

    assert await listed(client, carol) == ({carols}, 1)
    await error_of(await client.get(f"{API}/jobs/{daves}", headers=bearer(carol)),
                   404, "not_found")
    await error_of(await client.delete(f"{API}/jobs/{carols}", headers=bearer(dave)),
                   404, "not_found")
    # read + submit: sees everyone's jobs (read), cancels only its own (submit).
    assert (await listed(client, operator))[1] == 3
    refused = await error_of(await client.delete(f"{API}/jobs/{alices}",
                                                 headers=bearer(operator)), 403, "forbidden")
    assert "its own jobs" in refused["message"]
    await error_of(await client.get(f"{API}/jobs/{alices}", headers=bearer(carol)),
                   404, "not_found")


async def test_an_idempotency_key_never_hands_out_another_owners_job(client, people: People):
    headers = {"Idempotency-Key": "order-42"}
    bobs = await submit(client, people.bob, headers=dict(headers))
    alices = await submit(client, people.alice, headers=dict(headers))
    assert alices != bobs
    assert await submit(client, people.alice, headers=dict(headers)) == alices
    # A sync wait on a key's job is a wait on the caller's own job only.
    waited = await client.post(f"{API}/functions/echo/jobs", json={"value": 1},
                               params={"wait": "0.1s"},
                               headers={**bearer(people.alice), **headers})
    assert (await json_of(waited, 202))["id"] == alices


async def test_stats_count_only_the_callers_jobs(client, people: People):
    for _ in range(2):
        await submit(client, people.alice)
    await submit(client, people.bob)

    async def totals(token: str) -> tuple[int, int]:
        body = await json_of(await client.get(f"{API}/stats", headers=bearer(token)))
        return body["totals"]["submitted"], body["active"]["queued"]

    assert await totals(people.alice) == (2, 2)
    assert await totals(people.bob) == (1, 1)
    assert await totals(people.reader) == (3, 3)
    assert await totals(people.admin) == (3, 3)


async def test_with_authentication_off_everyone_sees_everything(make_client, store: Store):
    client = await make_client()
    form = aiohttp.FormData()
    form.add_field("file", function_source("echo.py"), filename="echo.py")
    assert (await client.post(f"{API}/artifacts", data=form)).status == 200
    await json_of(await client.post(f"{API}/functions", json={
        "name": "echo", "path": "echo.py", "className": "echo"}))
    ours = (await json_of(await client.post(f"{API}/functions/echo/jobs", json={})))["id"]
    known = store.get_job(ours)
    bobs = store.create_job(NewJob(
        function="echo", context=known.context, arguments={}, file_path=known.file_path,
        class_name=known.class_name, artifact_sha1=known.artifact_sha1,
        submitter=f"key:{BOB}"))

    assert {j["jobId"] for j in await json_of(await client.get(f"{API}/jobs"))} == {ours, bobs.id}
    assert (await json_of(await client.get(f"{API}/jobs/{bobs.id}")))["submitter"] \
        == f"key:{BOB}"
    assert (await json_of(await client.delete(f"{API}/jobs/{bobs.id}")))["status"] == "cancelled"
    created = await json_of(await client.post(f"{API}/contexts", json={
        "name": "lake", "sparkConf": SECRET_CONF}))
    assert created["sparkConf"] == SECRET_CONF


# ---------------------------------------------------------------------------------------------
# Events


async def next_events(receive, until_id: str) -> list[dict[str, Any]]:
    """Events up to the first one of ``until_id``'s job that is terminal."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while True:
            event = await receive()
            if event is None:
                continue
            seen.append(event)
            if event.get("id") == until_id and event["event"] == "cancelled":
                return seen


def unseen_job(store: Store, submitter: str) -> str:
    """A job whose ``initialized`` event the gateway never saw (another gateway's, or from
    before this one started): its events carry only its id, so its owner must be looked up."""
    return store.create_job(NewJob(function="echo", context="default", arguments={},
                                   file_path="echo.py", class_name="echo", artifact_sha1=None,
                                   submitter=submitter)).id


async def test_events_of_other_owners_jobs_never_reach_a_submit_key(client, people: People,
                                                                     redis_url: str,
                                                                     store: Store):
    ws = await client.ws_connect(f"{API}/ws/all", params={"access_token": people.alice})
    sse = await client.get(f"{API}/events", params={"access_token": people.alice,
                                                    "withLogs": "true"})
    assert await sse.content.readline() == b": connected\n"
    reader_ws = await client.ws_connect(f"{API}/ws/all", params={"access_token": people.reader})

    theirs = await submit(client, people.bob)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"{API}/ws/jobs/{theirs}", params={"access_token": people.alice})
    assert refused.value.status == 404
    their_unseen, my_unseen = unseen_job(store, f"key:{BOB}"), unseen_job(store, f"key:{ALICE}")
    # As a worker publishes them: the job's id only.
    with Redis.from_url(redis_url) as redis:
        channel = events_channel(redis)
        for job_id in (theirs, their_unseen, my_unseen):
            redis.publish(channel, encode(progress_event(job_id, {"tasksDone": 1})))
        redis.publish(channel, encode(logs_event(their_unseen, [LogLine(1, "INFO", "psst")])))
    await json_of(await client.delete(f"{API}/jobs/{theirs}", headers=bearer(people.bob)))
    mine = await submit(client, people.alice)
    await json_of(await client.delete(f"{API}/jobs/{mine}", headers=bearer(people.alice)))

    async def from_ws(socket) -> dict[str, Any] | None:
        event = await socket.receive_json()
        return None if event["event"] == "keep-alive" else event

    async def from_sse() -> dict[str, Any] | None:
        line = await sse.content.readline()
        return json.loads(line[len(b"data: "):]) if line.startswith(b"data: ") else None

    for receive in (lambda: from_ws(ws), from_sse):
        events = await next_events(receive, mine)
        assert [(e["id"], e["event"]) for e in events] == [
            (my_unseen, "progress"), (mine, "initialized"), (mine, "queued"),
            (mine, "cancelled")], events
    everyone = await next_events(lambda: from_ws(reader_ws), mine)
    assert {e["id"] for e in everyone} >= {theirs, their_unseen, my_unseen, mine}
    for stream in (ws, reader_ws):
        await stream.close()
    sse.close()


# ---------------------------------------------------------------------------------------------
# Secret-looking Spark settings


async def test_secret_spark_settings_are_shown_to_admins_only(client, people: People, redis,
                                                             signer):
    created = await json_of(await client.post(f"{API}/contexts", headers=bearer(people.admin),
                                              json={"name": "lake", "sparkConf": SECRET_CONF}))
    assert created["sparkConf"] == SECRET_CONF
    WorkerRegistry(redis, 30).beat({
        "id": "w-lake", "context": "lake", "host": "h", "pid": 1, "startedAt": 1,
        "heartbeatAt": 1, "maxJobs": 2, "workerMode": "shared", "sparkConf": SECRET_CONF,
        "runningJobs": [], "jobsDone": 0})
    hidden = {**{key: REDACTED for key in SECRET_CONF}, **PUBLIC_CONF}

    for token in (people.reader, people.alice, token_of(signer, "rita", ["read", "submit"])):
        shown = [await json_of(await client.get(f"{API}/contexts/lake", headers=bearer(token))),
                 *[c for c in await json_of(await client.get(f"{API}/contexts",
                                                             headers=bearer(token)))
                   if c["name"] == "lake"]]
        workers = await json_of(await client.get(f"{API}/workers", headers=bearer(token)))
        one = await json_of(await client.get(f"{API}/workers/w-lake", headers=bearer(token)))
        shown += [w["initInfo"] for w in workers if w["name"] == "w-lake"] + [one["initInfo"]]
        assert [s["sparkConf"] for s in shown] == [hidden] * 4
        assert "s3-secret-value" not in json.dumps(shown)

    as_admin = await json_of(await client.get(f"{API}/contexts/lake",
                                              headers=bearer(people.admin)))
    assert as_admin["sparkConf"] == SECRET_CONF
    worker = await json_of(await client.get(f"{API}/workers/w-lake",
                                            headers=bearer(people.admin)))
    assert worker["initInfo"]["sparkConf"] == SECRET_CONF

    # What an admin reads, written back, is what was there.
    body = {k: v for k, v in as_admin.items() if k in ("sparkConf", "maxJobs", "runOptions")}
    again = await json_of(await client.put(f"{API}/contexts/lake", json=body,
                                           headers=bearer(people.admin)))
    assert again["sparkConf"] == SECRET_CONF
    # The redaction marker is never stored as if it were the secret.
    pasted = await error_of(await client.put(
        f"{API}/contexts/lake", headers=bearer(people.admin),
        json={"sparkConf": {**SECRET_CONF, "spark.hadoop.fs.s3a.secret.key": REDACTED}}),
        400, "invalid_arguments")
    assert "spark.hadoop.fs.s3a.secret.key" in json.dumps(pasted)
    assert (await json_of(await client.get(f"{API}/contexts/lake", headers=bearer(
        people.admin))))["sparkConf"] == SECRET_CONF


async def test_a_submit_key_sees_only_its_own_running_jobs_on_a_worker(client, people: People,
                                                                       redis):
    mine = await submit(client, people.alice)
    theirs = await submit(client, people.bob)
    WorkerRegistry(redis, 30).beat({
        "id": "w-1", "context": "default", "host": "h", "pid": 1, "startedAt": 1,
        "heartbeatAt": 1, "maxJobs": 2, "workerMode": "shared", "sparkConf": {},
        "runningJobs": sorted([mine, theirs]), "jobsDone": 0})
    worker = await json_of(await client.get(f"{API}/workers/w-1", headers=bearer(people.alice)))
    assert worker["runningJobs"] == [mine]
    assert worker["runningJobCount"] == 2
    worker = await json_of(await client.get(f"{API}/workers/w-1", headers=bearer(people.reader)))
    assert worker["runningJobs"] == sorted([mine, theirs])


async def test_more_secret_settings_can_be_named(aiohttp_client, settings, redis_url,
                                                 engine):
    on = dataclasses.replace(settings, auth_enabled=True,
                             secret_spark_conf_keys=r"^spark\.myco\.|\.apiCode$")
    client = await aiohttp_client(create_app(on, redis_url))
    keys = KeyStore(engine)
    admin, reader = keys.create("admin", "admin").token, keys.create("reader", "read").token
    conf = {"spark.myco.endpoint": "https://x", "spark.other.apiCode": "c0de",
            "spark.executor.memory": "1g", "spark.hadoop.fs.s3a.secret.key": "s"}
    await json_of(await client.post(f"{API}/contexts", headers=bearer(admin),
                                    json={"name": "own", "sparkConf": conf}))
    shown = await json_of(await client.get(f"{API}/contexts/own", headers=bearer(reader)))
    assert shown["sparkConf"] == {**{k: REDACTED for k in conf}, **PUBLIC_CONF}


def test_a_pattern_that_is_not_a_regular_expression_stops_the_start():
    with pytest.raises(ConfigError, match="secret_spark_conf_keys"):
        Settings(secret_spark_conf_keys="spark.(")


# ---------------------------------------------------------------------------------------------
# A real `sparkgate serve` and Spark worker


@pytest.fixture(scope="module")
def real_server(tmp_path_factory) -> Iterator[tuple[Server, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("tenancy")
    cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")},
               "SPARKGATE_DATA_DIR": str(workdir / "data")}
    tokens = {}
    for name, role in ((ALICE, "submit"), (BOB, "submit"), ("reader", "read")):
        tokens[name] = create_key(cli_env, name, role, workdir)
    # The readiness probe gets 401: the worker starts with the first job.
    with running_server(workdir, {"SPARKGATE_AUTH_ENABLED": "true"},
                        wait_for_worker=False) as server:
        yield server, tokens


async def test_a_real_workers_events_reach_only_the_jobs_owner(real_server):
    server, tokens = real_server
    async with aiohttp.ClientSession(server.url) as http:
        streams = {}
        for name in (ALICE, "reader"):
            streams[name] = await http.get(f"{API}/events", params={"withLogs": "true"},
                                           headers=bearer(tokens[name]))
            assert await streams[name].content.readline() == b": connected\n"

        async def run(name: str) -> str:
            async with http.post(f"{API}/functions/pi/jobs", params={"force": "true"},
                                 json={"samples": 1000}, headers=bearer(tokens[name]),
                                 timeout=aiohttp.ClientTimeout(total=240)) as done:
                assert (await json_of(done))["success"] is True
            async with http.get(f"{API}/jobs", headers=bearer(tokens[name])) as listed:
                return (await json_of(listed))[0]["jobId"]

        bobs = await run(BOB)  # on a real worker: started, logs, progress, finished
        alices = await run(ALICE)

        async def seen_until(stream, job_id: str) -> list[tuple[str, str]]:
            seen = []
            async with asyncio.timeout(30):
                while not seen or seen[-1] != (job_id, "finished"):
                    line = await stream.content.readline()
                    if line.startswith(b"data: "):
                        event = json.loads(line[len(b"data: "):])
                        seen.append((event["id"], event["event"]))
            return seen

        by_alice = await seen_until(streams[ALICE], alices)
        assert {job_id for job_id, _ in by_alice} == {alices}, by_alice
        by_reader = await seen_until(streams["reader"], alices)
        assert {"started", "finished"} <= {name for job_id, name in by_reader if job_id == bobs}
        async with http.get(f"{API}/jobs/{bobs}/logs", headers=bearer(tokens[ALICE])) as logs:
            assert logs.status == 404
        for stream in streams.values():
            stream.close()
