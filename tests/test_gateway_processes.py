"""``serve`` with several gateway processes on one port (``processes``): the kernel hands each
connection to one of them, each serves the whole API, and nothing they start outlives serve.
One serve for the module, with a python default context (its worker starts in a second)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.client import HTTPConnection

import psutil
import pytest

from tests.server_process import Server, running_server, wait_until

pytestmark = pytest.mark.slow

CONNECT_ATTEMPTS = 200
# An app's pool of keep-alive connections, opened at once.
POOL = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("gateway-processes")
    with running_server(workdir, {"SPARKGATE_PROCESSES": "2",
                                  "SPARKGATE_CONTEXT_ENGINE": "python",
                                  "SPARKGATE_DEPLOY_EXAMPLES": "false"}) as server:
        server.deploy("plain_behaviours.py", "naps", "naps")
        yield server


def gateway_pids(server: Server) -> list[int]:
    others = [p.pid for p in psutil.Process(server.process.pid).children()
              if "gateway-process" in p.cmdline()]
    return [server.process.pid, *others]


def serving_pid(server: Server, connection: HTTPConnection) -> int:
    """The gateway process that holds the server side of ``connection``."""
    assert connection.sock is not None
    port = connection.sock.getsockname()[1]
    [pid] = [pid for pid in gateway_pids(server)
             for c in psutil.Process(pid).net_connections("tcp")
             if c.raddr and c.raddr.port == port and c.laddr.port == server.port]
    return pid


def one_connection_to_each(server: Server) -> dict[int, HTTPConnection]:
    """A kept-alive connection served by each gateway process."""
    held: dict[int, HTTPConnection] = {}
    for _ in range(CONNECT_ATTEMPTS):
        connection = HTTPConnection("127.0.0.1", server.port, timeout=60)
        assert request(connection, "GET", "/v2/api/status")[0] == 200
        pid = serving_pid(server, connection)
        if pid in held:
            connection.close()
        else:
            held[pid] = connection
        if len(held) == len(gateway_pids(server)):
            return held
    raise AssertionError(f"{CONNECT_ATTEMPTS} connections all went to {sorted(held)}")


def request(connection: HTTPConnection, method: str, path: str, body: object = None,
            headers: dict[str, str] | None = None) -> tuple[int, object]:
    payload = None if body is None else json.dumps(body)
    connection.request(method, path, body=payload,
                       headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_two_gateway_processes_serve_the_port_and_only_serve_runs_the_workers(server: Server):
    pids = gateway_pids(server)
    assert len(pids) == 2
    child = psutil.Process(pids[1])
    assert child.cmdline()[1:5] == ["-P", "-m", "sparkgate", "gateway-process"]
    # No worker, no Redis of its own (the status route's `java -version` may be running).
    assert [c.cmdline() for c in child.children() if "-version" not in c.cmdline()] == []
    assert len(one_connection_to_each(server)) == 2


def test_a_job_submitted_through_one_process_is_waited_for_through_the_other(server: Server):
    (first_pid, first), (second_pid, second) = one_connection_to_each(server).items()
    assert first_pid != second_pid
    key = {"Idempotency-Key": f"processes-{time.time_ns()}"}
    run = "/v2/api/functions/naps/jobs"
    status, submitted = request(first, "POST", run, {"seconds": 2}, key)
    assert status == 200
    # The same submit again, through the other process, waiting for the end: the job the
    # first one created, its result once it ends.
    began = time.monotonic()
    status, answer = request(second, "POST", f"{run}?force=true", {"seconds": 2}, key)
    assert (status, answer) == (200, {"success": True, "payload": 2, "errors": []})
    assert time.monotonic() - began > 0.5  # it waited for the job, which ran once
    status, job = request(first, "GET", f"/v2/api/jobs/{submitted['id']}")
    assert (job["status"], job["jobResult"]) == ("finished", 2)
    jobs = request(second, "GET", "/v2/api/jobs?function=naps")[1]
    assert [j["jobId"] for j in jobs] == [submitted["id"]]


def test_a_pool_of_clients_connecting_as_serve_starts_is_spread_across_its_processes(
        tmp_path):
    # The moment serve answers, every process serves: not serve's own alone, the others
    # still starting, which would keep the whole pool, and the others idle, for its life.
    with running_server(tmp_path, {"SPARKGATE_PROCESSES": "2", "SPARKGATE_START_WORKERS": "false",
                                   "SPARKGATE_DEPLOY_EXAMPLES": "false"},
                        wait_for_worker=False) as server:
        pool = [HTTPConnection("127.0.0.1", server.port, timeout=60) for _ in range(POOL)]
        barrier = threading.Barrier(POOL)

        def connect(connection: HTTPConnection) -> None:
            barrier.wait()
            assert request(connection, "GET", "/health")[0] == 200

        threads = [threading.Thread(target=connect, args=(c,)) for c in pool]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        held = Counter(serving_pid(server, connection) for connection in pool)
        assert sorted(held) == sorted(gateway_pids(server)), held
        assert min(held.values()) >= POOL // 16, held
        for connection in pool:
            connection.close()


def test_a_killed_serve_takes_its_gateway_processes_with_it(tmp_path):
    with running_server(tmp_path, {"SPARKGATE_PROCESSES": "3", "SPARKGATE_START_WORKERS": "false",
                                   "SPARKGATE_DEPLOY_EXAMPLES": "false"},
                        wait_for_worker=False) as server:
        others = gateway_pids(server)[1:]
        assert len(others) == 2
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        wait_until(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status()
                                   != psutil.STATUS_ZOMBIE for pid in others),
                   10, "the gateway processes end with serve")
