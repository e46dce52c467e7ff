"""`sparkgate serve` as a process among others (DESIGN.md, invariant 7): one per port and per
data folder, a second one refusing in one line and harming nothing; nothing it starts (embedded
Redis, workers, their JVMs, temp folders) outlives it, SIGKILL included; the first Ctrl-C says
what it waits for, a second one stops at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from redis import Redis

from sparkgate.jobs.db import make_engine
from sparkgate.jobs.store import Store
from tests.server_process import (
    Server,
    free_port,
    running_server,
    server_database,
    wait_until,
)

pytestmark = pytest.mark.slow

# "Within seconds" of serve's end, on a 2-core machine shared with other test runs.
GONE_WITHIN_S = 10


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def alive(process: psutil.Process) -> bool:
    try:  # a zombie is dead: only its parent (init, once serve is gone) has yet to reap it
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def embedded_redis(server: Server) -> psutil.Process:
    """The server's embedded redis-server, found as a user would: by the socket serve names."""
    url = re.search(r"embedded Redis on (unix://\S+)", server.log.read_text())
    assert url, "no embedded Redis in the log"
    with Redis.from_url(url.group(1)) as redis:
        return psutil.Process(int(redis.info("server")["process_id"]))


def started_by(server: Server) -> list[psutil.Process]:
    """Every process serve started: its descendants, and its Redis even if it daemonized."""
    found = {p.pid: p for p in [*descendants(server.process.pid), embedded_redis(server)]}
    return list(found.values())


def spark_jvms(server: Server) -> list[psutil.Process]:
    found = []
    for process in descendants(server.process.pid):
        with contextlib.suppress(psutil.NoSuchProcess):  # e.g. a `java -version` that ended
            if "org.apache.spark.deploy.SparkSubmit" in process.cmdline():
                found.append(process)
    return found


