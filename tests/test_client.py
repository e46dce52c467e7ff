"""sparkgate-client (client/) against a real `sparkgate serve` with authentication on, whose
default context runs on the python engine (no JVM): sync and asyncio, deploy, run, submit,
wait, logs followed by offset, events, cancel, listings, typed errors; retries through a proxy
that answers a submit 503 (or 429, or drops the connection) once, so the retry carries the
same Idempotency-Key and one job exists; and `pip install ./client` into a fresh venv, which
must not bring pyspark."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sparkgate_client import (
    Artifact,
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    InvalidArguments,
    InvalidArtifact,
    JobCancelled,
    JobFailed,
    NotFound,
    RetryPolicy,
    TooManyRequests,
    Unauthorized,
    WaitTimeout,
)

from tests.conftest import TEST_SPARK_CONF
from tests.server_process import Server, function_source, running_server, wait_until

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

ENV = {"SPARKGATE_AUTH_ENABLED": "true", "SPARKGATE_CONTEXT_ENGINE": "python",
       "SPARKGATE_DEPLOY_EXAMPLES": "false"}
# Plain functions for these tests, uploaded as an artifact through the client.
FUNCTIONS = textwrap.dedent('''\
    """Plain functions for the client's tests."""
    import time


    def chatty(lines: int = 3, pause: float = 0.0) -> int:
        for n in range(lines):
            print(f"line {n}")
            time.sleep(pause)
        return lines


    def fail(message: str = "boom") -> int:
        raise ValueError(message)
