"""7. Real-time scoring: examples/churn.py's ``score`` (one customer's fields in, a churn
probability out), with the model its ``train`` fitted on Spark earlier in the same run.

Systems, for one customer, sync (``force=true``), sequential and from 32 clients:
- the floor: the same scoring code and model behind a bare aiohttp handler in one process
  (bench/scoring_server.py), no job at all;
- sparkgate, the function in a python context (``maxJobs`` 8; no JVM);
- sparkgate, the same function in the spark ``default`` context (sequential only);
- with 32 clients, the python context again through a gateway of two processes (``serve``'s
  default on two cores; the bench's main gateway runs one, whose profile it takes).
Lower p50 is better sequentially, higher throughput with 32 clients. Last rows: how long a
python worker, and a Spark one, take to be ready in a context that has none yet (its first
job's latency, and the worker's own account of its start, from its log).
"""

from __future__ import annotations

import re
import sys
import time

from bench import costs
from bench.harness import PROCESSES, Bench, log
from bench.infra import REPO, Gateway, api, create_context, free_port, http_ok, upload, wait_for
from bench.profiling import profiled
from bench.stats import Row

SCENARIO = "7. real-time scoring, one row, sync"
CHURN = REPO / "examples" / "churn.py"
CONTEXT = "bench-scoring"
COLD_CONTEXT = "bench-scoring-cold"
CLIENTS = 32
CUSTOMER = {"tenure_months": 5, "monthly_charges": 80.0, "support_calls": 3, "plan": "basic",
            "auto_pay": False}


def prepare(b: Bench) -> None:
    """The python context, precreated (its worker starts with the others), and churn's
    functions: training in ``default``, scoring in the python context."""
    assert b.gateway is not None
    create_context(b.gateway, CONTEXT, engine="python", maxJobs=8, precreated=True)
    upload(b.gateway, CHURN)
    for name, handler, context in (("churn_train", "train", "default"),
                                   ("churn_score", "score", CONTEXT)):
        api("POST", b.gateway.api("/functions"), {"name": name, "path": CHURN.name,
                                                  "className": handler,
                                                  "defaultContext": context})


def run(b: Bench) -> list[Row]:
    assert b.gateway is not None
    trained = api("POST", b.run_url("churn_train", force="true"),
                  {"customers": b.mode.scoring_training_rows})["payload"]
    log.info("churn model %s trained, AUC %.3f", trained["version"][:12], trained["auc"])
    floor = _start_floor(b, trained["version"])
    python_url = b.run_url("churn_score", force="true")
    spark_url = b.run_url("churn_score", force="true", context="default")
    answer = api("POST", python_url, CUSTOMER)["payload"]
    assert answer["model"] == trained["version"], answer
    rows = []
    count = b.mode.scoring_sequential
    for system, url, key, baseline in (
            ("bare aiohttp, same scoring code and model", floor, "floor", True),
            ("sparkgate, python context", python_url, "python", False),
            ("sparkgate, spark context (default)", spark_url, "spark", False)):
        got = b.http_run(url, count, 1, body=CUSTOMER, warmup=50)
        rows.append(Row.from_latencies(
            SCENARIO, f"sequential: {system}", got["latencies_ms"], group="sequential",
            baseline=baseline, throughput=count / got["wall_s"], unit="req/s",
            key=f"s7.1.{key}",
            note="target p50 ≤ 3 ms and ≤ floor + 2 ms" if key == "python" else ""))
    rows += [_concurrent(b, system, url, key, baseline) for system, url, key, baseline in (
        ("bare aiohttp, same scoring code and model", floor, "floor", True),
        ("sparkgate, python context", python_url, "python", False))]
    with b.processes_gateway("gateway-scoring-processes") as gateway:
        rows.append(_concurrent(
            b, f"sparkgate, python context, {PROCESSES} gateway processes",
            b.run_url("churn_score", gateway, force="true"), "python_processes", False,
            gateway))
    rows += [_cold_start(b, engine) for engine in ("python", "spark")]
    return rows


