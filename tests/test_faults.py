"""Dependable under faults: 2,000 async jobs in flight while the database, Redis, a worker and
the gateway are each stopped and started again in turn.

Everything the test breaks is its own: a private PostgreSQL cluster (initdb in a temporary
folder, on a free port), a private redis-server with persistence off (a restart loses every
queue, worker record and lease: the reconciler has to restore them from the database), and a
real ``sparkgate serve`` whose supervisor runs the workers. The machine's shared PostgreSQL and
Redis, which other tests use, are never touched.

What is checked, from the outside:

- while the database or Redis is down, submits get 503 with a Retry-After header, promptly;
  no 500s, and nothing has to be restarted for submits to succeed again once it is back;
- every job a client was given an id for reaches a terminal state; the database holds exactly
  one job per submission (a retry of a submit whose answer was lost returns the same job);
- the function's own record of its runs (a line per execution, in a file) shows no job ran
  twice and every ``finished`` job ran exactly once; failed jobs say why.

The time each recovery took is printed (``pytest -s``); docs/operations.md quotes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from sparkgate.gateway.log_throttle import LogThrottle
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.deployment import build_function, upload_artifact
from sparkgate.jobs.environments import Environments
from sparkgate.jobs.migrate import upgrade
from sparkgate.jobs.publishing import Announcement
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.settings import ContextDefaults
from sparkgate.jobs.store import NewJob, Store
from sparkgate.jobs.submission import SubmitRequest, submit
from sparkgate.jobs.worker_registry import WorkerRegistry
from sparkgate.workers.supervisor import CHECK_INTERVAL_S, Supervisor
from tests.conftest import FUNCTIONS_DIR, TEST_SPARK_CONF, free_port
from tests.server_process import wait_until

PG_BIN = Path(os.environ.get("SGTEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
JOBS = 2000
CLIENT_THREADS = 4
# Submits are paced over this long, so that every fault finds jobs in flight.
LOAD_S = 60.0
SLOW_EVERY = 25  # every 25th job sleeps, so a killed worker has jobs running
SLOW_MS = 400
DB_DOWN_S = 4.0
REDIS_DOWN_S = 3.0
# A request during an outage must be answered (503) within this; retries wait this at most.
ANSWER_BOUND_S = 10.0
RETRY_PAUSE_S = 0.25
SUBMIT_GIVE_UP_S = 150.0
SETTLE_TIMEOUT_S = 120.0
START_TIMEOUT_S = 120.0
# Why a job may fail here: its worker was killed or orphaned while it ran.
ACCEPTABLE_FAILURES = ("worker lost", "its worker ")


# -- private infrastructure ------------------------------------------------------------------


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PrivatePostgres:
    """A PostgreSQL cluster of this test alone, stopped and started at will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/sparkgate"

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U",
                                     "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True, timeout=60)
        self.start()
        admin = create_engine(self.url.rsplit("/", 1)[0] + "/postgres",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE sparkgate"))
        admin.dispose()

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=300")
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                                     str(self.log), "-w", "-t", "60", "-o", options, "start"]),
                       check=True, capture_output=True, timeout=90)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode,
                                     "-w", "-t", "60", "stop"]),
                       check=True, capture_output=True, timeout=90)

    def running(self) -> bool:
        status = subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data),
                                              "status"]), capture_output=True, timeout=30)
        return status.returncode == 0


