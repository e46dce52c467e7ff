"""1. Warm Spark job, sync: ``spark.range(n)`` summed, n = 1e3 and 1e6, sequential calls.

Systems: sparkgate (``?force=true``) on PostgreSQL and with the embedded defaults (SQLite, an
embedded Redis: what ``sparkgate serve`` runs with no settings), the same query in a warm
SparkSession held by the measuring process itself (the floor, the baseline), through Spark
Connect, and a cold ``spark-submit`` (a few runs). The warm systems are measured in
alternating rounds, so drift on this shared machine hits them alike. Lower p50 is better.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from bench.config import SPARK_CONF
from bench.harness import Bench, log
from bench.infra import (
    REPO,
    SPARK_HOME,
    AgentProcess,
    Gateway,
    api,
    spark_conf_args,
    spark_env,
    start_connect_server,
    wait_for_port,
)
from bench.stats import Row, percentile

SCENARIO = "1. warm Spark job, sync"
SIZES = (1_000, 1_000_000)
# The sparkgates measured: on PostgreSQL (the run's own servers), and with the embedded defaults.
GATEWAYS: dict[str, Callable[[Bench], Gateway | None]] = {
    "sparkgate": lambda b: b.gateway, "embedded": lambda b: b.embedded}
LABELS = {"sparkgate": "sparkgate (PostgreSQL), force=true",
          "embedded": "sparkgate (embedded default), force=true"}
WARMUP_LARGE = 5  # after the warm-up on the small size


def prepare(b: Bench) -> None:
    """Start the JVMs early (they start while the gateway does): Connect server, in-process."""
    url, server = start_connect_server(b.procs)
    in_process = AgentProcess(b.procs, "in-process-spark", env=spark_env())
    in_process.send("spark_init", conf=SPARK_CONF)
    b.shared["s1"] = {"connect_url": url, "connect_server": server, "in_process": in_process}


def run(b: Bench) -> list[Row]:
    state = b.shared["s1"]
    in_process: AgentProcess = state["in_process"]
    log.info("in-process SparkSession started in %.1fs", in_process.receive()["start_s"])
    wait_for_port(state["connect_url"], state["connect_server"])
    connect = AgentProcess(b.procs, "connect-client")
    log.info("Spark Connect session in %.1fs",
             connect.call("connect_init", url=state["connect_url"])["start_s"])

    agents = {"in-process": in_process, "connect": connect}
    for n in SIZES:  # every JVM warms up (JIT, caches) on every size before any is measured
        measure_size(b, n, agents, warm_only=True)
    rows: list[Row] = []
    for n in SIZES:
        rows += measure_size(b, n, agents)
    in_process.call("spark_stop")
    in_process.close()
    connect.close()
    b.procs.stop(state["connect_server"])
    rows += cold_submit(b)
    return rows


def measure_size(b: Bench, n: int, agents: dict[str, AgentProcess],
                 warm_only: bool = False) -> list[Row]:
    """The warm systems on one n, in rounds that rotate which goes first."""
    expected = n * (n - 1) // 2
    gateways = {name: gateway for name, gateway in GATEWAYS.items() if gateway(b) is not None}
    latencies: dict[str, list[float]] = {"in-process": [], "connect": [],
                                         **{name: [] for name in gateways}}
    for gateway in gateways.values():
        answer = api("POST", b.run_url("range_sum", gateway(b), force="true"), {"n": n})
        assert answer == {"success": True, "payload": expected, "errors": []}, answer

    # The calls' own jobs are found afterwards by their creation time (an externalId would not
    # do: sparkgate treats a repeated one as a retry of the same submit).
    since_ms = time.time_ns() // 1_000_000

    def measure(system: str, count: int) -> list[float]:
        if system in gateways:
            url = b.run_url("range_sum", gateways[system](b), force="true")
            return b.http_run(url, count, body={"n": n})["latencies_ms"]
        got = agents[system].call("spark_query", n=n, count=count)
        assert got["value"] == expected, got["value"]
        return got["latencies_ms"]

    order = list(latencies)
    if warm_only:
        for system in order:
            measure(system, b.mode.spark_warmup if n == SIZES[0] else WARMUP_LARGE)
        return []
    per_round = max(1, b.mode.spark_calls // b.mode.spark_rounds)
    for round_no in range(b.mode.spark_rounds):
        first = round_no % len(order)
        for system in order[first:] + order[:first]:
            latencies[system] += measure(system, per_round)
    group = _group(n)
    floor = Row.from_latencies(SCENARIO, f"{group}: Spark in process (warm session)",
                               latencies["in-process"], baseline=True, group=group,
                               key=f"s1.{group}.inprocess")
    rows = [floor] + [_gateway_row(gateway(b), system, group, n, since_ms, latencies[system],
                                   floor) for system, gateway in gateways.items()]
    rows.append(Row.from_latencies(SCENARIO, f"{group}: Spark Connect", latencies["connect"],
                                   group=group, key=f"s1.{group}.connect"))
    return rows


def _gateway_row(gateway: Gateway, system: str, group: str, n: int, since_ms: int,
                 latencies: list[float], floor: Row) -> Row:
    gate = Row.from_latencies(SCENARIO, f"{group}: {LABELS[system]}", latencies, group=group,
                              key=f"s1.{group}.{system}")
    # The same calls' own record: how long each ran in the worker (ms resolution).
    ran = [j["endTime"] - j["startTime"]
           for j in api("GET", gateway.api("/jobs?function=range_sum&limit=1000"))
           if j["createTime"] >= since_ms and j["params"]["arguments"] == {"n": n}]
    # One job per call, or the calls did not each run the query.
    assert len(ran) == len(latencies), (len(ran), len(latencies))
    in_worker = percentile(ran, 50)
    gate.extra = {"in_worker_p50_ms": in_worker}
    gate.note = (f"vs in process: {gate.p50_ms - floor.p50_ms:+.1f} ms at p50 (target ≤ 3 ms); "
                 f"run in the worker p50 {in_worker:.0f} ms, so gateway + queue "
                 f"≈ {gate.p50_ms - in_worker:.0f} ms")
    return gate


def _group(n: int) -> str:
    return f"n={n:.0e}".replace("+0", "")


def cold_submit(b: Bench) -> list[Row]:
    """A new JVM, SparkContext and Python per call: what a warm context saves."""
    script = REPO / "bench" / "functions" / "cold_submit.py"
    rows = []
    for n in b.mode.cold_sizes:
        latencies = []
        for _ in range(b.mode.cold_runs):
            started = time.perf_counter()
            process = b.procs.start("spark-submit", [
                str(SPARK_HOME / "bin" / "spark-submit"), *spark_conf_args(),
                "--conf", f"spark.pyspark.python={sys.executable}", str(script), str(n)],
                env=spark_env())
            if process.wait(timeout=300) != 0:
                raise RuntimeError("spark-submit failed: see logs/spark-submit.log")
            latencies.append((time.perf_counter() - started) * 1000)
        group = _group(n)
        rows.append(Row.from_latencies(SCENARIO, f"{group}: spark-submit, cold", latencies,
                                       group=group,
                                       key=f"s1.{group}.cold", note=f"{len(latencies)} run(s)"))
    return rows
