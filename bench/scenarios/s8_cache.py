"""8. Result cache: a no-op function deployed with ``cache`` (docs/caching.md), called sync
(``?force=true``) with the same arguments every time, so every call but the first is answered
from the cache: sequential and from 32 concurrent clients.

Baseline: the bare aiohttp echo of scenario 2 (bench/echo_server.py), what HTTP alone costs
with this client on this machine. Two sparkgate rows: a hit recorded as a job of its own
(the default: one insert, ``cachedFrom``), and ``record=false`` (nothing written: the cache's
own cost). Lower latency is better: the ratio compares p50 (sequential) and p99 (32 clients).
"""

from __future__ import annotations

from bench.harness import NOOP_BODY, Bench
from bench.infra import api
from bench.stats import Row

SCENARIO = "8. result cache, cached no-op, sync"
CLIENTS = 32
FUNCTION = "noop_cached"


def run(b: Bench) -> list[Row]:
    _deploy(b)
    first = api("POST", b.run_url(FUNCTION, force="true"), NOOP_BODY)  # the one run
    assert first == {"success": True, "payload": NOOP_BODY, "errors": []}, first
    echo = f"{b.echo_url}/v2/api/functions/{FUNCTION}/jobs"
    rows = []
    for group, clients, count, metric in (
            ("sequential", 1, b.mode.noop_sequential, "p50_ms"),
            (f"{CLIENTS} clients", CLIENTS, b.mode.noop_concurrent, "p99_ms")):
        warmup = 2 * clients + 20
        got = b.http_run(echo, count, clients, body=NOOP_BODY, warmup=warmup)
        rows.append(Row.from_latencies(
            SCENARIO, f"{group}: bare aiohttp echo", got["latencies_ms"], group=group,
            baseline=True, metric=metric, throughput=count / got["wall_s"], unit="req/s",
            key=f"s8.{clients}.echo"))
        for system, query, key in (("cached, recorded", {}, "cached"),
                                   ("cached, record=false", {"record": "false"}, "unrecorded")):
            url = b.run_url(FUNCTION, force="true", **query)
            got = b.http_run(url, count, clients, body=NOOP_BODY, warmup=warmup)
            rows.append(Row.from_latencies(
                SCENARIO, f"{group}: sparkgate, {system}", got["latencies_ms"], group=group,
                metric=metric, throughput=count / got["wall_s"], unit="req/s",
                note="target p50 ≤ echo + 1 ms" if clients == 1 else "",
                key=f"s8.{clients}.{key}"))
    return rows


def _deploy(b: Bench) -> None:
    """scenario 2's no-op (its artifact is deployed already), under another name, cached."""
    assert b.gateway is not None
    body = {"name": FUNCTION, "path": "bench_functions.py", "className": "noop", "cache": "1h"}
    try:
        api("POST", b.gateway.api("/functions"), body)
    except RuntimeError:
        api("PUT", b.gateway.api("/functions"), body)
