"""5. Scale: listing and filtering with many jobs in PostgreSQL, submit latency with a long
queue, and many sync waiters held by one gateway.

Runs on a gateway without workers (``start_workers = false``), so queued jobs stay queued.
``before`` measures on the small database the earlier scenarios left (the baselines), the
rows are then inserted straight into PostgreSQL (``INSERT ... SELECT generate_series``; queued
ones are also put on their RQ queue, as a submit would), and ``run`` measures again.
Lower is better everywhere: the ratio is the big database's p50 over the small one's.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
from redis import Redis
from rq import Queue

from bench.harness import NOOP_BODY, Bench, check_answers, log
from bench.infra import api, create_context, wait_for
from bench.stats import Row

SCENARIO = "5. scale"

LISTINGS = {
    "list, newest 25": "/jobs?limit=25",
    "filter status=failed": "/jobs?status=failed&limit=25",
    "filter function": "/jobs?function=range_sum&limit=25",
    "filter 2 statuses, page 41, total": "/jobs?status=finished&status=cancelled"
                                         "&limit=25&offset=1000&paginate=true",
}
HELD_CONTEXT = "bench-held"


def before(b: Bench) -> list[Row]:
    """The baselines: listings on the small database, submit latency with an empty queue,
    the gateway's memory with no waiter."""
    rows_now = _count(b, "SELECT count(*) FROM jobs")
    rows = [Row.from_latencies(SCENARIO, f"{name} ({rows_now:,} jobs)", _get(b, path),
                               baseline=True, group=name, key=f"s5.{name}.small")
            for name, path in LISTINGS.items()]
    rows.append(Row.from_latencies(
        SCENARIO, f"submit (async), {_queued(b):,} queued", _submits(b), baseline=True,
        group="submit latency", key="s5.submit.small"))
    b.shared["s5_rss_idle_mb"] = _rss_mb(b)
    start_held_worker(b)
    return rows


def run(b: Bench) -> list[Row]:
    total, queued = b.mode.rows_in_db, b.mode.queued_jobs
    _fill(b, total, queued)
    rows_now = _count(b, "SELECT count(*) FROM jobs")
    small = "" if total >= 1_000_000 else " (quick mode: not 1,000,000)"
    rows = [Row.from_latencies(SCENARIO, f"{name} ({rows_now:,} jobs){small}", _get(b, path),
                               group=name, note="target p50 ≤ 20 ms", key=f"s5.{name}.big")
            for name, path in LISTINGS.items()]
    rows.append(Row.from_latencies(
        SCENARIO, f"submit (async), {_queued(b):,} queued", _submits(b),
        group="submit latency", note="target: unchanged", key="s5.submit.big"))
    rows += waiters(b)
    return rows


def start_held_worker(b: Bench) -> None:
    """The waiters' context and its worker, started early so that its JVM is warm by then."""
    assert b.gateway is not None
    create_context(b.gateway, HELD_CONTEXT, maxJobs=4)
    b.shared["s5_worker"] = b.procs.start(
        "worker-held", ["sparkgate", "worker", "--context", HELD_CONTEXT], env=b.gateway.env)


def waiters(b: Bench) -> list[Row]:
    """Hold ``waiters`` sync requests while their context's worker is paused (SIGSTOP), take
    the gateway's memory, then resume the worker and time until every one is answered."""
    assert b.gateway is not None
    gateway, count, worker = b.gateway, b.mode.waiters, b.shared["s5_worker"]
    wait_for(lambda: any(w["context"] == HELD_CONTEXT for w in api("GET", gateway.api("/workers"))),
             180, f"the {HELD_CONTEXT} context's worker")
    api("POST", b.run_url("noop", force="true", context=HELD_CONTEXT), NOOP_BODY)
    idle_mb = b.shared["s5_rss_idle_mb"]
    # Paused, it takes no job (one it was popping waits in its socket until it resumes).
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        b.http.send("http", method="POST", url=b.run_url("noop", force="true",
                                                         context=HELD_CONTEXT),
                    count=count, concurrency=count, body=NOOP_BODY, timeout_s=900)
        wait_for(lambda: api("GET", gateway.api("/status"))["syncWaiters"] >= count, 120,
                 f"{count} sync waiters in the gateway", interval_s=0.5)
        samples = []
        for _ in range(5):
            samples.append(_rss_mb(b))
            time.sleep(0.2)
        held_mb = max(samples)
    finally:
        resumed = time.perf_counter()
        os.kill(worker.pid, signal.SIGCONT)
    got = b.http.receive()
    answered_s = time.perf_counter() - resumed
    check_answers(got, "sync waiters")
    b.procs.stop(worker)
    log.info("%d waiters: %.0f MB idle, %.0f MB held; all answered %.1fs after the worker "
             "resumed", count, idle_mb, held_mb, answered_s)
    return [
        Row(SCENARIO, "gateway memory, no waiter", value=idle_mb, value_unit="MB RSS",
            baseline=True, group="sync waiters", metric="value", key="s5.waiters.idle"),
        Row.from_latencies(
            SCENARIO, f"gateway memory, {count:,} sync waiters held", got["latencies_ms"],
            value=held_mb, value_unit="MB RSS", group="sync waiters", metric="value",
            key="s5.waiters.held", extra={"answered_s": answered_s, "count": count},
            note=f"all {count:,} answered 200, the last {answered_s:.1f}s after their "
                 f"(paused) worker resumed; p50/p99: the waits"),
    ]


