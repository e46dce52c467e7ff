"""The reconciler: repairs, from the database (the source of truth), what Redis lost or never got.

Three repairs, each one conditional transition through the store (a race with a worker or a
cancel has one winner; losing it is normal) followed by the job's lifecycle event:

- **worker lost**: a ``started`` job whose worker's heartbeat record has expired (the worker was
  killed, crashed or hung) is failed; a ``cancelling`` one is cancelled;
- **lost from the queue**: a ``queued`` job missing from its context's RQ queue (Redis flushed or
  restarted without persistence, a gateway killed between its insert and its enqueue) is queued
  again; a duplicate is harmless, since a worker's claim is itself a conditional transition;
- **start timeout**: a ``queued`` job that waited longer than its ``startTimeout`` is failed and
  taken out of its queue.

Every ``sparkgate serve`` runs one, but only the holder of a lease in Redis acts; the others
stand by and take over within ``lease_s`` when the holder goes. Two acting at once (a holder
that stalled past its lease) would be wasteful, not wrong: every repair is conditional.

Absences in Redis are evidence only when Redis can be trusted to hold what it was given:

- A missing worker record means a lost worker only once Redis has been intact for a whole
  record TTL: a FLUSHALL or a restart without persistence erases every live worker's record
  until its next beat. Such a loss shows as a new value of an epoch key (which has no TTL); a
  pass that fails (Redis unreachable) also starts the wait over, as does a first look.
- A missing queue entry means a lost job only if the job is older than ``requeue_grace_s`` (its
  gateway may be between the insert and the enqueue) and was missing in the previous pass as
  well (a worker may have popped it and be about to claim it).

With the defaults (a pass every 2 s, worker records that live 10 s after a beat) a killed
worker's jobs fail within ~12 s, and a lost queued job is back in its queue within ~6 s. The
queued jobs are read in full each pass (a bounded page at a time, only the columns needed), so
with a very long backlog that read is spaced out to take at most ``QUEUE_CHECK_SHARE`` of the
time (100,000 queued jobs take about a second: checked every 5 s instead of every 2 s).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from redis import Redis

from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import IllegalTransition, NotFound
from sparkgate.jobs.events import lifecycle_event
from sparkgate.jobs.lease import Lease
from sparkgate.jobs.outage import Outage
from sparkgate.jobs.publishing import publish
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, JobBrief, Store
from sparkgate.jobs.timeouts import missed_start
from sparkgate.jobs.worker_registry import WorkerRecord, WorkerRegistry

log = logging.getLogger("sparkgate.reconciler")

LEASE_KEY = "sparkgate:reconciler:lease"
# Set once with no TTL: it changes only when Redis loses its data.
EPOCH_KEY = "sparkgate:redis-epoch"
INTERVAL_S = 2.0
REQUEUE_GRACE_S = 2.0
PAGE_SIZE = 1000
QUEUE_CHECK_SHARE = 0.2


def worker_lost_message(worker_id: str | None) -> str:
    return (f"worker lost: worker {worker_id or '(unknown)'} stopped sending heartbeats "
            "(killed, crashed or hung); the job may have run in part")


def forgotten_message(worker_id: str) -> str:
    return (f"worker lost track of the job: worker {worker_id} no longer runs it but could not "
            "record its end (its database writes failed); the job may have run in part")


def _forgotten(record: WorkerRecord, jobs: list[JobBrief]) -> list[JobBrief]:
    """Jobs a live worker had claimed before its last heartbeat but no longer lists.

    Safe: a worker lists a job from before its claim until after its final write, and takes
    the heartbeat's time before it reads its list (workers/process.py), both on its own clock.
    """
    running = set(record.running_jobs)
    return [job for job in jobs if job.id not in running
            and job.start_time is not None and job.start_time < record.heartbeat_at]


class Reconciler:
    def __init__(self, store: Store, catalog: Catalog, queue: JobQueue,
                 registry: WorkerRegistry, redis: Redis, interval_s: float = INTERVAL_S, *,
                 requeue_grace_s: float = REQUEUE_GRACE_S, lease_s: float | None = None,
                 settle_s: float | None = None, page_size: int = PAGE_SIZE,
                 lease_key: str = LEASE_KEY) -> None:
        """``lease_s``: how long a silent holder keeps the lease (default: 2.5 passes, >= 3 s);
        ``settle_s``: how long Redis must have been intact before a missing worker record
        counts (default: the registry's record TTL)."""
        self.store = store
        self.catalog = catalog
        self.queue = queue
        self.registry = registry
        self.redis = redis
        self.interval_s = interval_s
        self.requeue_grace_ms = int(requeue_grace_s * 1000)
        self.lease_ms = int(1000 * (max(3.0, 2.5 * interval_s) if lease_s is None else lease_s))
        self.settle_s = registry.ttl_ms / 1000 if settle_s is None else settle_s
        self.page_size = page_size
        self.lease_key = lease_key
        self.lease = Lease(redis, lease_key, self.lease_ms, "reconciler", log)
        self._epoch: bytes | str | None = None
        self._intact_since: float | None = None  # time.monotonic()
        self._suspects: set[str] = set()  # queued jobs missing from their queue last look
        self._queue_checked_at = -float("inf")  # time.monotonic()
        self._queue_check_cost_s = 0.0

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """A pass every ``interval_s`` until ``stop``; outages are logged and waited out."""
        outage = Outage(log, f"reconciler: a pass failed (%s); retrying every {self.interval_s}s",
                        "reconciler: passes succeed again")
        try:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    self.run_once()
                except Exception as exc:
                    outage.failed(exc)
                else:
                    outage.ok()
                stop.wait(max(0.0, self.interval_s - (time.monotonic() - began)))
        finally:
            self.release()

    def run_once(self) -> dict[str, int]:
        """One pass, if this reconciler holds the lease: what it repaired."""
        counts = {"lost_workers": 0, "requeued": 0, "start_timeouts": 0}
        try:
            if not self._hold_lease():
                self._suspects.clear()
                return counts
            self._check_epoch()
            if self._settled():
                counts["lost_workers"] = self._end_jobs_of_lost_workers()
            if self._queue_check_due():
                counts["start_timeouts"], counts["requeued"] = self._check_queued()
        except BaseException:
            # What Redis went through meanwhile is unknown: records must prove themselves again.
            self._intact_since = None
            raise
        if any(counts.values()):
            log.debug("reconciler pass: %s", counts)
        return counts

    def release(self) -> None:
        """Give the lease up (on stop), so another gateway's reconciler takes over at once."""
        self.lease.release()

    # -- the lease ---------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return self.lease.token

    @property
    def holding(self) -> bool:
        return self.lease.holding

    def _hold_lease(self) -> bool:
        return self.lease.hold()

    def _check_epoch(self) -> None:
        """Start the wait for worker records over if Redis lost its data since the last look."""
        epoch = self.redis.get(EPOCH_KEY)
        if epoch is None:
            self.redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
            epoch = self.redis.get(EPOCH_KEY)
        if epoch == self._epoch and self._intact_since is not None:
            return
        if self._epoch is not None and epoch != self._epoch:
            log.warning("reconciler: Redis lost its data (flushed, or restarted without "
                        "persistence); queued jobs go back in their queues, and workers get "
                        "%ss to beat again before their jobs count as lost", self.settle_s)
        self._epoch = epoch
        self._intact_since = time.monotonic()

    def _settled(self) -> bool:
        return (self._intact_since is not None
                and time.monotonic() - self._intact_since >= self.settle_s)

    def _queue_check_due(self) -> bool:
        gap_s = self._queue_check_cost_s / QUEUE_CHECK_SHARE
        return gap_s <= self.interval_s or time.monotonic() - self._queue_checked_at >= gap_s

    # -- the repairs -------------------------------------------------------------------------

    def _check_queued(self) -> tuple[int, int]:
        """Start timeouts failed, lost jobs queued again."""
        began = time.monotonic()
        now = now_ms()
        timed_out, waiting = self._fail_start_timeouts(self._scan((JobStatus.QUEUED,)), now)
        requeued = self._requeue_missing(waiting, now)
        self._queue_checked_at = began
        self._queue_check_cost_s = time.monotonic() - began
        return timed_out, requeued

    def _end_jobs_of_lost_workers(self) -> int:
        by_worker: dict[str | None, list[JobBrief]] = defaultdict(list)
        for job in self._scan((JobStatus.STARTED, JobStatus.CANCELLING)):
            by_worker[job.worker_id].append(job)
        ended = 0
        for worker_id, jobs in by_worker.items():
            record = self.registry.get(worker_id) if worker_id is not None else None
            if record is None:
                reason = worker_lost_message(worker_id)
                ended += sum(self._end_lost(job, reason) for job in jobs)
                continue
            for job in _forgotten(record, jobs):
                ended += self._end_lost(job, forgotten_message(record.id))
        return ended

    def _end_lost(self, job: JobBrief, reason: str) -> int:
        # A cancel may move it from started to cancelling meanwhile: try both ends.
        end = now_ms()
        for target, source in ((JobStatus.FAILED, JobStatus.STARTED),
                               (JobStatus.CANCELLED, JobStatus.CANCELLING)):
            if self._transition(job.id, target, source, reason, error=reason, end_time=end):
                return 1
        return 0

    def _fail_start_timeouts(self, queued: list[JobBrief],
                             now: int) -> tuple[int, list[JobBrief]]:
        """How many timed out, and the jobs still waiting in time."""
        failed = 0
        waiting = []
        for job in queued:
            reason = missed_start(job, now)
            if reason is None:
                waiting.append(job)
                continue
            if self._transition(job.id, JobStatus.FAILED, JobStatus.QUEUED, reason,
                                error=reason, end_time=now):
                self.queue.remove(job.id, job.context, job.environment)
                failed += 1
        return failed, waiting

    def _requeue_missing(self, waiting: list[JobBrief], now: int) -> int:
        settled = [j for j in waiting if now - j.create_time >= self.requeue_grace_ms]
        present = self.queue.queued_id_sets((j.context, j.environment) for j in settled)
        missing = [j for j in settled if j.id not in present[j.context, j.environment]]
        confirmed = [j for j in missing if j.id in self._suspects]
        self._suspects = {j.id for j in missing} - {j.id for j in confirmed}
        if not confirmed:
            return 0
        exists = {c: self.catalog.context_exists(c) for c in {j.context for j in confirmed}}
        requeued = 0
        for job in confirmed:
            if exists[job.context]:
                self.queue.enqueue(job.id, job.context, environment=job.environment)
                log.info("job %s: queued again in context %s: it was missing from its queue "
                         "(Redis lost it, or its gateway stopped before queueing it)",
                         job.id, job.context)
                requeued += 1
            else:
                reason = (f"lost from the queue: its context {job.context!r} no longer exists, "
                          "so it cannot be queued again")
                self._transition(job.id, JobStatus.FAILED, JobStatus.QUEUED, reason,
                                 error=reason, end_time=now_ms())
        return requeued

    # -- helpers -----------------------------------------------------------------------------

    def _scan(self, statuses: Iterable[JobStatus]) -> list[JobBrief]:
        """Every job in ``statuses``, oldest first, read a bounded page at a time."""
        statuses = tuple(statuses)
        found: list[JobBrief] = []
        after = None
        while True:
            page = self.store.oldest_in(statuses, self.page_size, after)
            found += page
            if len(page) < self.page_size:
                return found
            after = page[-1]

    def _transition(self, job_id: str, target: JobStatus, source: JobStatus, why: str,
                    **fields: Any) -> Job | None:
        """The job moved from ``source`` to ``target``, or None if something else moved it
        first (a worker's claim or finish, a cancel): their outcome stands."""
        try:
            job = self.store.transition(job_id, target, only_from={source}, **fields)
        except (IllegalTransition, NotFound):
            return None
        log.info("job %s: %s -> %s: %s", job_id, source.value, target.value, why)
        publish(self.redis, lifecycle_event(job))
        return job
