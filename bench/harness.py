"""What the scenarios share in a run: the mode, the processes, the servers and the agents."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import Mode
from bench.infra import AgentProcess, Database, Gateway, Processes, free_port, start_gateway

log = logging.getLogger("bench")

NOOP_BODY = {"value": 1, "tag": "bench"}
# ``serve --processes``: one per core on this two-core machine, as serve's default would be.
PROCESSES = 2


@dataclass
class Bench:
    mode: Mode
    procs: Processes
    workdir: Path
    db: Database
    redis_url: str
    http: AgentProcess  # the HTTP load generator
    echo_url: str  # the bare aiohttp server (scenarios 2 and 3's floor)
    gateway: Gateway | None = None
    # ``sparkgate serve`` with the embedded defaults (SQLite, embedded Redis): scenarios 1, 2
    embedded: Gateway | None = None
    # What a scenario prepares early (servers whose JVM starts while others run) and what one
    # scenario hands to another.
    shared: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def run_url(self, function: str, gateway: Gateway | None = None, **query: str) -> str:
        gateway = gateway or self.gateway
        assert gateway is not None
        url = gateway.api(f"/functions/{function}/jobs")
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return url

    @contextmanager
    def processes_gateway(self, name: str) -> Iterator[Gateway]:
        """A gateway of PROCESSES processes on the main gateway's database and Redis, with no
        worker of its own: the main gateway's workers run the jobs it takes."""
        assert self.gateway is not None
        gateway = start_gateway(self.procs, name, dict(
            self.gateway.env, SPARKGATE_PORT=str(free_port()), SPARKGATE_START_WORKERS="false",
            SPARKGATE_PROCESSES=str(PROCESSES), SPARKGATE_DATA_DIR=str(self.workdir / name)))
        try:
            yield gateway
        finally:
            self.procs.stop(gateway.process, timeout_s=120)

    def http_run(self, url: str, count: int, concurrency: int = 1, body: Any = None,
                 warmup: int = 0, method: str = "POST") -> dict[str, Any]:
        """Run requests from the HTTP agent; fail loudly if any was not answered 200."""
        result = self.http.call("http", method=method, url=url, count=count,
                                concurrency=concurrency, body=body, warmup=warmup)
        check_answers(result, url)
        return result


def check_answers(result: dict[str, Any], what: str) -> None:
    bad = {s: n for s, n in result["statuses"].items() if s != "200"}
    if bad or result["error_count"]:
        raise RuntimeError(f"{what}: statuses {result['statuses']}, "
                           f"{result['error_count']} error(s): {result['errors']}")