''')
ENDED = {"finished", "failed", "cancelled"}


@dataclass
class Gateway:
    server: Server
    keys: dict[str, str]  # role -> API key

    def client(self, role: str = "submit", **options) -> Client:
        return Client(self.server.url, api_key=self.keys[role], **options)

    def async_client(self, role: str = "submit", **options) -> AsyncClient:
        return AsyncClient(self.server.url, api_key=self.keys[role], **options)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("client")
    with running_server(workdir, ENV, wait_for_worker=False) as server:
        keys = {role: server.create_key(f"client-{role}", role)
                for role in ("admin", "submit", "read")}
        gateway = Gateway(server, keys)
        with gateway.client("admin") as admin:
            admin.deploy("client_fns.py", "chatty", "fail", content=FUNCTIONS.encode())
            admin.deploy("plain.py", "add", content=function_source("plain.py"))
            admin.deploy("plain_behaviours.py", "naps",
                         content=function_source("plain_behaviours.py"))
        yield gateway


# ---------------------------------------------------------------------------------------------
# Sync


def test_run_answers_the_result_and_raises_typed_errors_that_carry_the_job(gateway: Gateway):
    with gateway.client() as sparkgate:
        assert sparkgate.run("add", x=1, y=2) == 3
        assert sparkgate.run("add", {"x": 41}) == 42
        with pytest.raises(JobFailed) as failed:
            sparkgate.run("fail", message="no luck")
        job = failed.value.job
        assert job.status == "failed" and job.function == "fail"
        assert job.error is not None and job.error.startswith("ValueError: no luck")
        assert str(failed.value) == f"job {job.id} (fail) failed: ValueError: no luck"
        assert sparkgate.get_job(job.id).status == "failed"
        with pytest.raises(InvalidArguments) as invalid:
            sparkgate.run("add", x="one")
        assert invalid.value.status == 400 and invalid.value.details[0]["field"] == "x"
        with pytest.raises(NotFound):
            sparkgate.run("no_such_function")
        with pytest.raises(TypeError, match="given both"):
            sparkgate.run("add", {"x": 1}, x=2)


def test_keys_decide_what_the_client_may_do(gateway: Gateway):
    with Client(gateway.server.url) as anonymous, pytest.raises(Unauthorized) as refused:
        anonymous.functions()
    assert refused.value.code == "unauthenticated"
    with Client(gateway.server.url, api_key="sg_wrong") as wrong, pytest.raises(Unauthorized):
        wrong.functions()
    with gateway.client("read") as reader:
        assert "add" in {f.name for f in reader.functions()}
        with pytest.raises(Forbidden):
            reader.run("add", x=1)
    with gateway.client("submit") as submitter, pytest.raises(Forbidden):
        submitter.upload_artifact("x.py", b"x = 1\n")


def test_submit_then_wait_result_logs_and_events(gateway: Gateway):
    with gateway.client() as sparkgate:
        job = sparkgate.submit("chatty", lines=3, pause=0.3)
        events = list(job.events(with_logs=True))
        assert events[-1].name == "finished" and events[-1].job_id == job.id
        assert "logs" in [e.name for e in events]
        assert job.wait(timeout=30).status == "finished"
        assert job.result() == 3 and job.status() == "finished"
        # An ended job's events: its end, at once.
        assert [e.name for e in job.events()] == ["finished"]
        records = list(job.logs())
        assert records[0].startswith("INFO ") and "started on worker" in records[0]
        assert [r.rpartition("] ")[2] for r in records[1:4]] == ["line 0", "line 1", "line 2"]
        assert "finished in" in records[-1]
        assert list(job.logs(offset=2)) == records[2:]


def test_logs_followed_come_once_each_in_order_while_the_job_runs(gateway: Gateway):
    with gateway.client() as sparkgate:
        job = sparkgate.submit("chatty", lines=8, pause=0.2)
        followed, seen_running = [], False
        for record in job.logs(follow=True, poll_s=0.1):
            followed.append(record)
            seen_running = seen_running or job.info().status == "started"
        assert seen_running  # it tailed a running job, not just read an ended one
        assert job.info().status == "finished"
        assert followed == list(job.logs())
        assert [r.rpartition("] ")[2] for r in followed[1:9]] == [f"line {n}" for n in range(8)]


def test_the_logs_endpoint_reads_on_from_an_offset(gateway: Gateway):
    with gateway.client() as sparkgate:
        job_id = sparkgate.submit("chatty", lines=2).wait(timeout=30).id
    url = gateway.server.api(f"/jobs/{job_id}/logs")
    auth = {"Authorization": f"Bearer {gateway.keys['read']}"}
    whole = httpx.get(url, headers=auth)
    assert whole.headers["X-Sparkgate-Next-Offset"] == "4"  # started, 2 lines, finished
    assert whole.headers["X-Sparkgate-Job-Status"] == "finished"
    rest = httpx.get(url, params={"offset": "3"}, headers=auth)
    assert rest.text == whole.text.splitlines(keepends=True)[3]
    assert rest.headers["X-Sparkgate-Next-Offset"] == "4"
    beyond = httpx.get(url, params={"offset": "9"}, headers=auth)
    assert (beyond.text, beyond.headers["X-Sparkgate-Next-Offset"]) == ("", "9")
    bad = httpx.get(url, params={"offset": "-1"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "offset"


def test_cancel_and_a_wait_that_runs_out(gateway: Gateway):
    with gateway.client() as sparkgate:
        job = sparkgate.submit("naps", seconds=300)
        wait_until(lambda: job.status() == "started", 30, "the job started")
        with pytest.raises(WaitTimeout) as late:
            job.wait(timeout=0.5)
        assert late.value.job.status == "started"
        assert job.cancel().status in {"cancelling", "cancelled"}
        with pytest.raises(JobCancelled) as cancelled:
            job.result(timeout=30)
        assert cancelled.value.job.status == "cancelled"
        with pytest.raises(Conflict):
            job.cancel()
        with pytest.raises(WaitTimeout) as late:  # run's own timeout: the job goes on
            sparkgate.run("naps", seconds=300, timeout=0.3)
        running = sparkgate.job(late.value.job.id)
        assert running.status() in {"queued", "started"}
        running.cancel()
        assert running.wait(timeout=30).status == "cancelled"


def test_a_spark_job_s_events_carry_its_progress(gateway: Gateway):
    with gateway.client("admin") as admin:
        admin.save_context("client-spark", engine="spark", maxJobs=1,
                           sparkConf=TEST_SPARK_CONF)
        admin.deploy("behaviours.py", "slow_spark", content=function_source("behaviours.py"),
                     default_context="client-spark")
    with gateway.client() as sparkgate:
        job = sparkgate.submit("slow_spark", seconds=2.0)  # 4 tasks of 0.5 s
        events = list(job.events())
        assert events[-1].name == "finished", events
        readings = [e.progress for e in events if e.name == "progress"]
        assert readings and all(r is not None for r in readings), events
        tasks = [r["tasks"] for r in readings if r is not None]
        # A first reading may come before Spark has the stage's tasks (total 0); once it has
        # them, the total is the stage's four and stays.
        totals = [t["total"] for t in tasks]
        assert totals[-1] == 4 and set(totals) <= {0, 4} and totals == sorted(totals), tasks
        done = [t["done"] for t in tasks]
        assert done == sorted(done) and done[0] < 4, done  # seen while it ran, rising
        percents = [e.percent for e in events if e.name == "progress"]
        assert all(p is not None and 0.0 <= p <= 100.0 for p in percents), percents
        assert job.result(timeout=60) == 6


def test_listings(gateway: Gateway):
    with gateway.client("submit") as sparkgate:
        made = {sparkgate.submit("add", x=n).id for n in range(3)}
        mine = sparkgate.jobs(function="add", limit=1000)
        assert made <= {j.id for j in mine}
        page = sparkgate.jobs_page(function="add", limit=2)
        assert len(page.jobs) == 2 and page.total >= 3 and page.total_exact
        with pytest.raises(NotFound):
            sparkgate.get_job("no-such-job")
    with gateway.client("read") as reader:
        add = reader.function("add")
        assert (add.path, add.class_name, add.needs_spark) == ("plain.py", "add", False)
        assert add.arguments_schema is not None and add.execute["x"] == {"type": "MInt"}
        assert {"client_fns.py", "plain.py"} <= set(reader.artifacts())
        [default] = [c for c in reader.contexts() if c.name == "default"]
        assert default.engine == "python"
        assert reader.status()["database"] == "sqlite"
        assert all("name" in w for w in reader.workers())


def test_deploy_artifacts_functions_and_contexts(gateway: Gateway, tmp_path: Path):
    source = tmp_path / "deployed.py"
    source.write_text("def triple(x: int) -> int:\n    return 3 * x\n")
    with gateway.client("admin") as admin:
        uploaded = admin.upload_artifact(source)
        assert uploaded.name == "deployed.py" and len(uploaded.sha1) == 40
        with pytest.raises(Conflict):
            admin.upload_artifact(source)
        with pytest.raises(InvalidArtifact):
            admin.upload_artifact("broken.py", b"def (:\n")
        with pytest.raises(BadRequest, match=re.escape("requirements: '-e .': options")):
            admin.upload_artifact("needs.py", b"x = 1\n", requirements=["-e ."])
        # Already installed here: the environment is made, and nothing is downloaded.
        admin.upload_artifact("needs.py", b"x = 1\n", requirements=["packaging", "httpx"])
        needs = admin.artifact("needs.py")
        assert needs.requirements == ("httpx", "packaging") and needs.environment
        assert admin.artifact("deployed.py") == Artifact("deployed.py", uploaded.sha1)
        context = admin.save_context("client-scoring", engine="python", max_jobs=2,
                                     downtime="60s")
        assert (context.engine, context.max_jobs, context.raw["downtime"]) == ("python", 2, "60s")
        created = admin.deploy_function("triple", "deployed.py", default_context="client-scoring")
        assert created.default_context == "client-scoring"
        assert admin.run("triple", x=5) == 15
        source.write_text("def triple(x: int) -> int:\n    return 3 * x + 1\n")
        admin.upload_artifact(source, replace=True)
        replaced = admin.deploy_function("triple", "deployed.py", "triple")  # an update
        assert replaced.default_context == "default"
        assert admin.run("triple", x=5, context="client-scoring") == 16
        assert admin.delete_function("triple").name == "triple"
        admin.delete_artifact("deployed.py")
        assert admin.delete_context("client-scoring").name == "client-scoring"
        with pytest.raises(NotFound):
            admin.context("client-scoring")


# ---------------------------------------------------------------------------------------------
# Async


async def test_async_run_submit_logs_events_and_cancel(gateway: Gateway):
    async with gateway.async_client() as sparkgate:
        results = await asyncio.gather(*(sparkgate.run("add", x=n) for n in range(5)))
        assert results == [n + 1 for n in range(5)]
        with pytest.raises(JobFailed) as failed:
            await sparkgate.run("fail")
        assert failed.value.job.error.startswith("ValueError: boom")
        with pytest.raises(InvalidArguments):
            await sparkgate.submit("add", y=2)

        job = await sparkgate.submit("chatty", lines=4, pause=0.2)
        followed = [record async for record in job.logs(follow=True, poll_s=0.1)]
        assert [r.rpartition("] ")[2] for r in followed[1:5]] == [f"line {n}" for n in range(4)]
        assert await job.result(timeout=30) == 4
        assert followed == [record async for record in job.logs()]

        sleeper = await sparkgate.submit("naps", seconds=300)
        while await sleeper.status() != "started":
            await asyncio.sleep(0.05)
        await sleeper.cancel()
        with pytest.raises(JobCancelled):
            await sleeper.result(timeout=30)
        names = [e.name async for e in sleeper.events()]
        assert names == ["cancelled"]

        assert sleeper.id in {j.id for j in await sparkgate.jobs(function="naps", limit=1000)}
        assert (await sparkgate.function("chatty")).path == "client_fns.py"


async def test_async_events_of_every_job_of_a_function(gateway: Gateway):
    async with gateway.async_client() as sparkgate:
        seen: list[tuple[str, str | None]] = []

        async def listen() -> None:
            async with aclosing(sparkgate.events(functions=["chatty"])) as events:
                async for event in events:
                    seen.append((event.name, event.job_id))
                    if event.ended:
                        return

        listening = asyncio.create_task(listen())
        await asyncio.sleep(0.5)  # the stream is live only: connected before the job
        job = await sparkgate.submit("chatty", lines=1)
        await asyncio.wait_for(listening, 30)
        assert ("finished", job.id) in seen and ("started", job.id) in seen


# ---------------------------------------------------------------------------------------------
# Retries


@dataclass
class FaultyProxy:
    """Forwards to the gateway, except for the next submits (POST …/jobs), each given a
    fault in turn: ``503 after`` (forwarded, then answered 503 as if the answer was lost),
    ``429 before`` (never forwarded), ``drop after`` (forwarded, then the connection closed
    without an answer)."""

    upstream: str
    faults: list[str] = field(default_factory=list)
    submits: list[tuple[float, str | None]] = field(default_factory=list)  # (time, key)

    @contextmanager
    def serve(self) -> Iterator[str]:
        proxy = self
        forward = httpx.Client(timeout=120)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._handle()

            do_POST = do_PUT = do_DELETE = do_GET

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                submit = self.command == "POST" and self.path.split("?")[0].endswith("/jobs")
                fault = proxy.faults.pop(0) if submit and proxy.faults else None
                if submit:
                    proxy.submits.append((time.monotonic(), self.headers["Idempotency-Key"]))
                if fault == "429 before":
                    return self._answer(429, {"Retry-After": "1"}, _error("too_many_requests"))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                answer = forward.request(self.command, proxy.upstream + self.path,
                                         headers=headers, content=body)
                if fault == "503 after":
                    return self._answer(503, {"Retry-After": "1"}, _error("unavailable"))
                if fault == "drop after":
                    self.close_connection = True
                    return None
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in (
                    "content-length", "transfer-encoding", "connection", "content-encoding")}
                return self._answer(answer.status_code, kept, answer.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            forward.close()


def _error(code: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": "try later", "details": None}}).encode()


@pytest.fixture
def proxy(gateway: Gateway) -> Iterator[tuple[FaultyProxy, str]]:
    faulty = FaultyProxy(gateway.server.url)
    with faulty.serve() as url:
        yield faulty, url


def jobs_with(gateway: Gateway, marker: int) -> list[str]:
    with gateway.client("admin") as admin:
        return [j.id for j in admin.jobs(function="add", limit=1000)
                if j.arguments.get("x") == marker]


@pytest.mark.parametrize("fault", ["503 after", "429 before", "drop after"])
def test_a_submit_retried_after_a_fault_makes_one_job(gateway: Gateway, proxy, fault: str):
    faulty, url = proxy
    faulty.faults = [fault]
    marker = random.randrange(10**6, 10**9)
    with Client(url, api_key=gateway.keys["submit"]) as sparkgate:
        assert sparkgate.run("add", x=marker) == marker + 1
        job = sparkgate.submit("add", x=marker + 1)
    (first, key), (second, again) = faulty.submits[:2]
    assert key == again and key is not None
    if fault != "drop after":
        assert second - first >= 0.95  # Retry-After: 1
    assert len(jobs_with(gateway, marker)) == 1
    assert jobs_with(gateway, marker + 1) == [job.id]
    assert faulty.submits[2][1] != key  # the next submit: a key of its own


async def test_an_async_submit_retried_after_a_503_makes_one_job(gateway: Gateway, proxy):
    faulty, url = proxy
    faulty.faults = ["503 after", "503 after"]
    marker = random.randrange(10**6, 10**9)
    async with AsyncClient(url, api_key=gateway.keys["submit"]) as sparkgate:
        job = await sparkgate.submit("add", x=marker)
    async with gateway.async_client() as direct:  # the proxy does not stream events
        assert await direct.job(job.id).result(timeout=30) == marker + 1
    assert len({key for _, key in faulty.submits}) == 1 and len(faulty.submits) == 3
    assert jobs_with(gateway, marker) == [job.id]


def test_retries_give_up_as_the_policy_says(gateway: Gateway, proxy):
    faulty, url = proxy
    faulty.faults = ["429 before"] * 3
    retry = RetryPolicy(attempts=2, budget_s=10)
    with Client(url, api_key=gateway.keys["submit"], retry=retry) as sparkgate, \
            pytest.raises(TooManyRequests) as refused:
        sparkgate.submit("add", x=1)
    assert refused.value.retry_after == 1.0 and len(faulty.submits) == 2


# ---------------------------------------------------------------------------------------------
# Installing


def test_pip_install_client_brings_httpx_and_no_pyspark(gateway: Gateway, tmp_path: Path):
    # A copy: setuptools builds in the source folder (build/, *.egg-info), and files left in
    # build/ by an earlier build would go into this one.
    source = tmp_path / "client"
    shutil.copytree(REPO / "client", source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".*_cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run([str(python), "-c", textwrap.dedent("""
        import importlib.util, sys
        assert importlib.util.find_spec("pyspark") is None, "pyspark is installed"
        assert importlib.util.find_spec("sparkgate") is None, "the gateway is installed"
        import sparkgate_client
        with sparkgate_client.Client(sys.argv[1], api_key=sys.argv[2]) as sparkgate:
            print(sparkgate.run("add", x=20, y=22), sparkgate_client.__file__)
    """), gateway.server.url, gateway.keys["submit"]],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert probe.returncode == 0, probe.stderr
    answer, location = probe.stdout.split()
    assert answer == "42" and location.startswith(str(venv))
    files = subprocess.run([str(python), "-m", "pip", "show", "-f", "sparkgate-client"],
                           capture_output=True, text=True, check=True).stdout
    assert "sparkgate_client/py.typed" in files
