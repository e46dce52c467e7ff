"""The worker process: one context's engine (a warm SparkSession, or plain Python), up to
``maxJobs`` jobs at once in threads that share it. It never forks per job (the session would be
lost with the child).

A worker ends by draining (it takes no new job and lets its running ones finish, failing those
still running after ``worker_stop_grace_s``) when it is stopped (SIGTERM, the workers API),
idle for the context's ``downtime``, done with its one job (exclusive contexts), due for
recycling, or replaced because a job ignored its cancel. It exits 0 in all these cases; any
other exit is a failure, which the supervisor counts against the context.

A worker stops at once (running jobs fail, the JVM ends, its scratch folder goes) on a second
SIGTERM or SIGINT, and when the supervisor that started it is gone, however that ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import rq
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from sparkgate import models
from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.contexts import Context
from sparkgate.jobs.db import make_engine, now_ms
from sparkgate.jobs.errors import IllegalTransition
from sparkgate.jobs.events import lifecycle_event, logs_event, progress_event
from sparkgate.jobs.logs.capture import JobLogCapture
from sparkgate.jobs.logs.lines import LogLine
from sparkgate.jobs.models import ModelStore
from sparkgate.jobs.outage import Outage
from sparkgate.jobs.publishing import control_channel, publish
from sparkgate.jobs.queue import JobQueue, queue_name
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Store
from sparkgate.jobs.timeouts import abandoned_message
from sparkgate.jobs.worker_registry import WorkerRecord, WorkerRegistry
from sparkgate.workers.artifacts import FunctionLoader
from sparkgate.workers.engines import starter
from sparkgate.workers.execution import JobRunner
from sparkgate.workers.scratch import remove_scratch, scratch_dir, use_scratch
from sparkgate.workers.watchdog import Interruption, Watchdog

log = logging.getLogger("sparkgate.worker")

POP_TIMEOUT_S = 1
# While Redis or the database is unreachable: how long a slot waits before it tries again.
OUTAGE_PAUSE_S = 1.0
# How often a supervised worker looks for its supervisor: it acts within a second of its end.
PARENT_CHECK_S = 0.5
# Stopping at once: how long the running jobs' ends may take to be recorded (the database may
# be the thing that hangs), and how long the JVM gets to run its shutdown hooks.
STOP_NOW_RECORD_S = 3.0
CHILDREN_STOP_S = 3.0
# A stop signal this soon after the first is the same stop, sent twice (e.g. by systemd to the
# whole service, then by the supervisor): only a later one means "stop at once".
REPEATED_SIGNAL_S = 1.0


def _process_age_s() -> float:
    """How long ago this process started. From the kernel's own count on Linux: psutil's
    create_time adds the boot time, which Linux gives in whole seconds, so an age from it is
    up to a second too long (a python worker ready in 0.5 s looked ready in 1.4 s)."""
    try:
        with open("/proc/self/stat") as stat:
            # Fields after the command name (which may hold spaces) start at field 3 (state);
            # field 22 is the start time, in clock ticks since boot.
            start_ticks = int(stat.read().rpartition(")")[2].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, ValueError):
        return time.time() - psutil.Process().create_time()


def new_worker_id(context: str) -> str:
    return f"{context}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, settings: Settings, redis_url: str, context_name: str,
                 worker_id: str | None = None, max_jobs_total: int | None = None,
                 supervisor_pid: int | None = None, environment: str | None = None) -> None:
        """``max_jobs_total``: stop after that many jobs (1 for an exclusive context).
        ``supervisor_pid``: stop at once when that process (the supervisor that started this
        one) is gone, so a killed ``serve`` leaves no worker behind. Its pid is given, not
        read from getppid() here: a parent killed while this process started would go
        unnoticed. ``environment``: the one this process runs in (jobs/environments.py): it
        takes the jobs queued for it, and no others."""
        self.settings = settings
        self.environment = environment
        self.redis = Redis.from_url(redis_url)
        engine = make_engine(settings.resolved_database_url)
        self.store = Store(engine)
        self.catalog = Catalog(engine, settings.context)
        self.queue = JobQueue(self.redis)
        self.context: Context = self.catalog.get_context(context_name)
        self.id = worker_id or new_worker_id(context_name)
        self.max_jobs_total = max_jobs_total
        self.supervisor_pid = supervisor_pid
        self.scratch = scratch_dir(settings.data_dir, os.getpid())
        self.registry = WorkerRegistry(self.redis, settings.worker_ttl_s)
        self.started_ms = now_ms()
        self.engine_conf: dict[str, str] = {}  # the started engine's, for the workers API
        self.running: dict[str, int] = {}
        self.abandoned: set[str] = set()
        self.jobs_done = 0
        self.drain_reason: str | None = None
        self.drain_grace_s: float | None = None
        self.signalled_at: float | None = None
        self.draining = threading.Event()
        self._stopping_now = threading.Lock()
        self.stopped = threading.Event()
        self._lock = threading.Condition()
        # One record write at a time: one read before a drain must not land after the drain's.
        self._announcing = threading.Lock()
        self._redis_outage = _unreachable(f"worker {self.id}: Redis")
        self._db_outage = _unreachable(f"worker {self.id}: the database")

    def drain(self, reason: str, bounded: bool = False, successor: bool = False) -> None:
        """Take no new job; the main loop lets the running ones finish, then the worker exits.

        ``bounded`` (a stop, a replacement): jobs still running after ``worker_stop_grace_s``
        are failed. Otherwise (done, idle, recycled) running jobs take the time they need.
        ``successor`` (a replacement, a recycling): a successor is asked for now, so the next
        job of a shared context finds it warm.
        """
        with self._lock:
            first = self.drain_reason is None
            if first:
                self.drain_reason = reason
                log.info("worker %s: draining: %s", self.id, reason)
            if bounded:
                self.drain_grace_s = self.settings.worker_stop_grace_s
        self.draining.set()
        if first and successor and self.context.worker_mode == "shared":
            self._request_successor()

    def _request_successor(self) -> None:
        # The record says draining first: a supervisor that sees the request must not take
        # this worker for a live one of its context.
        try:
            self._announce()
            self.registry.request_successor(self.context.name, socket.gethostname(),
                                            os.getpid(), self.environment)
        except RedisError as exc:  # the next queued job starts a worker all the same
            self._redis_outage.failed(exc)

    # -- life --------------------------------------------------------------------------------

    def run(self) -> None:
        if self.supervisor_pid is not None:  # first: Spark's start can take a minute
            threading.Thread(target=self._watch_supervisor, name="supervisor-watch",
                             daemon=True).start()
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        use_scratch(self.scratch)
        began = time.monotonic()
        engine = starter(self.context.engine)(self.context, self.scratch, self.settings)
        self.engine_conf = engine.conf
        capture = JobLogCapture(self._ship_logs)
        capture.install()
        # Where a function's sparkgate.models saves and loads, and whose job a save is.
        models.use(ModelStore(self.store.engine, self.settings.max_model_bytes),
                   capture.current_job)
        watchdog = Watchdog(engine.cancel, self._on_overdue, self.settings.cancel_grace_s)
        progress = engine.progress(self._on_progress)
        runner = JobRunner(
            store=self.store, queue=self.queue, redis=self.redis,
            loader=FunctionLoader(self.catalog, self.settings.data_dir / "artifact-cache"),
            engine=engine, worker_id=self.id, capture=capture, watchdog=watchdog,
            progress=progress, max_result_bytes=self.settings.max_result_bytes,
            default_perform_timeout_ms=(None if self.context.perform_timeout_s is None
                                        else self.context.perform_timeout_s * 1000),
        )
        rq_worker = rq.Worker([queue_name(self.context.name, self.environment)], name=self.id,
                              connection=self.redis)
        rq_worker.register_birth()
        self._beat(rq_worker)
        threading.Thread(target=self._heartbeat, args=(rq_worker,), daemon=True).start()
        threading.Thread(target=self._obey, args=(watchdog,), daemon=True).start()
        log.info("worker %s: ready, %d slot(s), engine %s started in %.3fs, %.3fs after the "
                 "process started", self.id, self.context.max_jobs, self.context.engine,
                 time.monotonic() - began, _process_age_s())
        try:
            self._loop(runner)
            self._wait_for_running_jobs()
        finally:
            self.draining.set()
            self.stopped.set()
            watchdog.close()
            progress.close()
            capture.close()
            with contextlib.suppress(RedisError):  # Redis down: the records expire anyway
                self.registry.remove(self.id)
                rq_worker.register_death()
            log.info("worker %s: stopped after %d job(s): %s", self.id, self.jobs_done,
                     self.drain_reason)
        if self.abandoned:
            # Their threads never return: don't wait for them (nor for the engine, e.g. Spark,
            # which may be inside one).
            self._exit_now()
        engine.stop()
        end_children()
        remove_scratch(self.scratch)

    def _loop(self, runner: JobRunner) -> None:
        slots: queue.Queue[int] = queue.Queue()
        for slot in range(max(1, self.context.max_jobs)):
            slots.put(slot)
        pool = ThreadPoolExecutor(max_workers=slots.qsize(), thread_name_prefix="job")
        idle_since = time.monotonic()
        taken = 0
        while not self.draining.is_set():
            if self.max_jobs_total is not None and taken >= self.max_jobs_total:
                self.drain(f"done with its {taken} job(s)")
                break
            if self._idle_too_long(idle_since):
                self.drain(f"idle for its context's downtime of {self.context.downtime_s}s")
                break
            try:
                free = [slots.get(timeout=POP_TIMEOUT_S)]
            except queue.Empty:
                continue
            free += _more_slots(slots, self._room(taken) - 1)
            try:
                job_ids = self._take(len(free))
            except RedisError as exc:
                # Redis is down or restarting: keep the warm session and wait for it. (What
                # it may lose meanwhile, the reconciler restores from the database.)
                self._redis_outage.failed(exc)
                _put_all(slots, free)
                self.draining.wait(OUTAGE_PAUSE_S)
                continue
            self._redis_outage.ok()
            self._start(pool, runner, job_ids, free, slots)
            taken += len(job_ids)
            if job_ids or self.running:
                idle_since = time.monotonic()
        pool.shutdown(wait=False)

    def _start(self, pool: ThreadPoolExecutor, runner: JobRunner, job_ids: list[str],
               free: list[int], slots: queue.Queue[int]) -> None:
        """Run each job in a slot of ``free``; the slots left over are free again."""
        _put_all(slots, free[len(job_ids):])
        with self._lock:
            for job_id, slot in zip(job_ids, free, strict=False):
                self.running[job_id] = slot
        for job_id, slot in zip(job_ids, free, strict=False):
            pool.submit(self._run_one, runner, job_id, slot, slots)

    def _room(self, taken: int) -> int:
        """How many more jobs this worker may take (its max_jobs_total, if any)."""
        if self.max_jobs_total is None:
            return self.context.max_jobs
        return self.max_jobs_total - taken

    def _take(self, count: int) -> list[str]:
        """Up to ``count`` queued job ids, in one round trip, waiting up to POP_TIMEOUT_S for
        the first: a burst of jobs costs one pop per batch, not one per job."""
        if self.draining.is_set():
            return []
        job_ids = self.queue.pop_many(self.context.name, POP_TIMEOUT_S, count,
                                      self.environment)
        if job_ids and self.draining.is_set():
            # Drain began while we waited on the queue: the jobs are for our successor, in
            # their order, at the head of the queue.
            for job_id in reversed(job_ids):
                self.queue.give_back(job_id, self.context.name, self.environment)
            return []
        return job_ids

    def _idle_too_long(self, idle_since: float) -> bool:
        downtime = self.context.downtime_s
        return (downtime is not None and not self.running
                and time.monotonic() - idle_since >= downtime)

    def _run_one(self, runner: JobRunner, job_id: str, slot: int,
                 slots: queue.Queue[int]) -> None:
        parked = False
        try:
            runner.run(job_id, slot)
        except DBAPIError as exc:
            # The database is unreachable (the end of a job that ran is retried for a minute
            # before it comes to this). The job goes back to the head of its queue for a later
            # try: a claim is conditional, so a job that was claimed after all is skipped then.
            self._db_outage.failed(exc)
            self._give_back(job_id)
            parked = True
        except Exception:
            log.exception("worker %s: job %s could not be recorded", self.id, job_id)
        else:
            self._db_outage.ok()
        finally:
            with self._lock:
                self.running.pop(job_id, None)
                if not parked:
                    self.jobs_done += 1
                first = self.jobs_done == 1 and not parked
                self._lock.notify_all()
            if parked:  # this slot waits before it takes the next job: no busy loop
                self.draining.wait(OUTAGE_PAUSE_S)
            # Before the slot is free again: a worker due for recycling takes no next job.
            self._maybe_recycle()
            slots.put(slot)
        if first:
            # A worker that got a job done is proof the context works: failures in a row end.
            self.catalog.record_success(self.context.name)

    def _give_back(self, job_id: str) -> None:
        try:
            self.queue.give_back(job_id, self.context.name, self.environment)
        except RedisError as exc:  # the reconciler re-queues it from the database
            log.warning("worker %s: job %s could not be given back to its queue: %s", self.id,
                        job_id, exc)

    def _maybe_recycle(self) -> None:
        limit_jobs = self.settings.worker_max_jobs
        if limit_jobs and self.jobs_done >= limit_jobs:
            self.drain(f"recycled after {self.jobs_done} jobs (worker_max_jobs)", successor=True)
            return
        limit_mb = self.settings.worker_max_rss_mb
        if limit_mb and (rss_mb := resident_mb()) > limit_mb:
            self.drain(f"recycled at {rss_mb} MB resident (worker_max_rss_mb {limit_mb})",
                       successor=True)

    def _wait_for_running_jobs(self) -> None:
        """Let running jobs finish; fail those still running after a bounded drain's grace."""
        started = time.monotonic()
        with self._lock:
            while set(self.running) - self.abandoned and (
                    self.drain_grace_s is None
                    or time.monotonic() - started < self.drain_grace_s):
                self._lock.wait(timeout=0.2)
            stragglers = set(self.running) - self.abandoned
        for job_id in stragglers:
            self._end_abandoned(job_id, f"its worker {self.id} stopped before the job ended "
                                        f"({self.drain_reason})")

    # -- stopping at once --------------------------------------------------------------------

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
            self.drain(f"stopped ({name})", bounded=True)
            return
        if time.monotonic() - self.signalled_at < REPEATED_SIGNAL_S:
            return
        # Not in the handler: it interrupts the main thread, which may hold our locks.
        threading.Thread(target=self.stop_now, args=(f"stopped at once (a second {name})",),
                         daemon=True).start()

    def _watch_supervisor(self) -> None:
        while os.getppid() == self.supervisor_pid:
            time.sleep(PARENT_CHECK_S)
        self.stop_now(f"its supervisor (pid {self.supervisor_pid}) is gone")

    def stop_now(self, reason: str) -> None:
        """Fail the running jobs, end the JVM and anything else this process started, remove
        the scratch folder and exit, all within seconds: nothing of ours outlives this."""
        if not self._stopping_now.acquire(blocking=False):
            return  # already under way
        log.warning("worker %s: %s: stopping now", self.id, reason)
        # First of all, take no new job: one claimed from here on would be left started when
        # this process ends, and failed later as lost (the fault test saw 65 of them).
        self.drain(reason)
        recording = threading.Thread(target=self._fail_running, args=(reason,), daemon=True)
        recording.start()
        recording.join(STOP_NOW_RECORD_S)
        self._exit_now()

    def _fail_running(self, reason: str) -> None:
        with self._lock:
            running = set(self.running) - self.abandoned
        for job_id in running:
            self._end_abandoned(job_id, f"its worker {self.id} stopped before the job ended "
                                        f"({reason})")

    def _exit_now(self) -> None:
        end_children()
        remove_scratch(self.scratch)
        logging.shutdown()
        os._exit(0)

    # -- jobs that would not stop ------------------------------------------------------------

    def _on_overdue(self, job_id: str, why: Interruption) -> None:
        """A cancelled or timed-out job still runs after its grace: end it in the database now,
        and replace this worker (the only way to stop a thread is to end its process)."""
        job = self.store.get_job(job_id)
        if why is Interruption.TIMEOUT:
            reason = abandoned_message(job.perform_timeout_ms)
        else:
            reason = (f"cancelled; the function ignored Spark's cancel for "
                      f"{self.settings.cancel_grace_s}s, so its worker was replaced")
        self._end_abandoned(job_id, reason)
        self.drain(f"replaced: job {job_id} did not stop after its {why.value}", bounded=True,
                   successor=True)

    def _end_abandoned(self, job_id: str, reason: str) -> None:
        with self._lock:
            self.abandoned.add(job_id)
        end = now_ms()
        for target, sources in ((JobStatus.FAILED, {JobStatus.STARTED}),
                                (JobStatus.CANCELLED, {JobStatus.CANCELLING})):
            try:
                job = self.store.transition(job_id, target, only_from=sources, error=reason,
                                            end_time=end)
            except IllegalTransition:
                continue
            self._publish(lifecycle_event(job))
            log.warning("worker %s: job %s %s: %s", self.id, job_id, target.value, reason)
            return

    # -- presence and control ----------------------------------------------------------------

    def _heartbeat(self, rq_worker: rq.Worker) -> None:
        # Beats on while draining: jobs still running must not look like a lost worker's.
        while not self.stopped.wait(self.settings.worker_heartbeat_s):
            try:
                self._beat(rq_worker)
            except RedisError as exc:
                self._redis_outage.failed(exc)
            except Exception:
                log.exception("worker %s: heartbeat failed", self.id)

    def _beat(self, rq_worker: rq.Worker) -> None:
        record = self._announce()
        # What `rq info` shows: this worker as busy or idle.
        rq_worker.set_state("busy" if record.running_jobs else "idle")
        rq_worker.heartbeat(timeout=int(self.settings.worker_ttl_s) + 1)

    def _announce(self) -> WorkerRecord:
        with self._announcing:
            record = self.record()
            self.registry.beat(record.to_json())
        return record

    def record(self) -> WorkerRecord:
        # The time is taken before the list is read: the reconciler relies on every job
        # claimed before heartbeatAt being listed (jobs/reconciler.py, _forgotten).
        beat = now_ms()
        with self._lock:
            running = sorted(self.running)
            done = self.jobs_done
        return WorkerRecord(
            id=self.id, context=self.context.name, host=socket.gethostname(), pid=os.getpid(),
            started_at=self.started_ms, heartbeat_at=beat, max_jobs=self.context.max_jobs,
            worker_mode=self.context.worker_mode, spark_conf=self.engine_conf,
            running_jobs=running, jobs_done=done,
            state="draining" if self.draining.is_set() else "running",
            drain_reason=self.drain_reason, environment=self.environment,
        )

    def _obey(self, watchdog: Watchdog) -> None:
        """Carry out control messages sent to this worker's own channel."""
        while True:
            try:
                with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(control_channel(self.id))
                    while True:
                        message = pubsub.get_message(timeout=1.0)
                        if message and message["type"] == "message":
                            self._on_control(watchdog, json.loads(message["data"]))
            except RedisError as exc:
                self._redis_outage.failed(exc)
                time.sleep(OUTAGE_PAUSE_S)
            except Exception:
                log.exception("worker %s: control channel failed; resubscribing", self.id)
                time.sleep(1.0)

    def _on_control(self, watchdog: Watchdog, message: dict[str, Any]) -> None:
        if message.get("stop"):
            self.drain("stopped through the workers API", bounded=True)
        job_id = message.get("cancel")
        if job_id is not None and watchdog.cancel(job_id):
            log.info("worker %s: cancelling job %s", self.id, job_id)

    def _ship_logs(self, job_id: str, lines: list[LogLine]) -> None:
        self.store.append_logs(job_id, lines)
        # Stored: a failed publish must not raise, or the capture would store them again.
        self._publish(logs_event(job_id, lines))

    def _on_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self.store.set_progress(job_id, progress)
        self._publish(progress_event(job_id, progress))

    def _publish(self, event: dict[str, Any]) -> None:
        publish(self.redis, event, on_error=self._redis_outage.failed)


def _more_slots(slots: queue.Queue[int], up_to: int) -> list[int]:
    """Up to ``up_to`` more free slots, without waiting."""
    more: list[int] = []
    while len(more) < up_to:
        try:
            more.append(slots.get_nowait())
        except queue.Empty:
            break
    return more


def _put_all(slots: queue.Queue[int], free: list[int]) -> None:
    for slot in free:
        slots.put(slot)


def _unreachable(what: str) -> Outage:
    return Outage(log, f"{what} unreachable (%s); waiting for it", f"{what} reachable again")


def end_children() -> None:
    """SIGTERM every process this one started (the JVM, Spark's Python workers), SIGKILL those
    still running after ``CHILDREN_STOP_S``. SIGTERM lets the JVM run its shutdown hooks."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=CHILDREN_STOP_S)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=CHILDREN_STOP_S)


def resident_mb() -> int:
    """Resident memory of this process and its children (the JVM), in MB."""
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it ended meanwhile
            total += child.memory_info().rss
    return total // (1024 * 1024)
