"""``GET /metrics``: read with prometheus-client's own parser, its counts equal the jobs.

Storage tests run on SQLite and PostgreSQL with real Redis; jobs are moved through their
statuses through the store, as tests/test_api_jobs.py does without workers. One real
``sparkgate serve --processes 2`` (python engine, JSON log lines) checks that a scrape through
the shared port gets the same numbers from either gateway process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import delete, insert, update

from sparkgate.gateway.app import ENDPOINTS
from sparkgate.jobs import tables as t
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.ids import uuid7
from sparkgate.jobs.keys import KeyStore
from sparkgate.jobs.metrics import StoredTotals
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import NewJob, Store
from sparkgate.log_format import JsonFormatter
from tests.api_responses import error_of, json_of
from tests.server_process import Server, running_server, wait_until
from tests.test_api_jobs import API, WAIT_S, WORKER, deploy, finish, start, submit, until_waiting
from tests.test_gateway_processes import one_connection_to_each

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ---------------------------------------------------------------------------------------------
# Reading an exposition


def samples(text: str) -> list[Sample]:
    """Every sample of the text, as prometheus-client's parser reads it."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(found: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(s.value for s in found
               if s.name == name and labels.items() <= s.labels.items())


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


async def scrape(client, **headers: str) -> list[Sample]:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == CONTENT_TYPE
    return samples(await response.text())


# ---------------------------------------------------------------------------------------------
# Jobs


async def test_job_counts_and_histograms_equal_the_jobs(client, store, redis, queue):
    await deploy(client, "echo", "echo.py")
    ids = [await submit(client, body={"value": n}) for n in range(7)]
    # A worker takes five, each after 30 ms in the queue; two stay queued.
    taken = [queue.pop("default", 1) for _ in range(5)]
    assert taken == ids[:5]
    started = {}
    for job_id in taken:
        created = store.get_job(job_id).create_time
        started[job_id] = store.transition(job_id, JobStatus.STARTED, worker_id=WORKER,
                                           start_time=created + 30).start_time
    a, b, c, d, _still_running = taken
    for job_id in (a, b):  # 0.7 s each
        store.transition(job_id, JobStatus.FINISHED, result=1, end_time=started[job_id] + 700)
    store.transition(c, JobStatus.FAILED, error="boom", end_time=started[c] + 7)
    store.transition(d, JobStatus.CANCELLING)
    store.transition(d, JobStatus.CANCELLED, end_time=started[d] + 20_000)
    # One of the queued two is cancelled there: it ends without ever running.
    await json_of(await client.delete(f"{API}/jobs/{ids[5]}"))

    found = await scrape(client)

    def jobs(name: str, status: str) -> float:
        return value(found, name, function="echo", context="default", status=status)

    assert [jobs("sparkgate_jobs", s) for s in ("queued", "started", "cancelling")] == [1, 1, 0]
    assert [jobs("sparkgate_jobs_ended_total", s) for s in ("finished", "failed",
                                                            "cancelled")] == [2, 1, 2]
    run = {"function": "echo", "context": "default"}
    # Run times: 7 ms, 0.7 s twice, 20 s; the queued-then-cancelled job never ran.
    assert value(found, "sparkgate_job_run_seconds_count", **run) == 4
    assert value(found, "sparkgate_job_run_seconds_sum", **run) == pytest.approx(21.407)
    assert [value(found, "sparkgate_job_run_seconds_bucket", le=le, **run)
            for le in ("0.005", "0.01", "0.5", "1.0", "10.0", "30.0", "+Inf")] == \
        [0, 1, 1, 3, 3, 4, 4]
    # Queue waits: 30 ms each, of the five that started (the one still running included).
    assert value(found, "sparkgate_job_queue_wait_seconds_count", **run) == 5
    assert value(found, "sparkgate_job_queue_wait_seconds_sum", **run) == pytest.approx(0.15)
    assert [value(found, "sparkgate_job_queue_wait_seconds_bucket", le=le, **run)
            for le in ("0.025", "0.05", "+Inf")] == [0, 5, 5]
    assert value(found, "sparkgate_queue_depth", context="default") == 1
    assert value(found, "sparkgate_metrics_source_up", source="database") == 1
    assert value(found, "sparkgate_metrics_source_up", source="redis") == 1
    # Every job is counted once, whatever its status.
    assert value(found, "sparkgate_jobs") + value(found, "sparkgate_jobs_ended_total") == 7