class PrivateRedis:
    """A redis-server of this test alone, persistence off: a restart comes back empty."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.root / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.root)],
                stdout=out, stderr=subprocess.STDOUT)
        client = Redis.from_url(self.url)
        try:
            wait_until(lambda: _pings(client), 30, "redis-server answers")
        finally:
            client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@dataclass
class Serve:
    """``sparkgate serve`` on a fixed port, started again with the same settings after a
    kill; every process it started is found by the test's unique data folder."""

    root: Path
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() of the last start

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/api"

    @property
    def data_dir(self) -> str:
        return self.env["SPARKGATE_DATA_DIR"]

    def start(self) -> None:
        with (self.root / "serve.log").open("ab") as out:
            self.process = subprocess.Popen(["sparkgate", "serve"], env=self.env, cwd=self.root,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.started_at = time.monotonic()
        wait_until(self._has_worker, START_TIMEOUT_S, "serve answers with a live worker", 0.25)

    def _has_worker(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_tail()
        try:
            return any(w.get("state", "running") != "draining" for w in self.workers())
        except (requests.RequestException, ValueError):
            return False

    def workers(self) -> list[dict]:
        response = requests.get(f"{self.url}/workers", timeout=10)
        response.raise_for_status()
        return response.json()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def ours(self) -> list[psutil.Process]:
        """Every live process started for this test's serve (serve, workers, their JVMs): they
        all carry its data folder in their environment, which no one else's does."""
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.environ().get("SPARKGATE_DATA_DIR") == self.data_dir:
                    found.append(process)
        return found

    def log_tail(self, chars: int = 4000) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


# -- the load --------------------------------------------------------------------------------


@dataclass
class Attempt:
    token: str
    began: float  # time.monotonic()
    took_s: float
    status: int | None  # None: no HTTP answer (connection refused or reset, timeout)
    retry_after: str | None = None
    detail: str = ""


@dataclass
class Load:
    """Clients that submit ``JOBS`` async jobs, paced over ``LOAD_S``, each retried on 503,
    429 and connection errors with the same externalId and Idempotency-Key."""

    url: str
    runs_file: Path
    run_tag: str
    accepted: dict[str, str] = field(default_factory=dict)  # token -> job id
    attempts: list[Attempt] = field(default_factory=list)
    refused: list[Attempt] = field(default_factory=list)  # answers that are not retried
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)
    began: float = 0.0

    def start(self) -> None:
        self.began = time.monotonic()
        for n in range(CLIENT_THREADS):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "the clients did not finish"

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def _client(self, n: int) -> None:
        session = requests.Session()
        for i in range(n, JOBS, CLIENT_THREADS):
            due = self.began + LOAD_S * i / JOBS
            time.sleep(max(0.0, due - time.monotonic()))
            self._submit(session, i)
        session.close()

    def _submit(self, session: requests.Session, i: int) -> None:
        token = f"{self.run_tag}-{i}"
        body = {"path": str(self.runs_file), "token": token,
                "sleep_ms": SLOW_MS if i % SLOW_EVERY == 0 else 0}
        give_up = time.monotonic() + SUBMIT_GIVE_UP_S
        while time.monotonic() < give_up:
            began = time.monotonic()
            try:
                response = session.post(f"{self.url}/functions/fault_record/jobs",
                                        params={"externalId": token}, json=body,
                                        headers={"Idempotency-Key": token},
                                        timeout=ANSWER_BOUND_S * 3)
            except requests.RequestException as exc:
                self._note(Attempt(token, began, time.monotonic() - began, None,
                                   detail=type(exc).__name__))
                session.close()  # a fresh connection for the retry
                time.sleep(RETRY_PAUSE_S)
                continue
            attempt = Attempt(token, began, time.monotonic() - began, response.status_code,
                              response.headers.get("Retry-After"), response.text[:300])
            self._note(attempt)
            if response.status_code == 200:
                with self.lock:
                    self.accepted[token] = response.json()["id"]
                return
            if response.status_code not in (429, 503):
                with self.lock:
                    self.refused.append(attempt)
                return
            time.sleep(RETRY_PAUSE_S)
        with self.lock:
            self.refused.append(Attempt(token, give_up, 0.0, None, detail="gave up"))

    def _note(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)

    def during(self, start: float, end: float) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if start <= a.began <= end]

    def first_success_after(self, moment: float) -> float | None:
        with self.lock:
            done = [a.began + a.took_s for a in self.attempts
                    if a.status == 200 and a.began >= moment]
        return min(done) if done else None


# -- the test --------------------------------------------------------------------------------


@dataclass
class Outage:
    name: str
    down_at: float  # the fault began
    up_at: float  # it was over
    out_at: float | None = None  # it was fully down (the stop returned)
    submits_back_s: float | None = None
    notes: dict[str, float] = field(default_factory=dict)


