"""Where a request's time goes, from outside the servers: CPU time the gateway (all its
processes), the worker (Python, and its JVM), PostgreSQL, Redis and the load generator spent
per job, and PostgreSQL's write transactions and WAL per job (each commit of a write waits for
a WAL flush to disk). Read before and after a measured phase.

The write transactions are counted by transaction ids handed out and the WAL by its position,
both exact the moment they are read: PostgreSQL's statistics views (pg_stat_database's commits,
pg_stat_user_tables' rows) lag, as an idle backend publishes its counts up to 10 s late.

The sum is what a job costs the machine: no load of such jobs can go faster than the machine's
cores (seconds of CPU per second) divided by it, whatever the latencies."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import psutil

from bench.harness import Bench
from bench.infra import Gateway, api

CORES = psutil.cpu_count() or 1


@dataclass
class Snapshot:
    # CPU seconds so far by name (_cpu_seconds); of PostgreSQL: the next transaction id, the
    # WAL's position (bytes), and the database's sessions so far.
    cpu_s: dict[str, float]
    next_xid: int
    wal_bytes: int
    sessions: int


def worker_pid(b: Bench, context: str = "default") -> int | None:
    assert b.gateway is not None
    for worker in api("GET", b.gateway.api("/workers")):
        if worker["context"] == context:
            return int(worker["address"].rsplit(":", 1)[1])  # "host:pid"
    return None


def snapshot(b: Bench, worker: int | None, gateway: Gateway | None = None) -> Snapshot:
    """``gateway``: the one the calls go through (default: the run's main gateway)."""
    cpu_s = _cpu_seconds(b, worker, gateway)
    with b.db.connect() as conn:
        next_xid, wal_bytes, sessions = conn.execute(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, sessions "
            "FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return Snapshot(cpu_s, next_xid, wal_bytes, sessions)


def per_job(b: Bench, before: Snapshot, worker: int | None, jobs: int,
            gateway: Gateway | None = None) -> dict[str, float]:
    """Deltas since ``before`` (taken with the same ``worker`` and ``gateway``), per job: the
    CPU at once, PostgreSQL's a moment later (its sessions count is published at most once a
    second)."""
    cpu_s = _cpu_seconds(b, worker, gateway)
    time.sleep(1.2)
    after = snapshot(b, worker, gateway)
    costs = {f"{name}_cpu_ms": (seconds - before.cpu_s[name]) * 1000 / jobs
             for name, seconds in cpu_s.items()}
    costs.update({
        # Transaction ids go to transactions that write (a read, a pool's pre-ping, ours, none).
        "pg_write_transactions": (after.next_xid - before.next_xid) / jobs,
        "pg_wal_bytes": (after.wal_bytes - before.wal_bytes) / jobs,
        # connections opened (each a new PostgreSQL backend process); one is ours
        "pg_connections": (after.sessions - before.sessions - 1) / jobs})
    return costs


def _cpu_seconds(b: Bench, worker: int | None, gateway: Gateway | None) -> dict[str, float]:
    """PostgreSQL: every process of the machine's server (other databases' load included);
    Redis: the run's own redis-server; load: the agent that sends the calls."""
    gateway = gateway or b.gateway
    assert gateway is not None
    seconds = {"gateway": _gateway_cpu(psutil.Process(gateway.pid)),
               "postgres": _postgres_cpu(), "redis": _redis_cpu(b),
               "load": _cpu(psutil.Process(b.http.process.pid))}
    if worker is not None:
        process = psutil.Process(worker)
        seconds["worker"] = _cpu(process)
        seconds["jvm"] = sum(_cpu(c) for c in process.children(recursive=True))
    return seconds


def describe(costs: dict[str, float]) -> str:
    parts = [f"gateway CPU {costs['gateway_cpu_ms']:.1f} ms"]
    if "worker_cpu_ms" in costs:
        parts.append(f"worker CPU {costs['worker_cpu_ms']:.1f} ms "
                     f"(+ JVM {costs['jvm_cpu_ms']:.1f} ms)")
    parts += [f"PostgreSQL CPU {costs['postgres_cpu_ms']:.1f} ms",
              f"Redis CPU {costs['redis_cpu_ms']:.2f} ms",
              f"load generator CPU {costs['load_cpu_ms']:.1f} ms"]
    total = sum(v for k, v in costs.items() if k.endswith("_cpu_ms"))
    parts.append(f"{total:.1f} ms of CPU in all: at most {CORES * 1000 / total:,.0f} jobs/s "
                 f"on {CORES} cores")
    parts.append(f"PostgreSQL: {costs['pg_write_transactions']:.2f} write transactions, "
                 f"{costs['pg_wal_bytes']:,.0f} bytes of WAL, "
                 f"{costs['pg_connections']:.2f} new connections")
    return "per job: " + ", ".join(parts)


def _gateway_cpu(serve: psutil.Process) -> float:
    """``serve``'s own process and its other gateway processes (``--processes``), not its
    workers."""
    others = [child for child in serve.children()
              if "gateway-process" in child.cmdline()]
    return _cpu(serve) + sum(_cpu(child) for child in others)


def _postgres_cpu() -> float:
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "postgres":
            with contextlib.suppress(psutil.NoSuchProcess):  # a backend that just ended
                total += _cpu(process)
    return total


def _redis_cpu(b: Bench) -> float:
    sock = b.redis_url.removeprefix("unix://")
    for process in psutil.process_iter(["cmdline"]):
        # redis-server retitles itself ("redis-server unixsocket:<path>").
        if sock in " ".join(process.info["cmdline"] or []):
            return _cpu(process)
    raise RuntimeError(f"no redis-server serving {sock}")


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system