def new_job(function: str = "f", context: str = "default") -> NewJob:
    return NewJob(function=function, context=context, arguments={}, file_path="f.py",
                  class_name=function, artifact_sha1=None)


def brute_force(store: Store) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """(function, context, status) -> (jobs, run time observations, wait observations),
    counted from every row."""
    counted: dict[tuple[str, str, str], tuple[int, int, int]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(t.jobs.select()):
            key = (row.function, row.context, row.status)
            jobs, runs, waits = counted.get(key, (0, 0, 0))
            counted[key] = (jobs + 1, runs + (row.end_time is not None and
                                              row.start_time is not None),
                            waits + (row.start_time is not None))
    return counted


def summed(totals: StoredTotals) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    read = totals.read()
    return {key: (g.count, sum(g.run), sum(g.wait)) for key, g in read.jobs.items()}


def test_jobs_are_summed_once_ended_and_every_process_agrees(store: Store):
    """Margin 0: every job is folded at once, so the older-and-unended path is what counts
    them until they end. A second reader (another process) starts from nothing and agrees."""
    first = StoredTotals(store.engine, margin_ms=0)
    jobs = [store.create_job(new_job("f" if n % 2 else "g")) for n in range(6)]
    assert summed(first) == brute_force(store) == {("f", "default", "queued"): (3, 0, 0),
                                                   ("g", "default", "queued"): (3, 0, 0)}
    now = now_ms()
    for job in jobs[:4]:
        store.transition(job.id, JobStatus.STARTED, worker_id=WORKER, start_time=now)
    for job in jobs[:2]:
        store.transition(job.id, JobStatus.FINISHED, result=1, end_time=now + 5)
    store.transition(jobs[2].id, JobStatus.FAILED, error="boom", end_time=now + 9)
    store.transition(jobs[5].id, JobStatus.CANCELLED, end_time=now)
    late = store.create_job(new_job("f", "other"))
    assert summed(first) == brute_force(store)
    assert summed(StoredTotals(store.engine, margin_ms=0)) == brute_force(store)
    # Removed while queued (its queueing failed): forgotten, as it was never announced.
    store.delete_unqueued([jobs[4].id, late.id])
    assert summed(first) == brute_force(store)
    assert summed(StoredTotals(store.engine)) == brute_force(store)  # the default margin


def test_deliveries_are_counted_by_status(store: Store):
    first = StoredTotals(store.engine, margin_ms=0)
    ids = {status: [uuid7() for _ in range(n)]
           for status, n in (("pending", 3), ("delivered", 2), ("failed", 1))}
    rows = [{"id": i, "webhook_id": "w", "url": "https://hooks.example/x", "job_id": uuid7(),
             "event": "finished", "status": status, "attempts": 1, "next_attempt_ms": 0,
             "created_at": now_ms()} for status, each in ids.items() for i in each]
    d = t.webhook_deliveries
    with store.engine.begin() as conn:
        conn.execute(insert(d), rows)

    def counts(totals: StoredTotals) -> dict[str, int]:
        return {status: g.count for (status,), g in totals.read().deliveries.items()}

    assert counts(first) == {"pending": 3, "delivered": 2, "failed": 1}
    with store.engine.begin() as conn:  # the sender delivers one, gives one up; one is deleted
        conn.execute(update(d).where(d.c.id == ids["pending"][0]).values(status="delivered"))
        conn.execute(update(d).where(d.c.id == ids["pending"][1]).values(status="failed"))
        conn.execute(delete(d).where(d.c.id == ids["pending"][2]))
    assert counts(first) == counts(StoredTotals(store.engine)) == {"delivered": 3, "failed": 2}


# ---------------------------------------------------------------------------------------------
# HTTP, sync waiters


async def test_http_requests_are_counted_by_route_template(client):
    for job_id in ("00000000-0000-7000-8000-000000000001", "00000000-0000-7000-8000-000000000002"):
        await error_of(await client.get(f"{API}/jobs/{job_id}"), 404, "not_found")
    await json_of(await client.get(f"{API}/status"))
    await error_of(await client.get("/no/such/path/at/all"), 404, "not_found")
    await error_of(await client.patch(f"{API}/status"), 405, "method_not_allowed")

    found = await scrape(client)

    def requests(**labels: str) -> float:
        return value(found, "sparkgate_http_requests_total", **labels)

    assert requests(route="/v2/api/jobs/{id}", method="GET", status="404") == 2
    assert requests(route="/v2/api/status", method="GET", status="200") == 1
    assert requests(route="unmatched", method="GET", status="404") == 1
    assert requests(route="unmatched", method="PATCH", status="405") == 1
    assert value(found, "sparkgate_http_request_duration_seconds_count",
                 route="/v2/api/jobs/{id}", method="GET") == 2
    # No raw path, no client-chosen method: only declared templates and bounded words.
    templates = {route.template for route in ENDPOINTS} | {"unmatched"}
    labelled = [s for s in found if s.name.startswith("sparkgate_http_request")]
    assert {s.labels["route"] for s in labelled} <= templates
    assert {s.labels["method"] for s in labelled} <= {"GET", "HEAD", "POST", "PUT", "DELETE",
                                                      "PATCH", "OPTIONS", "OTHER"}
    # The scrape itself counts in the next one.
    assert requests(route="/metrics") == 0
    assert value(await scrape(client), "sparkgate_http_requests_total", route="/metrics",
                 status="200") == 1


async def test_sync_waiters_are_a_gauge(client, store, redis, queue):
    await deploy(client, "echo", "echo.py")
    call = asyncio.create_task(client.post(f"{API}/functions/echo/jobs?force=true", json={}))
    job_id = await asyncio.to_thread(queue.pop, "default", WAIT_S)
    await until_waiting(client)
    assert value(await scrape(client), "sparkgate_sync_waiters") == 1
    await asyncio.to_thread(start, store, redis, job_id)
    await asyncio.to_thread(finish, store, redis, job_id, 1)
    await json_of(await asyncio.wait_for(call, WAIT_S))
    found = await scrape(client)
    assert value(found, "sparkgate_sync_waiters") == 0
    assert value(found, "sparkgate_http_requests_total",
                 route="/v2/api/functions/{name}/jobs", method="POST", status="200") == 1


# ---------------------------------------------------------------------------------------------
# Authentication


async def test_with_authentication_on_a_read_key_is_needed(make_client, engine):
    client = await make_client(auth_enabled=True)
    await error_of(await client.get("/metrics"), 401, "unauthenticated")
    read = KeyStore(engine).create("prometheus", "read").token
    found = await scrape(client, Authorization=f"Bearer {read}")
    assert value(found, "sparkgate_http_requests_total", route="/metrics", status="401") == 1
    document = await json_of(await client.get(f"{API}/openapi.json"))
    operation = document["paths"]["/metrics"]["get"]
    assert operation["x-sparkgate-role"] == "read"
    assert set(operation["responses"]) >= {"200", "401", "403"}


# ---------------------------------------------------------------------------------------------
# JSON log lines


def test_json_log_lines_are_one_object_each():
    formatter = JsonFormatter()
    logger = logging.getLogger("sparkgate.test")
    record = logger.makeRecord("sparkgate.test", logging.WARNING, __file__, 1,
                               "two\nlines %s", ("here",), None, extra={"job_id": "j-1"})
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logger.makeRecord("sparkgate.test", logging.ERROR, __file__, 2, "failed",
                                   (), sys.exc_info())
    lines = [formatter.format(record), formatter.format(failed)]
    assert all("\n" not in line for line in lines)
    first, second = (json.loads(line) for line in lines)
    assert first == {"time": first["time"], "level": "WARNING", "logger": "sparkgate.test",
                     "message": "two\nlines here", "job_id": "j-1"}
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-01-02T03:04:05.678Z")
    assert second["level"] == "ERROR" and "job_id" not in second
    assert second["exc_info"].startswith("Traceback") and "ValueError: boom" in second["exc_info"]


# ---------------------------------------------------------------------------------------------
# A real serve with two gateway processes


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("metrics")
    with running_server(workdir, {"SPARKGATE_PROCESSES": "2",
                                  "SPARKGATE_CONTEXT_ENGINE": "python",
                                  "SPARKGATE_DEPLOY_EXAMPLES": "false",
                                  "SPARKGATE_LOG_FORMAT": "json"}) as server:
        server.deploy("noisy.py", "noisy", "noisy")
        yield server


def call(connection: HTTPConnection, method: str, path: str, body: Any = None) -> str:
    connection.request(method, path, body=None if body is None else json.dumps(body),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    text = response.read().decode()
    assert response.status == 200, text
    return text


@pytest.mark.slow
def test_every_gateway_process_answers_the_same(server: Server):
    connections = one_connection_to_each(server)
    assert len(connections) == 2
    runs = 6
    for n in range(runs):  # through both processes in turn, each waiting for its job
        connection = list(connections.values())[n % 2]
        assert json.loads(call(connection, "POST", f"{API}/functions/noisy/jobs?force=true",
                               {"n": n}))["success"] is True
    scraped = {pid: samples(call(connection, "GET", "/metrics"))
               for pid, connection in connections.items()}
    for found in scraped.values():
        noisy = {"function": "noisy", "context": "default"}
        assert value(found, "sparkgate_jobs_ended_total", status="finished", **noisy) == runs
        assert value(found, "sparkgate_jobs", **noisy) == 0
        assert value(found, "sparkgate_job_run_seconds_count", **noisy) == runs
        assert value(found, "sparkgate_job_queue_wait_seconds_count", **noisy) == runs
        # Per-process counts, added up over both processes' files.
        assert value(found, "sparkgate_http_requests_total", route="/v2/api/functions/{name}/jobs",
                     method="POST", status="200") == runs
        assert value(found, "sparkgate_gateway_processes") == 2
        assert value(found, "sparkgate_workers", context="default", state="running") == 1
    first, second = scraped.values()

    def shared(found: list[Sample]) -> list[Sample]:
        return sorted((s for s in found if s.name.startswith(("sparkgate_job",
                                                              "sparkgate_webhook"))),
                      key=lambda s: (s.name, sorted(s.labels.items())))
    assert shared(first) == shared(second)
    for connection in connections.values():
        connection.close()


@pytest.mark.slow
def test_log_lines_are_json_and_a_jobs_lines_name_it(server: Server):
    job_id = server.submit("noisy", {"n": 41})
    server.wait_for_job(job_id, {"finished"})
    serve_lines = [json.loads(line) for line in server.log.read_text().splitlines()]
    assert any(e["logger"] == "sparkgate.serve" and e["message"].startswith("sparkgate on ")
               for e in serve_lines)
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in serve_lines)
    worker_log = server.data_dir / "logs" / "worker-default.log"

    def said() -> list[dict]:
        entries = [json.loads(line) for line in worker_log.read_text().splitlines()
                   if line.startswith("{")]
        return [e for e in entries if e.get("job_id") == job_id]
    [entry] = wait_until(said, 10, "the job's log line in the worker's log")
    assert (entry["logger"], entry["level"], entry["message"]) == ("noisy", "WARNING",
                                                                   "noisy says 41")
    assert entry["time"].endswith("Z")


async def test_the_grafana_dashboard_names_only_metrics_that_exist(client):
    await client.get(f"{API}/status")  # the HTTP series exist from the first request
    response = await client.get("/metrics")
    emitted = set()
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    for name, kind in families(await response.text()).items():
        emitted.update(name + suffix for suffix in suffixes[kind])
    dashboard = json.loads((Path(__file__).parent.parent / "docs" / "grafana-dashboard.json")
                           .read_text())
    exprs = [target["expr"] for panel in dashboard["panels"]
             for target in panel.get("targets", ())]
    named = {name for expr in exprs for name in re.findall(r"\bsparkgate_\w+", expr)}
    assert len(exprs) >= 12 and named and named <= emitted, named - emitted
