"""Remote workers and real clusters.

- A worker started by hand, with nothing but the Redis URL and the database URL (and a data
  folder of its own, as on another host), takes the jobs a `sparkgate serve` that starts no
  workers of its own queues for its context.
- A context whose sparkConf names a Spark standalone master runs its jobs on that cluster: a real
  master and worker (started here from what the pyspark package ships), the tasks in an executor
  process of that worker, the application listed by the master as ``sparkgate-<context>``.

Everything runs as separate processes, each in its own process group, so teardown can end every
one of them (and the JVMs under them) whatever the test's outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyspark
import pytest
import requests
from redis import Redis

from tests.conftest import FUNCTIONS_DIR, create_pg_database, drop_pg_database, free_port

pytestmark = pytest.mark.slow

CLUSTER_REDIS_URL = "redis://127.0.0.1:6379/12"
SPARK_HOME = Path(pyspark.__file__).resolve().parent
START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 60
STOP_GRACE_S = 20

LOCAL_CONTEXT = "remote_ctx"
CLUSTER_CONTEXT = "cluster_ctx"
LOCAL_SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
}


# -- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 4000) -> str:
        try:
            return f"--- {self.name} log ({self.log}) ---\n" + self.log.read_text(
                errors="replace")[-chars:]
        except OSError as exc:
            return f"--- {self.name}: no log ({exc}) ---"


@dataclass
class Launcher:
    """Starts processes in their own sessions; stops them all, last started first."""

    workdir: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Proc:
        cwd.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, process, log)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        failures = []
        while self.started:
            proc = self.started.pop()
            try:
                self._stop(proc)
            except Exception as exc:  # stop the others all the same
                failures.append(f"{proc.name}: {exc!r}")
        assert not failures, failures

    @staticmethod
    def _stop(proc: Proc) -> None:
        # SIGTERM to the leader alone, as a service manager would: a sparkgate worker then stops
        # its SparkSession itself (its JVM, in the same group, must not be killed under it).
        with contextlib.suppress(ProcessLookupError):
            proc.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.process.wait(timeout=STOP_GRACE_S)
        # Whatever is left of the group (a JVM outliving its parent, an executor): gone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.process.wait(timeout=10)


def wait_until(what: str, check: Callable[[], Any], procs: list[Proc],
               timeout_s: float = START_TIMEOUT_S, interval_s: float = 0.2) -> Any:
    """``check()``'s first truthy value; fails at once, with logs, if a process in ``procs``
    exits, and after ``timeout_s`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        for proc in procs:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited with code {proc.process.returncode} "
                                     f"while waiting for {what}\n{proc.tail()}")
        try:
            value = check()
        except requests.RequestException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(p.tail() for p in procs)
            raise AssertionError(f"no {what} within {timeout_s}s\n{logs}")
        time.sleep(interval_s)


# -- the database, the gateway, the Spark cluster --------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    url = create_pg_database("sparkgate_cluster")
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="module")
def launcher(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """Set up after the database and torn down before it: every process ends first."""
    redis = Redis.from_url(CLUSTER_REDIS_URL)
    redis.flushdb()
    launcher = Launcher(tmp_path_factory.mktemp("cluster"))
    try:
        yield launcher
    finally:
        launcher.stop_all()
        redis.flushdb()
        redis.close()


@dataclass
class Gateway:
    url: str
    proc: Proc
    database_url: str

    def api(self, path: str) -> str:
        return f"{self.url}/v2/api{path}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.api(path), timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return requests.post(self.api(path), timeout=30, **kw)

    def workers(self, context: str) -> list[dict[str, Any]]:
        response = self.get("/workers")
        assert response.status_code == 200, response.text
        return [w for w in response.json() if w["context"] == context]


@pytest.fixture(scope="module")
def gateway(database: str, launcher: Launcher) -> Gateway:
    """`sparkgate serve` on PostgreSQL and an external Redis, starting no workers itself."""
    data_dir = launcher.workdir / "gateway"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    env["SPARKGATE_PROCESSES"] = "1"  # one gateway process, as the tests expect
    env.update({
        "SPARKGATE_DATABASE_URL": database,
        "SPARKGATE_REDIS_URL": CLUSTER_REDIS_URL,
        "SPARKGATE_DATA_DIR": str(data_dir / "data"),
        "SPARKGATE_PORT": str(port),
        "SPARKGATE_START_WORKERS": "false",
        "SPARKGATE_DEPLOY_EXAMPLES": "false",
    })
    upgraded = subprocess.run([sparkgate(), "db", "upgrade"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    proc = launcher.start("serve", [sparkgate(), "serve"], env, data_dir)
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, database)
    wait_until("gateway", lambda: gateway.get("/status").status_code == 200, [proc])
    return gateway


@dataclass
class SparkCluster:
    master_url: str
    web_url: str
    master: Proc
    worker: Proc | None = None

    def state(self) -> dict[str, Any]:
        response = requests.get(f"{self.web_url}/json/", timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_for_worker(self) -> dict[str, Any]:
        assert self.worker is not None
        alive = wait_until("Spark worker ALIVE at the master",
                           lambda: [w for w in self.state()["workers"] if w["state"] == "ALIVE"],
                           [self.master, self.worker])
        return alive[0]


@pytest.fixture(scope="module")
def spark_cluster(launcher: Launcher) -> SparkCluster:
    """A Spark standalone master and one worker (1 core, 1g), from the pyspark package.

    Returned once the master leads and the worker is starting: the test starts its sparkgate
    worker (a driver) meanwhile, and waits for the Spark worker before it submits a job.
    """
    port, web_port, worker_web_port = free_port(), free_port(), free_port()
    home = launcher.workdir / "spark"
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(home / "local"),
        "SPARK_LOG_DIR": str(home / "logs"),
        # The REST submission server listens on a fixed port (6066) by default.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    master = launcher.start("spark-master", [
        spark_class, "org.apache.spark.deploy.master.Master",
        "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(web_port),
    ], env, home / "master")
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web_port}", master)
    # The worker starts once the master leads: a registration sent before is dropped, and the
    # worker would retry only 5-15 s later.
    wait_until("Spark master", lambda: cluster.state().get("status") == "ALIVE", [master])
    cluster.worker = launcher.start("spark-worker", [
        spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master_url,
        "--cores", "1", "--memory", "1g", "--webui-port", str(worker_web_port),
        "--host", "127.0.0.1", "--work-dir", str(home / "work"),
    ], env, home / "worker")
    return cluster


# -- helpers ---------------------------------------------------------------------------------


def sparkgate() -> str:
    path = shutil.which("sparkgate") or str(Path(sys.executable).parent / "sparkgate")
    assert Path(path).exists(), "the sparkgate command is not installed"
    return path


def minimal_worker_env(gateway: Gateway, data_dir: Path, **extra: str) -> dict[str, str]:
    """All a worker on another host would be given: where Redis and the database are."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(data_dir))}
    if os.environ.get("JAVA_HOME"):
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    env.update({
        "SPARKGATE_DATABASE_URL": gateway.database_url,
        "SPARKGATE_REDIS_URL": CLUSTER_REDIS_URL,
        "SPARKGATE_DATA_DIR": str(data_dir),
    })
    env.update(extra)
    return env


def start_worker(launcher: Launcher, gateway: Gateway, context: str, **extra_env: str) -> Proc:
    # Its own folder, nowhere near the gateway's: nothing shared but Redis and the database.
    home = launcher.workdir / f"host-{context}"
    env = minimal_worker_env(gateway, home / "data", **extra_env)
    return launcher.start(f"worker-{context}", [sparkgate(), "worker", "--context", context],
                          env, home)


def create_context(gateway: Gateway, name: str, spark_conf: dict[str, str]) -> None:
    response = gateway.post("/contexts", json={"name": name, "sparkConf": spark_conf,
                                               "maxJobs": 1, "downtime": "Inf"})
    assert response.status_code == 200, response.text
    assert response.json()["sparkConf"] == spark_conf


def deploy_cluster_info(gateway: Gateway, function: str, context: str) -> None:
    with (FUNCTIONS_DIR / "cluster_info.py").open("rb") as fh:
        upload = requests.post(gateway.api("/artifacts"),
                               files={"file": ("cluster_info.py", fh)},
                               params={"force": "true"}, timeout=30)
    assert upload.status_code == 200, upload.text
    body = {"name": function, "path": "cluster_info.py", "className": "cluster_info",
            "defaultContext": context}
    response = gateway.post("/functions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["defaultContext"] == context


def wait_for_job(gateway: Gateway, job_id: str, worker: Proc) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = gateway.get(f"/jobs/{job_id}").json()
        return job if job["status"] in {"finished", "failed", "cancelled"} else None

    return wait_until(f"end of job {job_id}", done, [gateway.proc, worker],
                      timeout_s=JOB_TIMEOUT_S)


def the_worker(gateway: Gateway, context: str, proc: Proc) -> dict[str, Any]:
    """The context's one live worker, which must be the process started here."""
    workers = wait_until(f"worker for {context} in /v2/api/workers",
                         lambda: gateway.workers(context), [gateway.proc, proc])
    assert len(workers) == 1, workers
    assert workers[0]["address"].endswith(f":{proc.pid}"), (workers[0], proc.pid)
    return workers[0]


# -- the tests -------------------------------------------------------------------------------


def test_a_hand_started_worker_needs_only_redis_and_the_database(
        gateway: Gateway, launcher: Launcher):
    create_context(gateway, LOCAL_CONTEXT, LOCAL_SPARK_CONF)
    deploy_cluster_info(gateway, "remote_info", LOCAL_CONTEXT)
    submitted = gateway.post("/functions/remote_info/jobs", json={"n": 1000})
    assert submitted.status_code == 200, submitted.text
    job_id = submitted.json()["id"]

    # serve starts no worker: the job waits in its queue for one.
    time.sleep(1.0)
    assert gateway.workers(LOCAL_CONTEXT) == []
    assert gateway.get(f"/jobs/{job_id}").json()["status"] == "queued"

    worker = start_worker(launcher, gateway, LOCAL_CONTEXT)
    job = wait_for_job(gateway, job_id, worker)
    listed = the_worker(gateway, LOCAL_CONTEXT, worker)
    assert job["status"] == "finished", job
    assert job["workerId"] == listed["name"]
    assert listed["initInfo"]["sparkConf"]["spark.master"] == "local[2]"

    result = job["jobResult"]
    assert result["sum"] == 499500
    assert result["master"] == "local[2]"
    assert result["appName"] == f"sparkgate-{LOCAL_CONTEXT}"
    # It ran in the process started here; in local mode its tasks run under that driver.
    assert result["driver"]["pid"] == worker.pid
    assert worker.pid in result["task"]["ancestors"]
    assert result["task"]["executorCommand"] == []

    # The same worker answers a sync call too.
    sync = gateway.post("/functions/remote_info/jobs", params={"force": "true"},
                        json={"n": 10}).json()
    assert sync["success"] is True, sync
    assert sync["payload"]["sum"] == 45 and sync["payload"]["driver"]["pid"] == worker.pid


def test_a_context_with_a_standalone_master_runs_jobs_on_the_cluster(
        gateway: Gateway, launcher: Launcher, spark_cluster: SparkCluster):
    spark_conf = {
        "spark.master": spark_cluster.master_url,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.executor.memory": "512m",
        "spark.cores.max": "1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    create_context(gateway, CLUSTER_CONTEXT, spark_conf)
    deploy_cluster_info(gateway, "cluster_info", CLUSTER_CONTEXT)
    # Executors start the Python the driver names: this one, which has pyspark.
    worker = start_worker(launcher, gateway, CLUSTER_CONTEXT, PYSPARK_PYTHON=sys.executable)
    spark_worker = spark_cluster.wait_for_worker()
    assert spark_worker["cores"] == 1 and spark_worker["host"] == "127.0.0.1"
    listed = the_worker(gateway, CLUSTER_CONTEXT, worker)
    assert listed["initInfo"]["sparkConf"]["spark.master"] == spark_cluster.master_url

    submitted = gateway.post("/functions/cluster_info/jobs", json={"n": 1000})
    assert submitted.status_code == 200, submitted.text
    job = wait_for_job(gateway, submitted.json()["id"], worker)
    assert job["status"] == "finished", (job, worker.tail())
    assert job["workerId"] == listed["name"]

    result = job["jobResult"]
    assert result["sum"] == 499500
    assert result["master"] == spark_cluster.master_url
    assert result["appName"] == f"sparkgate-{CLUSTER_CONTEXT}"
    assert result["driver"]["pid"] == worker.pid
    # The task ran under an executor JVM of this application, not under the driver.
    task = result["task"]
    assert worker.pid not in task["ancestors"], task
    command = task["executorCommand"]
    assert any("CoarseGrainedExecutorBackend" in arg for arg in command), task
    assert command[command.index("--app-id") + 1] == result["applicationId"]
    assert spark_cluster.worker is not None and spark_cluster.worker.pid in task["ancestors"], task

    # The master knows the application by the context's name.
    state = spark_cluster.state()
    apps = state.get("activeapps", []) + state.get("completedapps", [])
    by_id = {app["id"]: app for app in apps}
    assert result["applicationId"] in by_id, json.dumps(state, indent=1)[:3000]
    assert by_id[result["applicationId"]]["name"] == f"sparkgate-{CLUSTER_CONTEXT}"