@pytest.fixture
def infrastructure() -> Iterator[tuple[PrivatePostgres, PrivateRedis, Path]]:
    root = Path(tempfile.mkdtemp(prefix="sparkgate-faults-"))
    root.chmod(0o755)
    pg_root = root / "pg"
    pg_root.mkdir()
    postgres = PrivatePostgres(pg_root)
    redis_server = PrivateRedis(root)
    try:
        postgres.create()
        redis_server.start()
        yield postgres, redis_server, root
    finally:
        with contextlib.suppress(Exception):
            if redis_server.process is not None and redis_server.process.poll() is None:
                redis_server.kill()
        with contextlib.suppress(Exception):
            if postgres.running():
                postgres.stop("immediate")
        if not os.environ.get("SGTEST_KEEP_FAULTS"):  # keep the logs to look at
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def serve(infrastructure) -> Iterator[Serve]:
    postgres, redis_server, root = infrastructure
    upgrade(postgres.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    env["SPARKGATE_PROCESSES"] = "1"  # one gateway process, as the tests expect
    env.update({
        "SPARKGATE_DATA_DIR": str(root / "data"),
        "SPARKGATE_DATABASE_URL": postgres.url,
        "SPARKGATE_REDIS_URL": redis_server.url,
        "SPARKGATE_DEPLOY_EXAMPLES": "false",
        "SPARKGATE_CONTEXT_SPARK_CONF": json.dumps(TEST_SPARK_CONF),
        "SPARKGATE_CONTEXT_MAX_JOBS": "4",
    })
    port = free_port()
    env["SPARKGATE_PORT"] = str(port)
    server = Serve(root, env, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        leftovers = server.ours()
        for process in leftovers:  # orphaned workers of a killed serve, and their JVMs
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(leftovers, timeout=15)


def deploy(server: Serve) -> None:
    with (FUNCTIONS_DIR / "fault_record.py").open("rb") as fh:
        upload = requests.post(f"{server.url}/artifacts", params={"force": "true"},
                               files={"file": ("fault_record.py", fh)}, timeout=60)
    assert upload.status_code == 200, upload.text
    response = requests.post(f"{server.url}/functions", timeout=60, json={
        "name": "fault_record", "path": "fault_record.py", "className": "record_run"})
    assert response.status_code == 200, response.text


def wait_for_count(load: Load, target: int, timeout_s: float = 90) -> None:
    wait_until(lambda: load.count() >= target, timeout_s, f"{target} jobs accepted", 0.05)


def worker_pid(server: Serve, worker: dict) -> int:
    return int(worker["address"].rsplit(":", 1)[1])


def kill_a_busy_worker(server: Serve, timeout_s: float = 20) -> tuple[dict, float]:
    """SIGKILL the worker that runs jobs now (preferably), checked to be one of ours; it and
    when it was killed (time.monotonic())."""
    deadline = time.monotonic() + timeout_s
    while True:
        workers = [w for w in server.workers() if w.get("state") != "draining"]
        busy = [w for w in workers if w.get("runningJobs")]
        if busy or (workers and time.monotonic() > deadline):
            victim = (busy or workers)[0]
            break
        time.sleep(0.05)
    pid = worker_pid(server, victim)
    process = psutil.Process(pid)
    assert process.environ().get("SPARKGATE_DATA_DIR") == server.data_dir
    assert process.cmdline()[1:5] == ["-P", "-m", "sparkgate", "worker"]
    process.kill()
    return victim, time.monotonic()


def db_jobs(url: str) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, external_id, status, error, worker_id, start_time, end_time FROM jobs "
                "WHERE function = 'fault_record'")).mappings().all()
    finally:
        engine.dispose()
    return [dict(r) for r in rows]


def unsettled(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM jobs WHERE status IN "
                "('queued', 'started', 'cancelling')")).scalar_one()
    finally:
        engine.dispose()