def _concurrent(b: Bench, system: str, url: str, key: str, baseline: bool,
                gateway: Gateway | None = None) -> Row:
    """``gateway``: the one ``url`` goes to, if not the run's main gateway."""
    count = b.mode.scoring_concurrent
    if baseline:
        got = b.http_run(url, count, CLIENTS, body=CUSTOMER, warmup=2 * CLIENTS)
        note = ""
    else:
        got, spent = _measured(b, url, count, gateway)
        note = f"target ≥ 1,500 scores/s on 2 cores; {costs.describe(spent)}"
    return Row.from_latencies(
        SCENARIO, f"{CLIENTS} clients: {system}", got["latencies_ms"],
        group=f"{CLIENTS} clients", baseline=baseline, throughput=count / got["wall_s"],
        unit="req/s", metric="throughput", lower_is_better=False, key=f"s7.32.{key}",
        note=note)


def _measured(b: Bench, url: str, count: int,
              gateway: Gateway | None) -> tuple[dict, dict]:
    """A 32-client run through sparkgate, with what each score cost the machine's CPU and,
    with --profile (main gateway only), where the gateway's and the worker's went."""
    assert b.gateway is not None
    b.http_run(url, 2 * CLIENTS, CLIENTS, body=CUSTOMER)  # warm-up
    worker = costs.worker_pid(b, CONTEXT)
    before = costs.snapshot(b, worker, gateway)
    if gateway is None and worker is not None:
        with profiled(b, "s7-32-clients-gateway", b.gateway.pid, gil=True), \
                profiled(b, "s7-32-clients-worker", worker, gil=True):
            got = b.http_run(url, count, CLIENTS, body=CUSTOMER)
    else:
        got = b.http_run(url, count, CLIENTS, body=CUSTOMER)
    return got, costs.per_job(b, before, worker, count, gateway)


def _start_floor(b: Bench, version: str) -> str:
    port = free_port()
    assert b.gateway is not None
    model_url = b.gateway.api(f"/models/churn/versions/{version}")
    b.procs.start("scoring-server", [sys.executable, "-m", "bench.scoring_server", str(port),
                                     model_url])
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 60, "the scoring server")
    return f"http://127.0.0.1:{port}/v2/api/functions/churn_score/jobs"


def _cold_start(b: Bench, engine: str) -> Row:
    """A context of ``engine`` with no worker yet: its first job waits for one to start. A
    Spark worker maps Spark's classes from the machine's class archive once one is built
    (workers/class_archive.py): the note says whether this one did."""
    assert b.gateway is not None
    context = f"{COLD_CONTEXT}-{engine}"
    create_context(b.gateway, context, engine=engine, maxJobs=8)
    started = time.perf_counter()
    api("POST", b.run_url("churn_score", force="true", context=context), CUSTOMER)
    first_job_ms = (time.perf_counter() - started) * 1000
    worker_log = (b.workdir / "data" / "logs" / f"worker-{context}.log").read_text()
    [(engine_s, process_s)] = re.findall(
        rf"engine {engine} started in ([0-9.]+)s, ([0-9.]+)s after the process started",
        worker_log)[:1]
    if engine == "python":
        target = "target ≤ 1 s; "
    else:
        target = ("its classes mapped from the class archive; " if "classes mapped from"
                  in worker_log else "no class archive (yet); ")
    return Row(SCENARIO, f"{engine} worker start (a context with no worker yet)",
               value=float(process_s), value_unit="s ready after its process started",
               metric="value", key=f"s7.start.{engine}",
               note=f"{target}its engine {float(engine_s) * 1000:.0f} ms of that; "
                    f"the context's first job answered in {first_job_ms:.0f} ms "
                    f"(the worker's start, its first model load, the job)")
