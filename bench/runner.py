"""One run: start everything, run the chosen scenarios, stop everything, report."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.config import FULL, QUICK
from bench.harness import NOOP_BODY, Bench, log
from bench.infra import (
    REPO,
    AgentProcess,
    Database,
    Processes,
    api,
    deploy,
    embedded_env,
    free_port,
    http_ok,
    migrate,
    sparkgate_env,
    start_gateway,
    start_redis,
    wait_for,
)
from bench.scenarios import (
    s1_warm_spark,
    s2_overhead,
    s3_submit,
    s4_end_to_end,
    s5_scale,
    s6_concurrency,
    s7_scoring,
    s8_cache,
)
from bench.stats import Row, fill_ratios

FUNCTIONS = REPO / "bench" / "functions" / "bench_functions.py"
# Slots of the `default` context (scenarios 1, 2, 4): a no-op job waits on the database and
# Redis more than on the CPU, so a few run at once.
DEFAULT_MAX_JOBS = 4


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sample sizes, 100,000 jobs in PostgreSQL (< 3 minutes)")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8",
                        help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not overwrite docs/benchmarks.md (JSON is still written)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the gateway and worker under load (scenarios 2 and 3)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's folder (server logs) even when it succeeds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s bench: %(message)s", datefmt="%H:%M:%S")
    mode = QUICK if args.quick else FULL
    wanted = {int(s) for s in args.only.split(",") if s.strip()}
    started = time.perf_counter()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    facts = report.machine_facts()
    facts["mode"] = mode.name
    facts["profiled"] = args.profile
    workdir = Path(tempfile.mkdtemp(prefix="sparkgate-bench-"))
    procs = Processes(workdir / "logs")
    # A stopped run stops what it started and drops its database (the ``finally`` below).
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    procs.logs.mkdir()
    log.info("%s run, scenarios %s; logs in %s", mode.name, sorted(wanted), procs.logs)
    notes: list[str] = []
    shared = {"stamp": stamp, "profile": args.profile, "max_jobs": DEFAULT_MAX_JOBS}
    db: Database | None = None
    rows: list[Row] = []
    ok = False
    try:
        db = Database.create()
        rows = run_scenarios(procs, workdir, db, mode, wanted, shared, notes)
        ok = not shared.get("failed")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stop while stopping: this is it
        log.info("stopping everything")
        procs.stop_all()
        if db is not None:
            db.drop()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log.info("the run's logs stay in %s", procs.logs)
    facts["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    facts["duration_s"] = time.perf_counter() - started
    write_results(args, mode.name, stamp, rows, facts, notes)
    return 0 if ok else 1


def run_scenarios(procs: Processes, workdir: Path, db: Database, mode, wanted: set[int],
                  shared: dict, notes: list[str]) -> list[Row]:
    b = start_servers(procs, workdir, db, mode, wanted, shared, notes)
    rows: list[Row] = []
    for number, scenario in ((1, s1_warm_spark), (2, s2_overhead), (4, s4_end_to_end),
                             (6, s6_concurrency), (7, s7_scoring), (8, s8_cache)):
        if number in wanted:
            rows += _timed(number, scenario.run, b)
        if number == 2 and b.embedded is not None:  # its JVM would idle beside the others
            procs.stop(b.embedded.process, timeout_s=120)
            b.embedded = None
    if wanted & {3, 5}:
        # A gateway alone (no supervisor, no worker), on the same database and Redis.
        assert b.gateway is not None
        env = b.gateway.env
        procs.stop(b.gateway.process, timeout_s=120)
        alone = dict(env, SPARKGATE_PORT=str(free_port()), SPARKGATE_START_WORKERS="false")
        b.gateway = start_gateway(procs, "gateway-alone", alone)
        if 5 in wanted:
            rows += _timed(5, s5_scale.before, b)
        if 3 in wanted:
            rows += _timed(3, s3_submit.run, b)
        if 5 in wanted:
            rows += _timed(5, s5_scale.run, b)
    return rows


def start_servers(procs: Processes, workdir: Path, db: Database, mode, wanted: set[int],
                  shared: dict, notes: list[str]) -> Bench:
    """Redis, the echo server, the gateways and every worker the scenarios use, all warm."""
    redis_url = start_redis(procs, workdir)
    env = sparkgate_env(db, redis_url, workdir / "data", free_port(),
                        SPARKGATE_CONTEXT_MAX_JOBS=str(DEFAULT_MAX_JOBS))
    migrate(procs, env)
    echo_port = free_port()
    procs.start("echo-server", [sys.executable, "-m", "bench.echo_server", str(echo_port)])
    b = Bench(mode, procs, workdir, db, redis_url, AgentProcess(procs, "http"),
              f"http://127.0.0.1:{echo_port}", shared=shared, notes=notes)
    if 1 in wanted:
        s1_warm_spark.prepare(b)  # their JVMs start while the gateway's workers do
    b.gateway = start_gateway(procs, "gateway", env)
    deploy(b.gateway, FUNCTIONS, ["noop", "range_sum"])
    if wanted & {1, 2}:
        b.embedded = start_gateway(procs, "gateway-embedded", embedded_env(
            workdir / "embedded", free_port(), SPARKGATE_CONTEXT_MAX_JOBS=str(DEFAULT_MAX_JOBS)))
        deploy(b.embedded, FUNCTIONS, ["noop", "range_sum"])
    if 2 in wanted:
        s2_overhead.prepare(b)
    if 6 in wanted:
        s6_concurrency.prepare(b)
    if 7 in wanted:
        s7_scoring.prepare(b)
    contexts = ({"default"} | ({s2_overhead.PYTHON_CONTEXT} if 2 in wanted else set())
                | (set(s6_concurrency.CONTEXTS) if 6 in wanted else set())
                | ({s7_scoring.CONTEXT} if 7 in wanted else set()))
    # Every worker up (and its JVM started) before anything is measured.
    wait_for(lambda: contexts <= {w["context"] for w in api("GET", b.gateway.api("/workers"))},
             240, f"workers for {', '.join(sorted(contexts))}")
    for gateway in (b.gateway, b.embedded):
        if gateway is not None:  # the worker's first job
            api("POST", b.run_url("noop", gateway, force="true"), NOOP_BODY)
    wait_for(lambda: http_ok(f"{b.echo_url}/health"), 30, "the echo server")
    return b


def write_results(args: argparse.Namespace, mode: str, stamp: str, rows: list[Row],
                  facts: dict, notes: list[str]) -> None:
    rows.sort(key=lambda r: r.scenario)  # stable: each scenario keeps its own order
    fill_ratios(rows)
    checks = report.targets(rows)
    command = "bench/run --quick" if args.quick else "bench/run"
    print(report.console_table(rows))
    print()
    for c in checks:
        verdict = {True: "MET ", False: "MISS", None: "?   "}[c["met"]]
        print(f"{verdict}  {c['target']}: {c['measured']}")
    for note in notes:
        print(f"note: {note}")
    out = REPO / "bench" / "results" / f"{stamp}-{mode}.json"
    report.write_json(out, rows, facts, checks, notes)
    print(f"\nJSON: {out.relative_to(REPO)}")
    if not args.no_docs:
        docs = REPO / "docs" / "benchmarks.md"
        report.update_doc(docs, report.markdown_section(rows, facts, checks, notes, command),
                          mode)
        print(f"Markdown: {docs.relative_to(REPO)}")


def _timed(number: int, fn, b: Bench) -> list[Row]:
    """A scenario's rows; a scenario that fails is reported in the notes, and the run goes on
    (its exit status says so)."""
    started = time.perf_counter()
    log.info("scenario %d: %s.%s", number, fn.__module__.rsplit(".", 1)[1], fn.__name__)
    try:
        rows = fn(b)
    except Exception as exc:
        log.exception("scenario %d failed", number)
        b.notes.append(f"Scenario {number} ({fn.__module__.rsplit('.', 1)[1]}.{fn.__name__}) "
                       f"FAILED: {type(exc).__name__}: {str(exc)[:300]}")
        b.shared["failed"] = True
        return []
    log.info("scenario %d done in %.0fs", number, time.perf_counter() - started)
    return rows
