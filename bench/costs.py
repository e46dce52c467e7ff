"""Where a request's time goes, from outside the servers: CPU time the gateway and the worker
(Python, and its JVM) spent per job, and PostgreSQL transactions committed per job (each
commit waits for a WAL flush to disk). Read before and after a measured phase."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from bench.harness import Bench
from bench.infra import api


@dataclass
class Snapshot:
    gateway_cpu_s: float
    worker_cpu_s: float | None
    jvm_cpu_s: float | None
    commits: int
    rows_written: int
    sessions: int


def worker_pid(b: Bench, context: str = "default") -> int | None:
    assert b.gateway is not None
    for worker in api("GET", b.gateway.api("/workers")):
        if worker["context"] == context:
            return int(worker["address"].rsplit(":", 1)[1])  # "host:pid"
    return None


def snapshot(b: Bench, worker: int | None) -> Snapshot:
    assert b.gateway is not None
    gateway = _cpu(psutil.Process(b.gateway.pid))
    worker_cpu = jvm_cpu = None
    if worker is not None:
        process = psutil.Process(worker)
        worker_cpu = _cpu(process)
        jvm_cpu = sum(_cpu(c) for c in process.children(recursive=True))
    with b.db.connect() as conn:
        commits, sessions = conn.execute(
            "SELECT xact_commit, sessions FROM pg_stat_database "
            "WHERE datname = current_database()").fetchone()
        rows = conn.execute("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
                            "FROM pg_stat_user_tables").fetchone()[0]
    return Snapshot(gateway, worker_cpu, jvm_cpu, commits, int(rows), sessions)


def per_job(b: Bench, before: Snapshot, worker: int | None, jobs: int) -> dict[str, float]:
    """Deltas since ``before``, per job. Waits a moment first: PostgreSQL's backends publish
    their counters at most once a second."""
    time.sleep(1.2)
    after = snapshot(b, worker)
    costs = {"gateway_cpu_ms": (after.gateway_cpu_s - before.gateway_cpu_s) * 1000 / jobs,
             # one more commit: our own stats query runs in a transaction of its own
             "pg_commits": (after.commits - before.commits - 1) / jobs,
             "pg_rows_written": (after.rows_written - before.rows_written) / jobs,
             # connections opened (each a new PostgreSQL backend process); one is ours
             "pg_connections": (after.sessions - before.sessions - 1) / jobs}
    if after.worker_cpu_s is not None and before.worker_cpu_s is not None:
        costs["worker_cpu_ms"] = (after.worker_cpu_s - before.worker_cpu_s) * 1000 / jobs
        costs["jvm_cpu_ms"] = (after.jvm_cpu_s - before.jvm_cpu_s) * 1000 / jobs
    return costs


def describe(costs: dict[str, float]) -> str:
    parts = [f"gateway CPU {costs['gateway_cpu_ms']:.1f} ms"]
    if "worker_cpu_ms" in costs:
        parts.append(f"worker CPU {costs['worker_cpu_ms']:.1f} ms "
                     f"(+ JVM {costs['jvm_cpu_ms']:.1f} ms)")
    parts.append(f"PostgreSQL: {costs['pg_commits']:.1f} transactions committed (a pool "
                 f"pre-ping counts as one), {costs['pg_rows_written']:.1f} rows written, "
                 f"{costs['pg_connections']:.2f} new connections")
    return "per job: " + ", ".join(parts)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system
