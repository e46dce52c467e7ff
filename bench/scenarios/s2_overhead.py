"""2. Gateway overhead: a no-op function (returns its arguments), ``?force=true``, sequential
and from 32 concurrent clients, through sparkgate on PostgreSQL and through one with the
embedded defaults (SQLite, an embedded Redis: ``sparkgate serve`` with no settings); each in
the spark ``default`` context (a Spark function that does nothing) and, as a plain function,
in a python context (the job's path without the Spark engine's own calls).

Baseline: a bare aiohttp server answering the same request with its body (bench/echo_server.py)
— what HTTP alone costs with this client on this machine. Lower latency is better: the ratio
compares p50 (sequential) and p99 (32 clients), the metrics of the design's targets. The notes
say where a job's time went: the job's own timestamps (queued → started → ended, ms), and the
CPU and PostgreSQL commits per job (bench/costs.py).
"""

from __future__ import annotations

import statistics

from bench import costs
from bench.harness import NOOP_BODY, Bench
from bench.infra import api, create_context
from bench.profiling import profiled
from bench.stats import Row

SCENARIO = "2. gateway overhead, no-op, sync"
CLIENTS = 32
PG_TARGET = "target p50 ≤ 5 ms on PostgreSQL"
PYTHON_CONTEXT = "noop-python"
# (function, context or None for its default, row label, key suffix)
NOOPS = (("noop", None, "", ""), ("plain_noop", PYTHON_CONTEXT, ", python context", "-python"))


def prepare(b: Bench) -> None:
    """The python context (precreated) and the plain no-op, on both gateways."""
    for gateway in (b.gateway, b.embedded):
        if gateway is not None:
            create_context(gateway, PYTHON_CONTEXT, engine="python", precreated=True)
            api("POST", gateway.api("/functions"), {
                "name": "plain_noop", "path": "bench_functions.py", "className": "plain_noop",
                "defaultContext": PYTHON_CONTEXT})


def run(b: Bench) -> list[Row]:
    answer = api("POST", b.run_url("noop", force="true"), NOOP_BODY)
    assert answer == {"success": True, "payload": NOOP_BODY, "errors": []}, answer
    echo = f"{b.echo_url}/v2/api/functions/noop/jobs"
    rows = []
    for group, clients, count, metric, target in (
            ("sequential", 1, b.mode.noop_sequential, "p50_ms", "target p50 ≤ 3 ms"),
            (f"{CLIENTS} clients", CLIENTS, b.mode.noop_concurrent, "p99_ms",
             "target p99 ≤ 15 ms")):
        got = b.http_run(echo, count, clients, body=NOOP_BODY, warmup=2 * clients + 20)
        rows.append(Row.from_latencies(
            SCENARIO, f"{group}: bare aiohttp echo", got["latencies_ms"], group=group,
            baseline=True, metric=metric, throughput=count / got["wall_s"], unit="req/s",
            key=f"s2.{clients}.echo"))
        for function, context, label, suffix in NOOPS:
            got, spent = _measure_sparkgate(b, function, context, count, clients)
            note = f"{target if clients > 1 else PG_TARGET}; {costs.describe(spent)}"
            if clients == 1:
                note += "; " + _timeline(b, function, count)
            rows.append(Row.from_latencies(
                SCENARIO, f"{group}: sparkgate (PostgreSQL){label}, force=true",
                got["latencies_ms"], group=group, metric=metric,
                throughput=count / got["wall_s"], unit="req/s", note=note,
                key=f"s2.{clients}.sparkgate{suffix}", extra=spent))
            if b.embedded is not None:
                url = b.run_url(function, b.embedded, force="true")
                b.http_run(url, 2 * clients + 20, clients, body=NOOP_BODY)  # warm-up
                got = b.http_run(url, count, clients, body=NOOP_BODY)
                rows.append(Row.from_latencies(
                    SCENARIO, f"{group}: sparkgate (embedded default){label}, force=true",
                    got["latencies_ms"], group=group, metric=metric,
                    throughput=count / got["wall_s"], unit="req/s", note=target,
                    key=f"s2.{clients}.embedded{suffix}"))
    return rows


def _measure_sparkgate(b: Bench, function: str, context: str | None, count: int,
                       clients: int) -> tuple[dict, dict]:
    assert b.gateway is not None
    url = b.run_url(function, force="true")
    b.http_run(url, 2 * clients + 20, clients, body=NOOP_BODY)  # warm-up
    worker = costs.worker_pid(b, context or "default")
    before = costs.snapshot(b, worker)
    if worker is not None:
        # The gateway: where its CPU goes (GIL holder); the worker: where a job waits.
        name = f"s2-{clients}-clients{'-' + context if context else ''}"
        with profiled(b, f"{name}-gateway", b.gateway.pid, gil=True), \
                profiled(b, f"{name}-worker", worker):
            got = b.http_run(url, count, clients, body=NOOP_BODY)
    else:
        got = b.http_run(url, count, clients, body=NOOP_BODY)
    return got, costs.per_job(b, before, worker, count)


def _timeline(b: Bench, function: str, count: int) -> str:
    """Medians over the jobs just run, from their own timestamps (ms resolution)."""
    assert b.gateway is not None
    jobs = api("GET", b.gateway.api(f"/jobs?function={function}&limit={min(count, 1000)}"))
    queued = statistics.median(j["startTime"] - j["createTime"] for j in jobs)
    running = statistics.median(j["endTime"] - j["startTime"] for j in jobs)
    return (f"job timestamps (median): created → started {queued:.0f} ms, "
            f"started → ended {running:.0f} ms")