def check_outage_answers(load: Load, outage: Outage, what: str) -> None:
    """Submits while it was down: 503 with Retry-After, each answered within the bound."""
    assert outage.out_at is not None
    during = load.during(max(outage.down_at + 0.5, outage.out_at), outage.up_at - 0.2)
    assert during, f"no submit was attempted while {what} was down"
    unavailable = [a for a in during if a.status == 503]
    assert unavailable, f"no 503 while {what} was down: {[(a.status, a.detail) for a in during]}"
    assert all(a.retry_after and int(a.retry_after) > 0 for a in unavailable), unavailable[:3]
    wrong = [a for a in during if a.status not in (200, 503, 429)]
    assert not wrong, f"while {what} was down: {wrong[:5]}"
    inside = [a for a in during if a.began + a.took_s < outage.up_at - 0.2]
    accepted = [a for a in inside if a.status == 200]
    assert not accepted, f"accepted while {what} was down: {accepted[:3]}"
    slow = [a for a in during if a.took_s > ANSWER_BOUND_S]
    assert not slow, f"answers slower than {ANSWER_BOUND_S}s while {what} was down: {slow[:5]}"


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_2000_jobs_survive_database_redis_worker_and_gateway_faults(infrastructure, serve):
    postgres, redis_server, root = infrastructure
    test_began = time.monotonic()
    deploy(serve)
    runs_file = root / "runs.txt"
    runs_file.touch()
    load = Load(serve.url, runs_file, f"faults-{os.getpid()}")
    load.start()
    outages: list[Outage] = []

    # Each fault comes when a given number of jobs were accepted, so that every one of them,
    # the last included, happens with submits still coming and jobs queued and running.

    # 1. The database stops (fast shutdown: every connection is cut) and comes back.
    wait_for_count(load, 250)
    down = time.monotonic()
    postgres.stop("fast")
    out = time.monotonic()
    time.sleep(DB_DOWN_S)
    postgres.start()
    outages.append(Outage("database", down, time.monotonic(), out))

    # 2. Redis is killed and comes back empty: queues, worker records and the lease are gone.
    wait_for_count(load, 650)
    down = time.monotonic()
    redis_server.kill()
    out = time.monotonic()
    time.sleep(REDIS_DOWN_S)
    redis_server.start()
    outages.append(Outage("redis", down, time.monotonic(), out))

    # 3. A worker is SIGKILLed, with jobs running if it has any. The supervisor replaces it
    # (how soon is read from the jobs afterwards: the first one a new worker started).
    wait_for_count(load, 1050)
    victim, down = kill_a_busy_worker(serve)
    outages.append(Outage("worker", down, down))
    killed_wall_ms = time.time_ns() // 1_000_000

    # 4. The gateway (sparkgate serve, its supervisor and reconciler) is SIGKILLed and started
    # again with the same settings; its workers, orphaned, drain and stop by themselves.
    wait_for_count(load, 1450)
    workers_before = {w["name"] for w in serve.workers()}
    down = time.monotonic()
    gateway_killed_wall_ms = time.time_ns() // 1_000_000
    serve.kill()
    serve.start()
    outages.append(Outage("gateway", down, serve.started_at))

    load.join(timeout_s=LOAD_S + SUBMIT_GIVE_UP_S)
    submitted_s = time.monotonic() - load.began
    wait_until(lambda: unsettled(postgres.url) == 0, SETTLE_TIMEOUT_S,
               "every job reaches a terminal state", 0.5)
    settled_s = time.monotonic() - load.began

    for outage in outages:
        back = load.first_success_after(outage.up_at)
        outage.submits_back_s = None if back is None else back - outage.up_at
    jobs = db_jobs(postgres.url)
    outages[2].notes["a new worker started a job"] = first_start_after(
        jobs, killed_wall_ms, {victim["name"]})
    outages[3].notes["the new serve's worker started a job"] = first_start_after(
        jobs, gateway_killed_wall_ms, workers_before)
    runs = Counter(line.split()[0] for line in runs_file.read_text().splitlines())
    report(outages, load, jobs, runs, submitted_s, settled_s, time.monotonic() - test_began)

    # The clients: every submission got an id in the end, no answer but 200/429/503.
    assert not load.refused, load.refused[:5]
    assert len(load.accepted) == JOBS
    assert not [a for a in load.attempts if a.status is not None and a.status >= 500
                and a.status != 503], "5xx other than 503"
    check_outage_answers(load, outages[0], "the database")
    check_outage_answers(load, outages[1], "Redis")

    # The database: one job per submission, the one its client was given; all terminal.
    by_token = Counter(j["external_id"] for j in jobs)
    assert [t for t, n in by_token.items() if n > 1] == [], "a submission made two jobs"
    assert len(jobs) == len(load.accepted) == len(set(load.accepted.values()))
    ids = {j["external_id"]: j["id"] for j in jobs}
    assert ids == load.accepted
    assert Counter(j["status"] for j in jobs).keys() <= {"finished", "failed"}

    # The runs: none twice, every finished job exactly once, nothing unknown ran.
    assert [j for j, n in runs.items() if n > 1] == [], "a job ran twice"
    assert set(runs) <= set(ids.values()), "a job that no one submitted ran"
    finished = [j for j in jobs if j["status"] == "finished"]
    assert [j["id"] for j in finished if runs[j["id"]] != 1] == []
    failed = [j for j in jobs if j["status"] == "failed"]
    assert all(j["error"] and j["error"].startswith(ACCEPTABLE_FAILURES) for j in failed), \
        [j["error"] for j in failed]
    assert len(failed) <= 20, "more failures than the jobs a killed worker could hold"

    # Nothing is left behind in Redis.
    client = Redis.from_url(redis_server.url)
    try:
        assert client.llen("rq:queue:sparkgate:default") == 0
    finally:
        client.close()