# -- helpers -----------------------------------------------------------------------------------

def _get(b: Bench, path: str) -> list[float]:
    assert b.gateway is not None
    got = b.http_run(b.gateway.api(path), b.mode.listing_calls, 1, method="GET", warmup=5)
    return got["latencies_ms"]


def _submits(b: Bench) -> list[float]:
    got = b.http_run(b.run_url("noop"), b.mode.submit_latency_calls, 1, body=NOOP_BODY,
                     warmup=10)
    return got["latencies_ms"]


def _rss_mb(b: Bench) -> float:
    assert b.gateway is not None
    return psutil.Process(b.gateway.pid).memory_info().rss / 2**20


def _count(b: Bench, sql: str) -> int:
    with b.db.connect() as conn:
        return conn.execute(sql).fetchone()[0]


def _queued(b: Bench) -> int:
    return _count(b, "SELECT count(*) FROM jobs WHERE status = 'queued'")


def _fill(b: Bench, total: int, queued: int) -> None:
    """Top the jobs table up to ``total`` rows, ``queued`` of them queued (and on RQ)."""
    started = time.perf_counter()
    now_ms = time.time_ns() // 1_000_000
    more_queued = max(0, queued - _queued(b))
    history = max(0, total - _count(b, "SELECT count(*) FROM jobs") - more_queued)
    with b.db.connect() as conn:
        # Finished 80%, failed 15%, cancelled 5%, over five functions, three contexts, fifty
        # workers; older than anything the gateway made, two seconds apart.
        conn.execute("""
            INSERT INTO jobs (id, function, context, arguments, file_path, class_name,
                              status, source, external_id, create_time, start_time, end_time,
                              result, error, worker_id)
            SELECT gen_random_uuid()::text,
                   (ARRAY['noop','range_sum','etl_daily','report','score'])[1 + mod(i, 5)],
                   (ARRAY['default','default','default','etl','reports'])[1 + mod(i, 5)],
                   '{"value": 1}'::json, 'bench_functions.py', 'noop',
                   CASE WHEN mod(i, 20) < 16 THEN 'finished' WHEN mod(i, 20) < 19 THEN 'failed'
                        ELSE 'cancelled' END,
                   'http', CASE WHEN mod(i, 10) = 0 THEN 'ext-' || i END,
                   %(start)s + i * 2000, %(start)s + i * 2000 + 5, %(start)s + i * 2000 + 120,
                   CASE WHEN mod(i, 20) < 16 THEN '{"value": 1, "tag": "bench"}'::json END,
                   CASE WHEN mod(i, 20) BETWEEN 16 AND 18
                        THEN 'ValueError: boom' || chr(10) || chr(10) || 'Traceback ...' END,
                   'default-benchhost-' || mod(i, 50)
            FROM generate_series(1, %(n)s) AS i
        """, {"n": history, "start": now_ms - 86_400_000 - history * 2000})
        ids = [r[0] for r in conn.execute("""
            INSERT INTO jobs (id, function, context, arguments, file_path, class_name,
                              artifact_sha1, status, source, create_time)
            SELECT gen_random_uuid()::text, 'noop', 'default', '{"value": 1}'::json,
                   'bench_functions.py', 'noop', NULL, 'queued', 'http',
                   %(now)s - 1000 - %(n)s + i  -- submitted over the last minutes, 1 ms apart
            FROM generate_series(1, %(n)s) AS i
            RETURNING id
        """, {"n": more_queued, "now": now_ms})]
    inserted = time.perf_counter()
    _enqueue(b, ids)
    enqueued = time.perf_counter()
    with b.db.connect() as conn:
        conn.execute("VACUUM (ANALYZE) jobs")
    log.info("filled: %d history rows, %d queued in %.1fs (+%.1fs RQ, +%.1fs VACUUM ANALYZE)",
             history, len(ids), inserted - started, enqueued - inserted,
             time.perf_counter() - enqueued)
    b.notes.append(
        f"Scenario 5's rows were inserted with `INSERT ... SELECT generate_series` "
        f"({history:,} finished/failed/cancelled, {len(ids):,} queued, also put on their RQ "
        f"queue with RQ's `enqueue_many`) in {enqueued - started:.0f}s, then "
        f"`VACUUM (ANALYZE) jobs`.")


def _enqueue(b: Bench, ids: list[str]) -> None:
    """Put queued jobs on their RQ queue as sparkgate's JobQueue.enqueue would, in batches."""
    redis = Redis.from_url(b.redis_url)
    queue = Queue("sparkgate:default", connection=redis)
    for start in range(0, len(ids), 2000):
        batch = [Queue.prepare_data("sparkgate.workers.execution.JobRunner.run", args=(job_id,),
                                    job_id=job_id, result_ttl=0, timeout=-1,
                                    description=f"sparkgate job {job_id} in context default")
                 for job_id in ids[start:start + 2000]]
        with redis.pipeline() as pipe:
            queue.enqueue_many(batch, pipeline=pipe)
            pipe.execute()
    redis.close()
