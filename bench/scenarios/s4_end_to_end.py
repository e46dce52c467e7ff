"""4. End-to-end throughput: many no-op jobs submitted async (64 clients) until all finished.

Baseline: bare RQ — the same number of no-op jobs enqueued on the same Redis and run by one
stock ``SimpleWorker`` process (sparkgate runs one worker process for the context), with the
jobs submitted through one gateway process and through two (``serve --processes 2``). Higher
jobs/s is better. The submit phase also gives scenario 3 a row: submits while a worker drains.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from bench import costs
from bench.harness import NOOP_BODY, PROCESSES, Bench, check_answers, log
from bench.infra import REPO, wait_for
from bench.profiling import profiled
from bench.stats import Row

SCENARIO = "4. end-to-end throughput, no-op"
CLIENTS = 64
RQ_QUEUE = "bench-bare-rq"


def run(b: Bench) -> list[Row]:
    count = b.mode.e2e_jobs
    rows = [bare_rq(b, count)]
    assert b.gateway is not None
    worker = costs.worker_pid(b)
    before = costs.snapshot(b, worker)
    # The worker's CPU (GIL holder): the end-to-end rate is bounded by what one job costs it.
    with profiled(b, "s4-worker", worker, gil=True) if worker else contextlib.nullcontext():
        got = b.http.call("e2e", base=b.gateway.url, function="noop", count=count,
                          concurrency=CLIENTS, body=NOOP_BODY)
    check_answers(got, "async submits")
    if got["left"] or got["failed"]:
        raise RuntimeError(f"end-to-end: {got['left']} job(s) left, {got['failed']} failed")
    spent = costs.per_job(b, before, worker, count)
    rows.append(Row(SCENARIO, "sparkgate (1 worker process, 1 gateway process)",
                    throughput=count / got["e2e_wall_s"],
                    unit="jobs/s", samples=count, metric="throughput", lower_is_better=False,
                    note=f"maxJobs {b.shared['max_jobs']}; {count} jobs in "
                         f"{got['e2e_wall_s']:.1f}s; {costs.describe(spent)}",
                    key="s4.sparkgate", extra=spent))
    rows.append(_several_gateway_processes(b, count))
    # For scenario 3: the same submits, while the worker runs them on the same two cores.
    b.shared["submits_while_draining"] = Row.from_latencies(
        "3. submission throughput, async", "sparkgate, worker draining meanwhile",
        got["latencies_ms"], throughput=count / got["submit_wall_s"], unit="jobs/s",
        metric="throughput", lower_is_better=False,
        note=f"{count} submits; target ≥ 2,000/s", key="s3.draining")
    return rows


def _several_gateway_processes(b: Bench, count: int) -> Row:
    """The same jobs submitted through a gateway of PROCESSES processes (no worker of its
    own, on the same database and Redis), run by the same one worker process."""
    with b.processes_gateway("gateway-processes") as gateway:
        got = b.http.call("e2e", base=gateway.url, function="noop", count=count,
                          concurrency=CLIENTS, body=NOOP_BODY)
    check_answers(got, "async submits")
    if got["left"] or got["failed"]:
        raise RuntimeError(f"end-to-end: {got['left']} job(s) left, {got['failed']} failed")
    return Row(SCENARIO, f"sparkgate (1 worker process, {PROCESSES} gateway processes)",
               throughput=count / got["e2e_wall_s"], unit="jobs/s", samples=count,
               metric="throughput", lower_is_better=False,
               note=f"maxJobs {b.shared['max_jobs']}; {count} jobs in {got['e2e_wall_s']:.1f}s",
               key="s4.processes")


def bare_rq(b: Bench, count: int) -> Row:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    worker = b.procs.start("rq-simpleworker", [
        shutil.which("rq") or "rq", "worker", "--worker-class", "rq.worker.SimpleWorker",
        "--url", b.redis_url, "--path", str(REPO), "--quiet", RQ_QUEUE], env=env)

    def registered() -> bool:
        from redis import Redis
        from rq import Worker

        return any(RQ_QUEUE in w.queue_names() for w in
                   Worker.all(connection=Redis.from_url(b.redis_url)))

    wait_for(registered, 60, "the RQ SimpleWorker registered")
    got = b.http.call("rq_e2e", redis_url=b.redis_url, queue=RQ_QUEUE, count=count)
    b.procs.stop(worker)
    if got["finished"] != count:
        raise RuntimeError(f"bare RQ: {got}")
    log.info("bare RQ: %d jobs in %.1fs", count, got["e2e_wall_s"])
    return Row(SCENARIO, "bare RQ (enqueue + 1 SimpleWorker)", throughput=count / got["e2e_wall_s"],
               unit="jobs/s", samples=count, baseline=True, metric="throughput",
               lower_is_better=False, note=f"{count} jobs in {got['e2e_wall_s']:.1f}s",
               key="s4.rq")