def first_start_after(jobs: list[dict], moment_ms: int, except_workers: set[str]) -> float:
    """Seconds from ``moment_ms`` until a worker not in ``except_workers`` started a job."""
    starts = [j["start_time"] for j in jobs if j["start_time"] is not None
              and j["start_time"] > moment_ms and j["worker_id"] not in except_workers]
    return (min(starts) - moment_ms) / 1000 if starts else float("nan")


def report(outages: list[Outage], load: Load, jobs: list[dict], runs: Counter,
           submitted_s: float, settled_s: float, total_s: float) -> None:
    statuses = Counter(j["status"] for j in jobs)
    print(f"\n{len(load.accepted)} jobs accepted in {submitted_s:.1f}s, all terminal "
          f"{settled_s:.1f}s after the load began; test took {total_s:.1f}s")
    print(f"statuses: {dict(statuses)}; executions recorded: {sum(runs.values())}")
    for outage in outages:
        during = load.during(outage.down_at, outage.up_at)
        answers = Counter(a.status for a in during)
        back = "never" if outage.submits_back_s is None else f"{outage.submits_back_s:.1f}s"
        notes = "".join(f"; {k} {v:.1f}s after the fault" for k, v in outage.notes.items())
        print(f"{outage.name}: down {outage.up_at - outage.down_at:.1f}s; answers meanwhile "
              f"{dict(answers)}; first accepted submit {back} after it was back{notes}")
    errors = Counter((j["error"] or "").split(":")[0] for j in jobs if j["status"] == "failed")
    if errors:
        print(f"failures: {dict(errors)}")


# -- focused regressions: each fails without its fix -----------------------------------------


def dead_redis() -> Redis:
    """A real client of a port where nothing listens: every command fails at once."""
    return Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def test_a_worker_s_event_that_cannot_be_published_does_not_abandon_its_job():
    """Events are best effort: a Redis error while publishing one (after the claim, or after
    the end is recorded) used to raise out of the job's thread, leaving a claimed job
    unstarted until the reconciler failed it as "worker lost"."""
    redis = dead_redis()
    start = Announcement(redis, {"event": "started", "id": "some-job"})  # no exception
    start.then({"event": "finished", "id": "some-job"})
    start.close()
    redis.close()


def test_the_supervisor_logs_an_outage_once_not_every_check(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'sparkgate.db'}"
    upgrade(url)
    engine = make_engine(url)
    redis = dead_redis()
    supervisor = Supervisor(Catalog(engine, ContextDefaults()), Store(engine), JobQueue(redis),
                            WorkerRegistry(redis, 10), {}, tmp_path / "logs",
                            Environments(tmp_path / "environments"))
    thread = threading.Thread(target=supervisor.run)
    with caplog.at_level("INFO", logger="sparkgate.supervisor"):
        thread.start()
        time.sleep(4 * CHECK_INTERVAL_S)
        supervisor.stopping.set()
        thread.join(timeout=10)
    failures = [r for r in caplog.records if "supervisor check failed" in r.getMessage()]
    assert len(failures) == 1
    redis.close()
    engine.dispose()


def test_503_warnings_are_throttled(caplog):
    throttled = LogThrottle(logging.getLogger("sparkgate.gateway"), every_s=60, burst=1)
    with caplog.at_level("WARNING", logger="sparkgate.gateway"):
        for _ in range(50):
            throttled.log(logging.WARNING, "database", "database unavailable: %s",
                          ConnectionRefusedError("down"))
    assert len(caplog.records) == 1