def run_second_serve(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A second serve, which must give up at once; one that would run on is stopped."""
    workdir.mkdir(exist_ok=True)
    try:
        return subprocess.run(["sparkgate", "serve"], env=env, cwd=workdir, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the second serve ran on:\n{exc.output}") from None


def job_in_database(server: Server, job_id: str):
    engine = make_engine(server.env.get("SPARKGATE_DATABASE_URL")
                         or f"sqlite:///{server.data_dir / 'sparkgate.db'}")
    try:
        return Store(engine).get_job(job_id)
    finally:
        engine.dispose()


def scratch_left(server: Server) -> list[Path]:
    root = server.data_dir / "tmp"
    return list(root.iterdir()) if root.exists() else []


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """serve's settings for the embedded SQLite, or for a PostgreSQL database of its own."""
    with server_database(request.param) as settings:
        yield settings


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> Iterator[Server]:
    """A serve without workers: what a second one could harm is its port, folder and Redis."""
    workdir = tmp_path_factory.mktemp("first")
    with running_server(workdir, {"SPARKGATE_START_WORKERS": "false"},
                        wait_for_worker=False) as server:
        yield server


def assert_unharmed(server: Server, redis: psutil.Process) -> None:
    assert alive(redis)
    assert server.get("/status").status_code == 200
    server.submit("pi", {"samples": 10})  # queued in its Redis: no worker runs it


def test_a_second_serve_on_the_same_data_folder_refuses_in_one_line(first: Server,
                                                                      tmp_path: Path):
    redis = embedded_redis(first)
    done = run_second_serve(tmp_path, {**first.env, "SPARKGATE_PORT": str(free_port())})
    assert done.returncode != 0
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    assert f"{first.data_dir.resolve()} is in use by pid {first.process.pid}" in lines[0]
    assert_unharmed(first, redis)


def test_a_second_serve_on_the_same_port_refuses_in_one_line(first: Server, tmp_path: Path):
    redis = embedded_redis(first)
    data_dir = tmp_path / "data"
    done = run_second_serve(tmp_path, {**first.env, "SPARKGATE_DATA_DIR": str(data_dir)})
    assert done.returncode != 0
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    assert f"port {first.port} on 127.0.0.1 is in use" in lines[0]
    assert not data_dir.exists()  # it refused before touching anything
    assert_unharmed(first, redis)


def test_nothing_outlives_a_serve_killed_while_spark_runs_a_job(tmp_path: Path,
                                                                database: dict[str, str]):
    temp = tmp_path / "tmp"
    temp.mkdir()
    with running_server(tmp_path, {"TMPDIR": str(temp), **database}) as server:
        server.deploy("behaviours.py", "slow_spark", "slow_spark")
        job_id = server.submit("slow_spark", {"seconds": 300})
        wait_until(lambda: (server.job(job_id).get("progress") or {}).get("tasks", {})
                   .get("total"), 60, "the job's Spark tasks run")
        started = started_by(server)
        # Spark's JVM: not the supervisor's passing `java -version` (the class archive's key).
        (jvm,) = spark_jvms(server)
        scratch = server.data_dir.resolve() / "tmp" / f"worker-{jvm.ppid()}"
        jvm_options = jvm.cmdline()
        spark_dirs = list(scratch.glob("blockmgr-*"))

        server.process.kill()
        server.process.wait()
        wait_until(lambda: not [p for p in started if alive(p)], GONE_WITHIN_S,
                   "every process serve started ends")
    # Spark's temp folders (spark-*, blockmgr-*) follow the JVM's: into the scratch, gone.
    assert f"-Djava.io.tmpdir={scratch}" in jvm_options
    assert spark_dirs
    assert scratch_left(server) == []
    assert list(temp.iterdir()) == []
    job = job_in_database(server, job_id)
    assert job.status.value == "failed"
    assert f"its supervisor (pid {server.process.pid}) is gone" in (job.error or "")


def test_nothing_outlives_a_serve_killed_while_its_worker_starts_spark(tmp_path: Path):
    with running_server(tmp_path, wait_for_worker=False) as server:
        jvm = wait_until(lambda: spark_jvms(server), 60, "a worker starts Spark's JVM")[0]
        started = started_by(server)
        server.process.kill()
        server.process.wait()
        wait_until(lambda: not [p for p in started if alive(p)], GONE_WITHIN_S,
                   "every process serve started ends")
    assert not alive(jvm)
    assert scratch_left(server) == []


def test_ctrl_c_says_what_it_waits_for_and_a_second_one_stops_at_once(tmp_path: Path):
    with running_server(tmp_path, {"SPARKGATE_WORKER_STOP_GRACE_S": "120"}) as server:
        server.deploy("behaviours.py", "sleep_python", "sleep_python")
        short = server.submit("sleep_python", {"seconds": 3})
        long = server.submit("sleep_python", {"seconds": 300})
        for job_id in (short, long):
            server.wait_for_job(job_id, {"started"})
        started = started_by(server)

        server.process.send_signal(signal.SIGINT)
        said = wait_until(lambda: "stopping (SIGINT)" in server.log.read_text(), 2,
                          "the first Ctrl-C says what it does, at once")
        assert said
        message = server.log.read_text().split("stopping (SIGINT)")[1].splitlines()[0]
        assert "waiting for 2 running job(s) to end, up to 120s" in message
        assert "press Ctrl-C again" in message
        # The drain lets a job end (no new connection is taken meanwhile: ask the database)...
        wait_until(lambda: job_in_database(server, short).status.value != "started", 30,
                   "the short job ends")
        assert job_in_database(server, short).status.value == "finished"

        server.process.send_signal(signal.SIGINT)  # ... and a second Ctrl-C stops now
        assert server.process.wait(timeout=15) == 128 + signal.SIGINT
        wait_until(lambda: not [p for p in started if alive(p)], 2,
                   "every process serve started has ended")
    assert scratch_left(server) == []
    job = job_in_database(server, long)
    assert job.status.value == "failed"
    assert "stopped at once (a second SIGTERM)" in (job.error or "")
    assert "Aborted" not in server.log.read_text()
    assert server.log.read_text().rstrip().endswith("stopped at once")


def test_sigterm_stops_gracefully_and_leaves_nothing(tmp_path: Path):
    with running_server(tmp_path) as server:
        started = started_by(server)
        assert "java" in {p.name() for p in started}
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        assert not [p for p in started if alive(p)]
    assert scratch_left(server) == []
    assert "stopping (SIGTERM): no job is running" in server.log.read_text()
    assert server.log.read_text().rstrip().endswith("WARNING sparkgate: stopped")
    assert os.path.exists(server.data_dir / "redis.rdb")  # Redis saved as it stopped


# serve, with a SIGTERM sent to itself as it prepares its database: after its embedded Redis
# started, before its loop handles signals (deterministic, unlike a signal timed from outside).
TERMINATED_WHILE_STARTING = """
import os, signal, sys
from sparkgate import cli
from sparkgate.jobs import migrate  # serve imports prepare_database from it as it starts

prepare = migrate.prepare_database
def prepare_after_a_sigterm(url):
    os.kill(os.getpid(), signal.SIGTERM)
    return prepare(url)
migrate.prepare_database = prepare_after_a_sigterm
sys.argv = ["sparkgate", "serve", "--port", sys.argv[1]]
cli.main()
"""


def test_sigterm_while_serve_starts_stops_what_had_started(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    env.update({"SPARKGATE_DEPLOY_EXAMPLES": "false", "SPARKGATE_START_WORKERS": "false"})
    done = subprocess.run([sys.executable, "-c", TERMINATED_WHILE_STARTING, str(free_port())],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    log = done.stdout + done.stderr
    assert done.returncode == 128 + signal.SIGTERM, log
    assert "stopped by SIGTERM while starting" in log and "Traceback" not in log, log
    pid = int(re.search(r"embedded Redis on \S+ \(pid (\d+)\)", log).group(1))
    assert not psutil.pid_exists(pid) or not alive(psutil.Process(pid)), log
    assert (tmp_path / "sparkgate-data" / "redis.rdb").exists()  # it saved as it stopped
