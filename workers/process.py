"""The worker process: one warm SparkSession for one context, up to ``maxJobs`` jobs at once in
threads that share it. It never forks per job (the session would be lost with the child).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import rq
from redis import Redis

from jobs.cancellation import control_channel
from jobs.catalog import Catalog, Context
from jobs.db import make_engine, now_ms
from jobs.events import CHANNEL, encode, logs_event
from jobs.logs import LogLine
from jobs.queue import JobQueue, queue_name
from jobs.settings import Settings
from jobs.store import Store
from jobs.worker_registry import WorkerRegistry
from workers.artifacts import FunctionLoader
from workers.execution import JobRunner
from workers.joblogs import JobLogCapture
from workers.session import build_session, check_java, spark_conf_for, write_pools_file

log = logging.getLogger("sparkgate.worker")

POP_TIMEOUT_S = 1


def new_worker_id(context: str) -> str:
    return f"{context}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, settings: Settings, redis_url: str, context_name: str,
                 worker_id: str | None = None, max_jobs_total: int | None = None) -> None:
        """``max_jobs_total``: stop after that many jobs (1 for an exclusive context)."""
        self.settings = settings
        self.redis = Redis.from_url(redis_url)
        engine = make_engine(settings.resolved_database_url)
        self.store = Store(engine)
        self.catalog = Catalog(engine, settings.context)
        self.queue = JobQueue(self.redis)
        self.context: Context = self.catalog.get_context(context_name)
        self.id = worker_id or new_worker_id(context_name)
        self.max_jobs_total = max_jobs_total
        self.registry = WorkerRegistry(self.redis, settings.worker_ttl_s)
        self.started_ms = now_ms()
        self.stopping = threading.Event()
        self.running: dict[str, int] = {}
        self.jobs_done = 0
        self._lock = threading.Lock()

    # -- life --------------------------------------------------------------------------------

    def run(self) -> None:
        check_java()
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        log.info("worker %s: starting Spark for context %s", self.id, self.context.name)
        pools = write_pools_file(
            self.settings.data_dir / "workers" / f"{self.id}-pools.xml", self.context.max_jobs
        )
        spark = build_session(self.context, pools)
        capture = JobLogCapture(self._ship_logs)
        capture.install()
        runner = JobRunner(
            store=self.store, queue=self.queue, redis=self.redis,
            loader=FunctionLoader(self.catalog, self.settings.data_dir / "artifact-cache"),
            spark=spark, worker_id=self.id, capture=capture,
        )
        rq_worker = rq.Worker([queue_name(self.context.name)], name=self.id,
                              connection=self.redis)
        rq_worker.register_birth()
        heart = threading.Thread(target=self._heartbeat, args=(rq_worker,), daemon=True)
        self._beat(rq_worker)
        heart.start()
        threading.Thread(target=self._obey, args=(spark,), daemon=True).start()
        log.info("worker %s: ready, %d slot(s)", self.id, self.context.max_jobs)
        try:
            self._loop(runner)
        finally:
            self.stopping.set()
            capture.close()
            capture.uninstall()
            self.registry.remove(self.id)
            rq_worker.register_death()
            spark.stop()
            pools.unlink(missing_ok=True)
            log.info("worker %s: stopped after %d job(s)", self.id, self.jobs_done)

    def _loop(self, runner: JobRunner) -> None:
        slots: queue.Queue[int] = queue.Queue()
        for slot in range(max(1, self.context.max_jobs)):
            slots.put(slot)
        taken = 0
        with ThreadPoolExecutor(max_workers=slots.qsize(), thread_name_prefix="job") as pool:
            while not self.stopping.is_set() and not self._quota_reached(taken):
                try:
                    slot = slots.get(timeout=POP_TIMEOUT_S)
                except queue.Empty:
                    continue
                job_id = self.queue.pop(self.context.name, POP_TIMEOUT_S)
                if job_id is None:
                    slots.put(slot)
                    continue
                taken += 1
                with self._lock:
                    self.running[job_id] = slot
                pool.submit(self._run_one, runner, job_id, slot, slots)
            # Leaving the `with` waits for the jobs in flight: a stop drains, never abandons.

    def _quota_reached(self, taken: int) -> bool:
        return self.max_jobs_total is not None and taken >= self.max_jobs_total

    def _run_one(self, runner: JobRunner, job_id: str, slot: int,
                 slots: queue.Queue[int]) -> None:
        try:
            runner.run(job_id, slot)
        except Exception:
            log.exception("worker %s: job %s could not be recorded", self.id, job_id)
        finally:
            with self._lock:
                self.running.pop(job_id, None)
                self.jobs_done += 1
            slots.put(slot)

    # -- presence ----------------------------------------------------------------------------

    def _heartbeat(self, rq_worker: rq.Worker) -> None:
        while not self.stopping.wait(self.settings.worker_heartbeat_s):
            try:
                self._beat(rq_worker)
            except Exception:
                log.exception("worker %s: heartbeat failed", self.id)

    def _beat(self, rq_worker: rq.Worker) -> None:
        self.registry.beat(self.record())
        rq_worker.heartbeat(timeout=int(self.settings.worker_ttl_s) + 1)

    def record(self) -> dict[str, Any]:
        with self._lock:
            running = sorted(self.running)
            done = self.jobs_done
        return {
            "id": self.id,
            "context": self.context.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "startedAt": self.started_ms,
            "heartbeatAt": now_ms(),
            "maxJobs": self.context.max_jobs,
            "workerMode": self.context.worker_mode,
            "sparkConf": spark_conf_for(self.context),
            "runningJobs": running,
            "jobsDone": done,
        }

    def _obey(self, spark: Any) -> None:
        """Carry out control messages (cancel) sent to this worker's own channel."""
        while not self.stopping.is_set():
            try:
                with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(control_channel(self.id))
                    while not self.stopping.is_set():
                        message = pubsub.get_message(timeout=1.0)
                        if message and message["type"] == "message":
                            self._on_control(spark, json.loads(message["data"]))
            except Exception:
                log.exception("worker %s: control channel failed; resubscribing", self.id)
                self.stopping.wait(1.0)

    def _on_control(self, spark: Any, message: dict[str, Any]) -> None:
        job_id = message.get("cancel")
        with self._lock:
            mine = job_id in self.running
        if mine:
            log.info("worker %s: cancelling job %s", self.id, job_id)
            spark.sparkContext.cancelJobGroup(job_id)

    def _ship_logs(self, job_id: str, lines: list[LogLine]) -> None:
        self.store.append_logs(job_id, lines)
        self.redis.publish(CHANNEL, encode(logs_event(job_id, lines)))