def start_worker(postgres: PrivatePostgres, redis_server: PrivateRedis,
                 root: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    env["SPARKGATE_PROCESSES"] = "1"  # one gateway process, as the tests expect
    env.update({
        "SPARKGATE_DATA_DIR": str(root / "data"),
        "SPARKGATE_DATABASE_URL": postgres.url,
        "SPARKGATE_REDIS_URL": redis_server.url,
        "SPARKGATE_CONTEXT_SPARK_CONF": json.dumps(TEST_SPARK_CONF),
        "SPARKGATE_CONTEXT_MAX_JOBS": "2",
    })
    with (root / "worker.log").open("ab") as out:
        return subprocess.Popen(["sparkgate", "worker", "--context", "default"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_worker_rides_out_redis_and_database_outages_with_its_warm_session(infrastructure):
    """A worker used to exit (code 1: a failure of its context, and a cold start for its
    successor) when Redis went away under its queue pop; and a job it popped while the
    database was down was dropped, to wait for the reconciler. Now it waits for Redis, and
    gives such a job back to its queue. No reconciler runs here: the worker alone must cope."""
    postgres, redis_server, root = infrastructure
    upgrade(postgres.url)
    engine = make_engine(postgres.url)
    catalog = Catalog(engine, ContextDefaults(spark_conf=dict(TEST_SPARK_CONF), max_jobs=2))
    upload_artifact(catalog, "fault_record.py", (FUNCTIONS_DIR / "fault_record.py").read_bytes(),
                    replace=True)
    catalog.create_function(build_function(catalog, "fault_record", "fault_record.py",
                                           "record_run", "default", [], inspect=True))
    store = Store(engine)
    redis = Redis.from_url(redis_server.url)
    queue = JobQueue(redis)
    registry = WorkerRegistry(redis, 10)
    runs_file = root / "runs.txt"
    runs_file.touch()
    worker = start_worker(postgres, redis_server, root)

    def arguments(token: str, sleep_ms: int = 0) -> dict:
        return {"path": str(runs_file), "token": token, "sleep_ms": sleep_ms}

    def status(job_id: str) -> str:
        return store.get_job(job_id).status.value

    try:
        wait_until(lambda: _live(registry), START_TIMEOUT_S, "the worker is ready", 0.25)
        pid = worker.pid
        # Redis goes away while a job runs, and comes back empty.
        during = submit(catalog, store, queue,
                        SubmitRequest("fault_record", arguments("redis", 2000))).id
        wait_until(lambda: status(during) == "started", 30, "the job starts")
        redis_server.kill()
        time.sleep(2)
        redis_server.start()
        wait_until(lambda: status(during) == "finished", 30, "the job finishes")
        assert worker.poll() is None, (root / "worker.log").read_text()[-3000:]
        wait_until(lambda: _live(registry), 10, "the worker's record is back")
        after = submit(catalog, store, queue, SubmitRequest("fault_record", arguments("after")))
        wait_until(lambda: status(after.id) == "finished", 30, "the next job runs")

        # The database goes away while a job waits in the queue.
        waiting = store.create_job(NewJob(  # recorded, not queued yet
            function="fault_record", context="default", arguments=arguments("db"),
            file_path="fault_record.py", class_name="record_run",
            artifact_sha1=catalog.get_artifact("fault_record.py").sha1)).id
        postgres.stop("fast")
        queue.enqueue(waiting, "default")  # popped while the database is down
        time.sleep(3)
        postgres.start()
        wait_until(lambda: _status_or_none(store, waiting) == "finished", 30,
                   "the job popped during the outage runs once the database is back")
        assert worker.poll() is None and worker.pid == pid
        runs = Counter(line.split()[1] for line in runs_file.read_text().splitlines())
        assert runs == {"redis": 1, "after": 1, "db": 1}
    finally:
        worker.terminate()
        try:
            code = worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            code = worker.wait(timeout=30)
        redis.close()
        engine.dispose()
    assert code == 0, (root / "worker.log").read_text()[-3000:]


def _live(registry: WorkerRegistry) -> bool:
    try:
        return bool(registry.live())
    except RedisError:
        return False


def _status_or_none(store: Store, job_id: str) -> str | None:
    try:
        return store.get_job(job_id).status.value
    except OperationalError:
        return None
