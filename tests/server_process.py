"""`sparkgate serve` as a real process for tests: started on a free port, stopped with SIGTERM,
plus the HTTP helpers the tests use against it."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from sparkgate.jobs.settings import Settings
from sparkgate.workers import class_archive
from sparkgate.workers.engines.spark import check_java
from tests.conftest import (
    TEST_SPARK_CONF,
    create_pg_database,
    drop_pg_database,
    free_port,
    function_source,
)

START_TIMEOUT_S = 120


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    env: dict[str, str]

    def api(self, path: str) -> str:
        return f"{self.url}/v2/api{path}"

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.api(path), timeout=120, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.api(path), timeout=120, **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return requests.put(self.api(path), timeout=120, **kw)

    def delete(self, path: str) -> requests.Response:
        return requests.delete(self.api(path), timeout=120)

    def submit(self, function: str, arguments: dict, **params: str) -> str:
        response = self.post(f"/functions/{function}/jobs", params=params, json=arguments)
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.get(f"/jobs/{job_id}").json()

    def wait_for_job(self, job_id: str, statuses: set[str], timeout_s: float = 90) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"job stuck in {job['status']}: {job}"
            time.sleep(0.1)

    def workers(self, context: str | None = None) -> list[dict]:
        return [w for w in self.get("/workers").json()
                if context is None or w["context"] == context]

    def deploy(self, file_name: str, function: str, class_name: str,
               context: str | None = None) -> None:
        """A test function (tests/functions/) or an example, as ``function``."""
        upload = requests.post(self.api("/artifacts"),
                               files={"file": (file_name, function_source(file_name))},
                               params={"force": "true"}, timeout=60)
        assert upload.status_code == 200, upload.text
        assert upload.text == file_name  # Mist's answer: the stored name, as text
        body = {"name": function, "path": file_name, "className": class_name,
                "defaultContext": context}
        exists = self.get(f"/functions/{function}").status_code == 200
        response = (self.put if exists else self.post)("/functions", json=body)
        assert response.status_code == 200, response.text

    def create_key(self, name: str, role: str) -> str:
        return create_key(self.env, name, role, self.data_dir.parent)

    def context(self, name: str, **fields) -> dict:
        body = {"name": name, "sparkConf": TEST_SPARK_CONF, **fields}
        response = self.post("/contexts", json=body)
        assert response.status_code == 200, response.text
        return response.json()


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(interval_s)


def create_key(env: dict[str, str], name: str, role: str, cwd: Path | None = None) -> str:
    """An API key made by the command users run (``sparkgate keys create``): its token."""
    made = subprocess.run(["sparkgate", "keys", "create", "--name", name, "--role", role],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@contextmanager
def server_database(storage: str, env_overrides: dict[str, str] | None = None,
                    ) -> Iterator[dict[str, str]]:
    """serve's settings for ``storage``: the embedded SQLite (none), or a PostgreSQL database
    of its own ("postgresql"), migrated by the command users run, dropped afterwards."""
    if storage == "sqlite":
        yield {}
        return
    url = create_pg_database()
    try:
        subprocess.run(["sparkgate", "db", "upgrade"],
                       env={**os.environ, **(env_overrides or {}), "SPARKGATE_DATABASE_URL": url},
                       check=True, timeout=120, capture_output=True)
        yield {"SPARKGATE_DATABASE_URL": url}
    finally:
        drop_pg_database(url)


@contextmanager
def running_server(workdir: Path, env_overrides: dict[str, str] | None = None,
                   wait_for_worker: bool = True) -> Iterator[Server]:
    """A `sparkgate serve` on a free port with the embedded defaults unless ``env_overrides``
    say otherwise; stopped with SIGTERM (which must succeed) at the end."""
    machine_class_archive()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    env["SPARKGATE_PROCESSES"] = "1"  # one gateway process, as the tests expect
    env.update({
        "SPARKGATE_DATA_DIR": str(workdir / "data"),
        "SPARKGATE_PORT": str(port),
        "SPARKGATE_CONTEXT_SPARK_CONF": json.dumps(TEST_SPARK_CONF),
        "SPARKGATE_CONTEXT_MAX_JOBS": "2",
        **(env_overrides or {}),
    })
    log = workdir / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(["sparkgate", "serve"], env=env, cwd=workdir, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", port, process, log, workdir / "data", env)
    try:
        _wait_until_ready(server, wait_for_worker)
        yield server
    finally:
        stop(server)


@functools.cache
def machine_class_archive() -> None:
    """Before this test process's first serve: the machine's Spark class archive, which every
    Spark worker the tests start then maps (workers/class_archive.py). Built here if there is
    none (a minute, once per machine), or waited for while another test process builds it; a
    build that fails leaves the workers starting without it, as in production."""
    folder = Settings.spark_class_archive_dir
    assert folder is not None
    java = check_java()
    if class_archive.ready(folder, java):
        return
    with tempfile.TemporaryDirectory() as logs:
        builder = class_archive.ArchiveBuilder(folder, Path(logs))
        builder.wanted(lambda: java)
        lock = class_archive.lock_path(folder, java)
        deadline = time.monotonic() + 600
        try:
            while time.monotonic() < deadline and not class_archive.ready(folder, java):
                builder.tend()
                if not _held(lock):  # no build under way, here or elsewhere: it failed
                    return
                time.sleep(1)
        finally:
            builder.stop()


def _held(lock: Path) -> bool:
    if not lock.exists():  # the folder could not be made: no build
        return False
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _wait_until_ready(server: Server, wait_for_worker: bool) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"serve exited:\n{server.log.read_text()}"
        try:
            answer = server.get("/workers")
            if not wait_for_worker or (answer.status_code == 200 and answer.json()):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"not ready within {START_TIMEOUT_S}s:\n{server.log.read_text()}")


def stop(server: Server) -> None:
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise AssertionError("serve did not stop on SIGTERM") from None
    assert code == 0, server.log.read_text()[-3000:]

