"""3. Submission throughput: async submits (no wait) from 64 concurrent clients.

Measured on a gateway with no worker on this machine (``start_workers = false``), so the
gateway has the two cores to itself, in one process and in two (``serve --processes 2``);
scenario 4's submit phase adds a row with a worker draining the jobs meanwhile. Baseline: the
bare aiohttp echo server under the same load (the HTTP ceiling of this client on this
machine). Higher accepted jobs/s is better.
"""

from __future__ import annotations

from bench import costs
from bench.harness import NOOP_BODY, PROCESSES, Bench
from bench.profiling import profiled
from bench.stats import Row

SCENARIO = "3. submission throughput, async"
CLIENTS = 64


def run(b: Bench) -> list[Row]:
    count = b.mode.submit_jobs
    rows = []
    for system, url, baseline in (
            ("bare aiohttp echo", f"{b.echo_url}/v2/api/functions/noop/jobs", True),
            ("sparkgate, gateway alone", b.run_url("noop"), False)):
        if baseline:
            got = b.http_run(url, count, CLIENTS, body=NOOP_BODY, warmup=2 * CLIENTS)
        else:
            b.http_run(url, 2 * CLIENTS, CLIENTS, body=NOOP_BODY)  # warm-up
            assert b.gateway is not None
            before = costs.snapshot(b, None)
            with profiled(b, "s3-gateway", b.gateway.pid, gil=True):
                got = b.http_run(url, count, CLIENTS, body=NOOP_BODY)
            spent = costs.per_job(b, before, None, count)
        rows.append(Row.from_latencies(
            SCENARIO, system, got["latencies_ms"], throughput=count / got["wall_s"],
            unit="req/s" if baseline else "jobs/s", baseline=baseline, metric="throughput",
            lower_is_better=False,
            note="" if baseline else f"{count} submits; target ≥ 2,000/s; "
                                     f"{costs.describe(spent)}",
            key="s3.echo" if baseline else "s3.alone"))
    rows.append(_several_processes(b, count))
    if "submits_while_draining" in b.shared:
        rows.append(b.shared["submits_while_draining"])
    return rows


def _several_processes(b: Bench, count: int) -> Row:
    """The same, through a gateway of PROCESSES processes sharing one port (``--processes``)."""
    with b.processes_gateway("gateway-alone-processes") as gateway:
        url = b.run_url("noop", gateway)
        b.http_run(url, 4 * CLIENTS, CLIENTS, body=NOOP_BODY)  # warm-up: every process
        got = b.http_run(url, count, CLIENTS, body=NOOP_BODY)
    return Row.from_latencies(
        SCENARIO, f"sparkgate, gateway alone, {PROCESSES} processes", got["latencies_ms"],
        throughput=count / got["wall_s"], unit="jobs/s", metric="throughput",
        lower_is_better=False, note=f"{count} submits; target ≥ 2,000/s",
        key="s3.processes")
