"""Keep the right worker processes running on this host, per context.

- shared contexts: one live worker while the context has queued jobs or is ``precreated``
  (``serve`` also warms the ``default`` context once at start); a worker that exits is replaced
  while it is needed, and one that is draining (recycled, replaced) is replaced at once.
- exclusive contexts: a fresh one-job worker per queued job, up to the context's ``maxJobs``.
- a worker that exits with an error counts as a failure of its context; ``maxConnFailures`` of
  them in a row break the context: its queued jobs fail at once, no worker is started for it,
  and updating the context repairs it.
- a worker whose context was updated or deleted is drained, so the next one uses the new
  settings.
- a worker that stops heart-beating for a record's TTL (``worker_ttl_s``) while its process
  still exists (SIGSTOP, a deadlock, a host swapping to death) is frozen: it is killed with its
  JVM (its whole process group), which counts as a failure of its context, and replaced. The
  reconciler fails its jobs as lost meanwhile.
- a worker that drains to be replaced (it abandoned a job that ignored its cancel, or it is
  recycled) asks for a successor, which starts at once, queued jobs or not: the next job
  finds a warm worker.
Workers on other hosts count: a context served by a live remote worker gets no local one.

All of this holds per lane, a (context, environment) pair: the jobs of an artifact with its own
requirements wait in their environment's queue of the context (jobs/queue.py) and are taken
by workers running in that environment (docs/environments.md), started with its interpreter
(the worker builds the environment first if this host has not: workers/environment_entry.py).
Only the base environment's workers are precreated or warmed at start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis

from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.contexts import Context, Health
from sparkgate.jobs.db import make_engine, now_ms
from sparkgate.jobs.environments import Environments
from sparkgate.jobs.errors import ConfigError, IllegalTransition
from sparkgate.jobs.events import lifecycle_event
from sparkgate.jobs.outage import Outage
from sparkgate.jobs.publishing import publish
from sparkgate.jobs.queue import JobQueue, Lane
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, Store
from sparkgate.jobs.submission import broken_message
from sparkgate.jobs.worker_registry import WorkerRecord, WorkerRegistry
from sparkgate.workers.class_archive import ArchiveBuilder
from sparkgate.workers.engines.spark import check_java
from sparkgate.workers.environment_entry import ENVIRONMENT_UNAVAILABLE
from sparkgate.workers.process import REPEATED_SIGNAL_S
from sparkgate.workers.scratch import sweep_scratch

log = logging.getLogger("sparkgate.supervisor")

CHECK_INTERVAL_S = 0.5
# On stop, beyond the workers' own grace (worker_stop_grace_s): their Spark's stop.
STOP_MARGIN_S = 15.0
# After stop_now(): how long workers get to record their jobs' ends and end their JVM.
STOP_NOW_S = 5.0
MAX_BACKOFF_S = 10.0


def worker_environment(settings: Settings, redis_url: str,
                       config_path: Path | None) -> dict[str, str]:
    """What a worker process needs to find the same database, Redis and settings as us.

    Explicit values win over the settings file in the worker, as they did here (an embedded
    Redis has a URL only this process knows).
    """
    env = {"SPARKGATE_DATABASE_URL": settings.resolved_database_url,
           "SPARKGATE_REDIS_URL": redis_url,
           "SPARKGATE_DATA_DIR": str(settings.data_dir.resolve())}
    if config_path is not None:
        env["SPARKGATE_CONFIG"] = str(config_path.resolve())
    return env


@dataclass
class _Process:
    context: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    context_version: int  # the context's updated_at when it was started
    environment: str | None = None
    spark: bool = False  # its context's engine is spark
    draining: bool = False  # sent SIGTERM by us
    replaced: bool = False  # draining by itself, it asked for a successor
    # The heartbeatAt of its record last seen (None: not announced yet, Spark still starting),
    # and when (time.monotonic()) that value was first seen.
    beat: int | None = None
    beat_seen_at: float = 0.0
    killed_because: str | None = None


@dataclass
class _View:
    """What one check sees: definitions, health, queue lengths, live workers."""

    contexts: dict[str, Context]
    health: dict[str, Health]
    queued: dict[Lane, int]
    live: list[WorkerRecord] = field(default_factory=list)

    def lanes(self, context: str) -> list[Lane]:
        """The context's base lane, and each of its environments' with queued jobs."""
        return [(context, None), *sorted((c, e) for c, e in self.queued
                                         if c == context and e is not None)]


class Supervisor:
    def __init__(self, catalog: Catalog, store: Store, queue: JobQueue,
                 registry: WorkerRegistry, worker_env: dict[str, str], log_dir: Path,
                 environments: Environments, warm: tuple[str, ...] = (),
                 stop_grace_s: float = 30.0 + STOP_MARGIN_S,
                 class_archive: ArchiveBuilder | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.queue = queue
        self.registry = registry
        self.worker_env = worker_env
        self.log_dir = log_dir
        self.processes: list[_Process] = []
        self.stopping = threading.Event()
        self.stop_grace_s = stop_grace_s
        self._now = threading.Event()
        self._warm: set[Lane] = {(context, None) for context in warm}
        self.environments = environments
        self._retry_at: dict[str, float] = {}
        # Environment lanes whose workers could not build their environment here, in a row.
        self._unbuildable: dict[Lane, int] = {}
        self._lane_retry_at: dict[Lane, float] = {}
        self._host = socket.gethostname()
        self._looked_at = -float("inf")  # time.monotonic() of the last look at heartbeats
        self.class_archive = class_archive

    @classmethod
    def for_settings(cls, settings: Settings, redis_url: str, config_path: Path | None,
                     warm: tuple[str, ...] = ()) -> Supervisor:
        redis = Redis.from_url(redis_url)
        engine = make_engine(settings.resolved_database_url, pool_size=2)
        log_dir = settings.data_dir / "logs"
        archives = settings.spark_class_archive_dir
        return cls(Catalog(engine, settings.context), Store(engine), JobQueue(redis),
                   WorkerRegistry(redis, settings.worker_ttl_s),
                   worker_environment(settings, redis_url, config_path),
                   log_dir, Environments.for_settings(settings), warm,
                   stop_grace_s=settings.worker_stop_grace_s + STOP_MARGIN_S,
                   class_archive=ArchiveBuilder(archives, log_dir) if archives else None)

    def run(self) -> None:
        """A check every ``CHECK_INTERVAL_S`` until stopped. While the database or Redis is
        unreachable checks fail; that is logged once (not twice a second), and the workers
        are left as they are until a check succeeds again."""
        outage = Outage(log, "supervisor check failed (%s); trying again every "
                        f"{CHECK_INTERVAL_S}s", "supervisor checks succeed again")
        while not self.stopping.is_set():
            try:
                self.check()
            except Exception as exc:
                outage.failed(exc)
            else:
                outage.ok()
            self.stopping.wait(CHECK_INTERVAL_S)

    def check(self) -> None:
        # Taken before the workers are read: a worker's record says it drains before it asks.
        self._take_successor_requests()
        view = self._look()
        if self.class_archive is not None:
            self._tend_class_archive(view)
        self._kill_frozen(view)
        self._reap(view)
        for worker in view.live:  # its environment was built: tries start over
            self._unbuildable.pop((worker.context, worker.environment), None)
        for name, context in view.contexts.items():
            health = view.health.get(name, Health())
            if health.broken:
                if any(view.queued.get(lane) for lane in view.lanes(name)):
                    self._fail_queued(name, health)
            else:
                for lane in self._lanes(name, view):
                    self._keep(context, lane, view)
        self._retire_outdated(view)

    def _lanes(self, context: str, view: _View) -> list[Lane]:
        """The context's lanes with queued jobs, and those a successor was asked for."""
        asked = [lane for lane in self._warm if lane[0] == context and lane[1] is not None]
        return list(dict.fromkeys([*view.lanes(context), *sorted(asked, key=str)]))

    def _keep(self, context: Context, lane: Lane, view: _View) -> None:
        if context.worker_mode == "exclusive":
            self._keep_exclusive(context, lane, view)
        else:
            self._keep_shared(context, lane, view)

    # -- looking -----------------------------------------------------------------------------

    def _look(self) -> _View:
        contexts = {c.name: c for c in self.catalog.list_contexts()}
        queued = self.queue.lanes_with_work()
        return _View(contexts, self.catalog.all_health(), queued, self.registry.live())

    def _local(self, lane: Lane) -> list[_Process]:
        return [p for p in self.processes if (p.context, p.environment) == lane]

    def _serving(self, lane: Lane, view: _View, with_draining: bool = False) -> int:
        """Workers that take this lane's jobs now or soon: live ones that are not draining
        (or all, ``with_draining``), anywhere, plus local ones with no record (still starting,
        or between a Redis flush and their next beat; a frozen one until it is killed)."""
        live = [w for w in view.live if (w.context, w.environment) == lane]
        running = sum(1 for w in live if with_draining or w.state != "draining")
        registered = {w.pid for w in live if w.host == self._host}
        starting = sum(1 for p in self._local(lane)
                       if p.popen.pid not in registered and not (p.draining or p.replaced))
        return running + starting

    # -- keeping workers ---------------------------------------------------------------------

    def _keep_shared(self, context: Context, lane: Lane, view: _View) -> None:
        if self._serving(lane, view) > 0:
            self._warm.discard(lane)  # warm already: a warm-up asked for is done
            return
        precreated = context.precreated and lane[1] is None
        wanted = precreated or lane in self._warm or view.queued.get(lane, 0) > 0
        if wanted and self._may_start(context.name, lane):
            self._warm.discard(lane)
            self._spawn(context, one_job=False, environment=lane[1])

    def _keep_exclusive(self, context: Context, lane: Lane, view: _View) -> None:
        # A one-job worker drains as soon as it has its job, yet it runs until the job ends:
        # it counts against maxJobs all along.
        queued = view.queued.get(lane, 0)
        busy = self._serving(lane, view, with_draining=True)
        missing = min(queued, context.max_jobs - busy)
        for _ in range(max(0, missing)):
            if not self._may_start(context.name, lane):
                break
            self._spawn(context, one_job=True, environment=lane[1])

    def _take_successor_requests(self) -> None:
        """Contexts whose draining worker asks for a successor are warmed. A local asker is
        marked replaced: it may already have removed its record while its process ends, and
        must not count as a worker still starting, which would make the request moot."""
        for request in self.registry.take_successor_requests():
            lane = (request["context"], request.get("environment"))
            self._warm.add(lane)
            for process in self._local(lane):
                if request["host"] == self._host and process.popen.pid == request["pid"]:
                    process.replaced = True

    def _may_start(self, context: str, lane: Lane) -> bool:
        now = time.monotonic()
        return now >= self._retry_at.get(context, 0.0) and now >= self._lane_retry_at.get(
            lane, 0.0)

    def _spawn(self, context: Context, one_job: bool, environment: str | None = None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        suffix = f"-{environment}" if environment else ""
        log_path = self.log_dir / f"worker-{context.name}{suffix}.log"
        # Workers killed meanwhile (frozen, crashed) left theirs.
        sweep_scratch(Path(self.worker_env["SPARKGATE_DATA_DIR"]))
        # -P: the current directory, which may hold a user's own jobs.py or workers/, is never
        # put on sys.path ahead of sparkgate.
        command = [self._python(environment), "-P", "-m", "sparkgate", "worker",
                   "--context", context.name, "--supervisor-pid", str(os.getpid())]
        if one_job:
            command.append("--one-job")
        if environment is not None:
            command += ["--environment", environment]
        with log_path.open("ab") as out:
            popen = subprocess.Popen(command, env={**os.environ, **self.worker_env},
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.info("started worker pid %d for context %s%s%s (log: %s)", popen.pid, context.name,
                 f" in environment {environment}" if environment else "",
                 " (one job)" if one_job else "", log_path)
        self.processes.append(_Process(context.name, popen, log_path, context.updated_at,
                                       environment, spark=context.engine == "spark"))

    def _tend_class_archive(self, view: _View) -> None:
        """Spark workers start faster once the machine has the class archive. Its build (at
        most one per supervisor, in the background) waits for one of our Spark workers to be
        up: started beside it, the first worker took twice as long to start. A Java that
        does not run is the worker's to report."""
        assert self.class_archive is not None
        self.class_archive.tend()
        if self.class_archive.asked:  # once asked, nothing more to look for
            return
        ours = {p.popen.pid for p in self.processes if p.spark}
        if any(w.host == self._host and w.pid in ours for w in view.live):
            with contextlib.suppress(ConfigError):
                self.class_archive.wanted(check_java)

    def _python(self, environment: str | None) -> str:
        """The environment's interpreter once it is built on this host; until then ours: the
        worker builds it, then runs on in it (workers/environment_entry.py)."""
        if environment is not None and self.environments.is_built(environment):
            return str(self.environments.python(environment))
        return sys.executable

    def _retire_outdated(self, view: _View) -> None:
        """Drain workers whose context changed or went away; successors get the new settings."""
        for process in self.processes:
            context = view.contexts.get(process.context)
            outdated = context is None or context.updated_at != process.context_version
            if outdated and not process.draining and process.popen.poll() is None:
                log.info("context %s changed: draining its worker pid %d", process.context,
                         process.popen.pid)
                process.draining = True
                process.popen.send_signal(signal.SIGTERM)

    # -- failures ----------------------------------------------------------------------------

    def _kill_frozen(self, view: _View) -> None:
        """Kill local workers whose heartbeat has not moved for a record's TTL. Such a process
        still exists, so it would count as serving its context for ever while its jobs are
        failed as lost and its queue grows. A worker whose record is missing only for a
        moment (Redis flushed) beats again long before that."""
        now = time.monotonic()
        ttl_s = self.registry.ttl_ms / 1000
        if now - self._looked_at > ttl_s / 2:
            # Checks failed or hung meanwhile (Redis down or stalled, this process starved):
            # what went unseen is no worker's fault, so each gets a whole TTL again.
            for process in self.processes:
                process.beat_seen_at = now
        self._looked_at = now
        beats = {w.pid: w.heartbeat_at for w in view.live if w.host == self._host}
        for process in self.processes:
            beat = beats.get(process.popen.pid)
            if beat is not None and beat != process.beat:
                process.beat, process.beat_seen_at = beat, now
            elif (process.beat is not None and process.killed_because is None
                  and now - process.beat_seen_at >= ttl_s):
                self._kill(process, f"it sent no heartbeat for {ttl_s:g}s (frozen or hung)")

    def _kill(self, process: _Process, why: str) -> None:
        if process.popen.poll() is not None:
            return
        log.warning("killing worker pid %d for context %s, with its JVM: %s", process.popen.pid,
                    process.context, why)
        process.killed_because = f"worker killed: {why}"
        # Its process group (its own session, see _spawn): the JVM too, which would otherwise
        # run on without its driver.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # reaped by a later check then
            process.popen.wait(timeout=5)

    def _reap(self, view: _View) -> None:
        for process in [p for p in self.processes if p.popen.poll() is not None]:
            self.processes.remove(process)
            self._forget(process, view)
            code = process.popen.returncode
            if code == 0 or self.stopping.is_set():
                continue
            context = view.contexts.get(process.context)
            if context is None:
                continue
            if code == ENVIRONMENT_UNAVAILABLE and process.environment is not None:
                self._count_unbuildable(context, process)
                continue
            reason = (process.killed_because
                      or f"worker exited with code {code}: {_last_line(process.log_path)}")
            self._count_failure(context, reason)

    def _forget(self, process: _Process, view: _View) -> None:
        """A dead worker's presence record goes now, not when its TTL runs out: it stops
        counting as serving its context, and the reconciler ends its jobs at once."""
        for record in [w for w in view.live
                       if w.host == self._host and w.pid == process.popen.pid]:
            self.registry.remove(record.id)
            view.live.remove(record)

    def _count_failure(self, context: Context, reason: str) -> None:
        health = self.catalog.record_failure(context.name, reason, context.max_conn_failures)
        log.warning("worker for context %s failed (%d in a row, limit %d): %s", context.name,
                    health.failures, context.max_conn_failures, reason)
        backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** (health.failures - 1))
        self._retry_at[context.name] = time.monotonic() + backoff
        if health.broken:
            log.error("context %s is broken after %d worker failures in a row", context.name,
                      health.failures)

    def _count_unbuildable(self, context: Context, process: _Process) -> None:
        """An environment this host cannot build fails its own jobs, after maxConnFailures
        tries in a row (a package index may be down for a while), and leaves the context and
        its other environments alone."""
        lane = (context.name, process.environment)
        tries = self._unbuildable.get(lane, 0) + 1
        why = _last_line(process.log_path)
        log.warning("environment %s of context %s cannot be built here (%d in a row, limit "
                    "%d): %s", process.environment, context.name, tries,
                    context.max_conn_failures, why)
        self._lane_retry_at[lane] = time.monotonic() + min(MAX_BACKOFF_S, 0.5 * 2 ** (tries - 1))
        if tries < context.max_conn_failures:
            self._unbuildable[lane] = tries
            return
        self._unbuildable.pop(lane, None)
        error = (f"environment {process.environment} could not be built on host {self._host} "
                 f"({tries} tries): {why}")
        self._fail_jobs(context.name, lambda job: job.environment == process.environment, error)

    def _fail_queued(self, context: str, health: Health) -> None:
        self._fail_jobs(context, lambda job: True, broken_message(context, health))

    def _fail_jobs(self, context: str, which: Callable[[Job], bool], error: str) -> None:
        for job in self.store.jobs_in([JobStatus.QUEUED], context=context):
            if not which(job):
                continue
            try:
                failed = self.store.transition(job.id, JobStatus.FAILED, end_time=now_ms(),
                                               error=error)
            except IllegalTransition:
                continue
            self.queue.remove(job.id, context, job.environment)
            publish(self.queue.redis, lifecycle_event(failed))

    # -- stopping ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask every worker to drain and stop (SIGTERM); after ``stop_now()``, to stop at once
        (a second SIGTERM: their running jobs fail). Kill those still running after the
        grace, with their JVM, and remove the scratch folders they could not."""
        self.stopping.set()
        for process in self._alive():
            if not process.draining:  # one already draining would take it for the second
                process.popen.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        self._wait_for_workers(self.stop_grace_s, interruptible=True)
        if self._now.is_set():
            # Sooner, a worker would take it for the first one repeated (workers/process.py).
            time.sleep(max(0.0, signalled + REPEATED_SIGNAL_S - time.monotonic()))
            for process in self._alive():
                process.popen.send_signal(signal.SIGTERM)
            self._wait_for_workers(STOP_NOW_S)
        for process in self._alive():
            log.warning("worker pid %d did not stop; killing it with its JVM", process.popen.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait()
        if self.class_archive is not None:
            self.class_archive.stop()
        sweep_scratch(Path(self.worker_env["SPARKGATE_DATA_DIR"]))

    def stop_now(self) -> None:
        """Cut a ``stop()`` under way short: its workers stop at once. Any thread may call it."""
        self._now.set()

    def running_jobs(self) -> int:
        """How many jobs this supervisor's workers are running. The database says it, not
        their records, which tell it only at their next heartbeat."""
        pids = {process.popen.pid for process in self._alive()}
        ours = {w.id for w in self.registry.live()
                if w.host == self._host and w.pid in pids}
        running = self.store.jobs_in([JobStatus.STARTED, JobStatus.CANCELLING])
        return sum(1 for job in running if job.worker_id in ours)

    def _alive(self) -> list[_Process]:
        return [process for process in self.processes if process.popen.poll() is None]

    def _wait_for_workers(self, timeout_s: float, interruptible: bool = False) -> None:
        """Until every worker has exited or ``timeout_s`` has passed (or, ``interruptible``,
        ``stop_now()`` is called)."""
        deadline = time.monotonic() + timeout_s
        while self._alive() and time.monotonic() < deadline:
            if interruptible and self._now.is_set():
                return
            time.sleep(0.1)


def _last_line(path: Path) -> str:
    """The last non-empty line of a worker's log: usually the error that ended it."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
            lines = deque((line.strip() for line in fh if line.strip()), maxlen=1)
    except OSError:
        return "no log"
    return lines[0].decode("utf-8", "replace")[:500] if lines else "no output"
