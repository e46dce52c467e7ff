"""1. Warm Spark job, sync: ``spark.range(n)`` summed, n = 1e3 and 1e6, sequential calls.

Systems: sparkgate (``?force=true``), the same query in a warm SparkSession held by the
measuring process itself (the floor, the baseline), through Spark Connect, and a cold
``spark-submit`` (a few runs). The warm systems are measured in alternating rounds, so drift
on this shared machine hits them alike. Lower p50 is better.
"""

from __future__ import annotations

import sys
import time

from bench.config import SPARK_CONF
from bench.harness import Bench, log
from bench.infra import (
    REPO,
    SPARK_HOME,
    AgentProcess,
    api,
    spark_conf_args,
    spark_env,
    start_connect_server,
    wait_for_port,
)
from bench.stats import Row, percentile

SCENARIO = "1. warm Spark job, sync"
SIZES = (1_000, 1_000_000)
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
    """The three warm systems on one n, in rounds that rotate which goes first."""
    expected = n * (n - 1) // 2
    answer = api("POST", b.run_url("range_sum", force="true"), {"n": n})
    assert answer == {"success": True, "payload": expected, "errors": []}, answer
    latencies: dict[str, list[float]] = {"in-process": [], "sparkgate": [], "connect": []}

    # The calls' own jobs are found afterwards by their creation time (an externalId would not
    # do: sparkgate treats a repeated one as a retry of the same submit).
    since_ms = time.time_ns() // 1_000_000

    def measure(system: str, count: int) -> list[float]:
        if system == "sparkgate":
            url = b.run_url("range_sum", force="true")
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
        for system in order[round_no % 3:] + order[:round_no % 3]:
            latencies[system] += measure(system, per_round)
    group = _group(n)
    floor = Row.from_latencies(SCENARIO, f"{group}: Spark in process (warm session)",
                               latencies["in-process"], baseline=True, group=group,
                               key=f"s1.{group}.inprocess")
    gate = Row.from_latencies(SCENARIO, f"{group}: sparkgate, force=true", latencies["sparkgate"],
                              group=group, key=f"s1.{group}.sparkgate")
    # The same calls' own record: how long each ran in the worker (ms resolution).
    assert b.gateway is not None
    ran = [j["endTime"] - j["startTime"]
           for j in api("GET", b.gateway.api("/jobs?function=range_sum&limit=1000"))
           if j["createTime"] >= since_ms and j["params"]["arguments"] == {"n": n}]
    # One job per call, or the calls did not each run the query.
    assert len(ran) == len(latencies["sparkgate"]), (len(ran), len(latencies["sparkgate"]))
    in_worker = percentile(ran, 50)
    gate.extra = {"in_worker_p50_ms": in_worker}
    gate.note = (f"vs in process: {gate.p50_ms - floor.p50_ms:+.1f} ms at p50 (target ≤ 3 ms); "
                 f"run in the worker p50 {in_worker:.0f} ms, so gateway + queue "
                 f"≈ {gate.p50_ms - in_worker:.0f} ms")
    connect = Row.from_latencies(SCENARIO, f"{group}: Spark Connect", latencies["connect"],
                                 group=group,
                                 key=f"s1.{group}.connect")
    return [floor, gate, connect]


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
