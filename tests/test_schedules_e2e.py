"""Schedules in real `sparkgate serve` processes, on SQLite and PostgreSQL: two gateways on one
database and one Redis fire a schedule every 2 s and make exactly one job per tick, while one
of them is killed (SIGKILL) and started again; a pause stops the jobs; after every gateway was
down, a schedule with ``missed: once`` runs once and one with ``skip`` does not.

The default context runs on the python engine (no JVM), so the jobs end in milliseconds and a
tick never finds the previous one still going.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from redis import Redis
from sqlalchemy import select

from sparkgate.jobs import tables as t
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.migrate import upgrade
from sparkgate.jobs.scheduler import tick_request
from sparkgate.jobs.schedules import ScheduleBook
from sparkgate.jobs.settings import load_settings
from sparkgate.jobs.submission import idempotency_digest
from tests.server_process import (
    Server,
    create_pg_database,
    drop_pg_database,
    running_server,
    wait_until,
)

pytestmark = pytest.mark.slow

# This module's own Redis database (see tests/conftest.py): it runs whole in one process.
REDIS_URL = "redis://127.0.0.1:6379/9"
TICK_MS = 2_000
EVERY_2S = "*/2 * * * * *"
GRACE_S = 1
# How late a tick's job may be made: a scheduler that finds a tick up to the grace late still
# runs it (a gateway starting, a busy machine), and the submit itself takes time: with
# overlap "cancel" it first cancels the earlier run, on a machine starting two JVMs meanwhile
# (CI once saw more than 0.5 s). Still less than a tick: a scheduler a tick behind fails.
ON_TIME_MS = GRACE_S * 1000 + 900


def late(jobs: list[dict]) -> list[tuple[int, int]]:
    """(tick, ms late) of the jobs made later than ON_TIME_MS after their tick."""
    return [(tick_of(j), j["createTime"] - tick_of(j)) for j in jobs
            if j["createTime"] - tick_of(j) >= ON_TIME_MS]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    Redis.from_url(REDIS_URL).flushdb()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        upgrade(url)
        yield url
        return
    url = create_pg_database()
    upgrade(url)
    try:
        yield url
    finally:
        drop_pg_database(url)


def gateway(stack: ExitStack, workdir: Path, database_url: str) -> Server:
    workdir.mkdir(exist_ok=True)
    return stack.enter_context(running_server(workdir, {
        "SPARKGATE_DATABASE_URL": database_url,
        "SPARKGATE_REDIS_URL": REDIS_URL,
        "SPARKGATE_CONTEXT_ENGINE": "python",
        "SPARKGATE_SCHEDULE_GRACE_S": str(GRACE_S),
        "SPARKGATE_DEPLOY_EXAMPLES": "false",
    }))


def schedule(server: Server, name: str, **fields) -> dict:
    body = {"name": name, "function": "add", "arguments": {"x": 1}, "cron": EVERY_2S, **fields}
    response = server.post("/schedules", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def jobs_of(server: Server, name: str) -> list[dict]:
    response = server.get("/jobs", params={"schedule": name, "limit": 1000})
    assert response.status_code == 200, response.text
    return sorted(response.json(), key=lambda j: j["createTime"])


def tick_of(job: dict) -> int:
    """The tick a job was made for: the last even second at or before its creation."""
    return job["createTime"] // TICK_MS * TICK_MS


def test_two_gateways_and_a_restart_make_one_job_per_tick(tmp_path: Path, database_url: str):
    with ExitStack() as stack:
        a = gateway(stack, tmp_path / "a", database_url)
        b = gateway(stack, tmp_path / "b", database_url)
        a.deploy("plain.py", "add", "add")
        # overlap "cancel": a job that was on the killed gateway's worker, still `started`
        # until the reconciler fails it, does not hold back the next ticks.
        created = schedule(b, "every2s", overlap="cancel")
        first_tick = created["nextRuns"][0]
        time.sleep(9)
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=30)
        time.sleep(3)
        a = gateway(stack, tmp_path / "a", database_url)
        time.sleep(max(0.0, first_tick / 1000 + 20 - time.time()))
        definition = {k: created[k] for k in ("function", "arguments", "cron", "overlap")}
        paused = b.put("/schedules/every2s", json={**definition, "enabled": False})
        assert paused.status_code == 200, paused.text
        paused_at = paused.json()["updatedAt"]
        time.sleep(4)
        jobs = jobs_of(a, "every2s")
    # A tick that a scheduler had in hand as the pause came may still make its job.
    assert [j for j in jobs if j["createTime"] > paused_at + 200] == [], "jobs while paused"
    ticks = [tick_of(j) for j in jobs]
    assert ticks == sorted(set(ticks)), "a tick made two jobs"
    assert ticks == list(range(first_tick, ticks[-1] + 1, TICK_MS)), "a tick made no job"
    assert ticks[-1] >= first_tick + 18_000
    # Each job was made on time (schedulers wake at the tick), by the schedule, as the schedule.
    assert late(jobs) == []
    assert {(j["source"], j["submitter"], j["schedule"]) for j in jobs} == {
        ("Schedule", "schedule:every2s", "every2s")}


def test_ticks_missed_while_every_gateway_was_down(tmp_path: Path, database_url: str):
    with ExitStack() as stack:
        a = gateway(stack, tmp_path / "a", database_url)
        a.deploy("plain.py", "add", "add")
        # overlap "queue": the missed run may still be going at the next tick (a worker
        # starting), which then waits for it instead of being left out.
        schedule(a, "once", missed="once", overlap="queue")
        schedule(a, "skip", missed="skip", overlap="queue")
        wait_until(lambda: jobs_of(a, "once") and jobs_of(a, "skip"), 10, "the first ticks")
    stopped = time.time() * 1000  # every gateway down (SIGTERM), for three ticks and more
    time.sleep(7)
    with ExitStack() as stack:
        restarting = time.time() * 1000
        a = gateway(stack, tmp_path / "a", database_url)
        time.sleep(3)
        cutoff = time.time() * 1000
        once = [j for j in jobs_of(a, "once") if stopped < j["createTime"] < cutoff]
        skip = [j for j in jobs_of(a, "skip") if stopped < j["createTime"] < cutoff]
    # "skip": only the ticks since the restart; "once": those, and one run for the ticks
    # missed, made as soon as the restarted gateway's scheduler ran. (Compared by tick, not by
    # count: under overlap "queue" a slow first run holds the next tick and skips the one
    # after, and the two schedules' first runs need not take as long.)
    assert skip and all(tick_of(j) >= restarting - TICK_MS for j in skip)
    assert late(skip) == []
    ticks = made_for(database_url, ("once", "skip"), stopped - TICK_MS, cutoff)
    first_on_time = min(ticks[j["jobId"]] for j in skip)
    missed = [j for j in once if ticks[j["jobId"]] < first_on_time]
    assert len(missed) == 1, sorted(ticks[j["jobId"]] for j in once)
    assert stopped < ticks[missed[0]["jobId"]] and missed[0]["createTime"] - restarting < 5_000


def made_for(database_url: str, schedules: tuple[str, ...], since_ms: float,
             until_ms: float) -> dict[str, int]:
    """The tick each job of ``schedules`` was made for, by job id: a tick's job carries the
    tick in its idempotency key (jobs/scheduler.py), stored as a digest, so each candidate
    tick's digest is made the scheduler's way and looked up."""
    engine = make_engine(database_url)
    try:
        book = ScheduleBook(engine, Catalog(engine, load_settings(None).context))
        with engine.connect() as conn:
            keys = dict(conn.execute(select(t.jobs.c.idempotency_key, t.jobs.c.id).where(
                t.jobs.c.schedule.in_(schedules))).all())
        found = {}
        for name in schedules:
            schedule = book.get(name)
            for tick in range(int(since_ms) // TICK_MS * TICK_MS, int(until_ms), TICK_MS):
                job_id = keys.get(idempotency_digest(tick_request(schedule, tick)))
                if job_id is not None:
                    found[job_id] = tick
        return found
    finally:
        engine.dispose()


def test_the_schedules_command_with_auth_on(tmp_path: Path):
    """`sparkgate schedules` over HTTP with an admin key: refusals exit 2 with the gateway's
    message, a read key cannot save, and every action shows in the API."""
    with ExitStack() as stack:
        server = stack.enter_context(running_server(tmp_path, {
            "SPARKGATE_AUTH_ENABLED": "true", "SPARKGATE_START_WORKERS": "false",
            "SPARKGATE_REDIS_URL": REDIS_URL}, wait_for_worker=False))
        admin, reader = (server.create_key(name, role) for name, role in (("ops", "admin"),
                                                                        ("viewer", "read")))

        def cli(*args: str, key: str = admin) -> subprocess.CompletedProcess[str]:
            env = {**server.env, "SPARKGATE_URL": server.url, "SPARKGATE_API_KEY": key}
            return subprocess.run(["sparkgate", "schedules", *args], capture_output=True,
                                  text=True, timeout=60, env=env)

        bad = cli("create", "nightly", "--function", "pi", "--cron", "0 2 * *")
        assert bad.returncode == 2 and "cron: expected 5 fields" in bad.stderr
        bad = cli("create", "nightly", "--function", "pi", "--cron", "0 2 * * *",
                  "--arg", "samples=many")
        assert bad.returncode == 2 and "samples" in bad.stderr
        denied = cli("create", "nightly", "--function", "pi", "--cron", "0 2 * * *",
                     key=reader)
        assert denied.returncode == 2 and "admin" in denied.stderr
        made = cli("create", "nightly", "--function", "pi", "--cron", "0 2 * * *",
                   "--timezone", "Europe/Berlin", "--arg", "samples=1000", "--overlap", "queue")
        assert made.returncode == 0, made.stderr
        listed = cli("list", key=reader)
        assert listed.returncode == 0
        assert listed.stdout.splitlines()[1].split()[:6] == [
            "nightly", "pi", "0", "2", "*", "*"]
        assert cli("pause", "nightly").returncode == 0
        assert _headers_get(server, admin, "/schedules/nightly")["enabled"] is False
        resumed = cli("resume", "nightly")
        assert resumed.returncode == 0 and "next run 20" in resumed.stdout
        ran = cli("run", "nightly")
        assert ran.returncode == 0, ran.stderr
        job = _headers_get(server, admin, f"/jobs/{ran.stdout.strip()}")
        assert (job["schedule"], job["submitter"], job["params"]["arguments"]) == (
            "nightly", "key:ops", {"samples": 1000})
        shown = json.loads(cli("show", "nightly", key=reader).stdout)
        assert shown["overlap"] == "queue" and shown["lastJobs"][0]["id"] == job["jobId"]
        assert cli("delete", "nightly").returncode == 0
        gone = cli("show", "nightly")
        assert gone.returncode == 2 and "schedule 'nightly' does not exist" in gone.stderr
    unreachable = subprocess.run(["sparkgate", "schedules", "--url", server.url, "list"],
                                 capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 1 and "cannot reach sparkgate" in unreachable.stderr


def _headers_get(server: Server, key: str, path: str) -> dict:
    response = requests.get(server.api(path), headers={"Authorization": f"Bearer {key}"},
                            timeout=30)
    assert response.status_code == 200, response.text
    return response.json()
