"""The job queue: RQ on Redis, one RQ queue per context and environment (``rq info`` lists
them): ``sparkgate:<context>`` for the base environment, ``sparkgate-env:<id>:<context>`` for an
artifact's own (jobs/environments.py; the id is fixed-length hex, so the name parses back, and
no context name can make one queue's name another's).

The database is the source of truth; an RQ job only carries the sparkgate job id (the RQ job id
is the same uuid). Workers pop with RQ's own primitives (``Queue.lpop``/``Job.fetch``) instead of
RQ's stock worker, whose per-job bookkeeping costs milliseconds and forks per job.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.job import Job as RQJob

QUEUE_PREFIX = "sparkgate:"
ENV_QUEUE_PREFIX = "sparkgate-env:"
# The callable RQ records for each job: sparkgate workers run jobs through the database row,
# so this is informational (what `rq info -v` and rq-dashboard show).
JOB_FUNC = "sparkgate.workers.execution.JobRunner.run"


# What a queue serves: a context, and the environment its workers run in (None: the base one).
Lane = tuple[str, str | None]


def queue_name(context: str, environment: str | None = None) -> str:
    if environment is None:
        return QUEUE_PREFIX + context
    return f"{ENV_QUEUE_PREFIX}{environment}:{context}"


def lane_of(name: str) -> Lane | None:
    """The (context, environment) a queue name serves; None for another app's queue."""
    if name.startswith(QUEUE_PREFIX):
        return name[len(QUEUE_PREFIX):], None
    if name.startswith(ENV_QUEUE_PREFIX):
        environment, _, context = name[len(ENV_QUEUE_PREFIX):].partition(":")
        return context, environment
    return None


class JobQueue:
    """Blocking client: workers use it directly, the gateway through its blocking adapter."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # lane -> (when read, LLEN then, jobs this client queued since): see estimated_length.
        self._lengths: dict[Lane, tuple[float, int, int]] = {}
        self._lengths_lock = threading.Lock()

    def queue(self, context: str, environment: str | None = None) -> Queue:
        return Queue(queue_name(context, environment), connection=self.redis)

    def enqueue(self, job_id: str, context: str, pipeline: Pipeline | None = None,
                environment: str | None = None) -> None:
        """Queue the job; with ``pipeline``, only when the caller executes it."""
        self.queue(context, environment).enqueue_call(
            JOB_FUNC,
            args=(job_id,),
            job_id=job_id,
            # Results live in the database; RQ's copy would only take memory.
            result_ttl=0,
            timeout=-1,
            description=f"sparkgate job {job_id} in context {context}",
            pipeline=pipeline,
        )
        lane = (context, environment)
        with self._lengths_lock:
            if lane in self._lengths:
                read_at, length, added = self._lengths[lane]
                self._lengths[lane] = (read_at, length, added + 1)

    def estimated_length(self, context: str, max_age_s: float = 0.1,
                         environment: str | None = None) -> int:
        """How many jobs wait in the queue: its LLEN, read again only when older than
        ``max_age_s``, plus the jobs this client queued since. A limit checked against it costs
        no round trip per submit; other gateways' submits show up within ``max_age_s``."""
        now = time.monotonic()
        lane = (context, environment)
        with self._lengths_lock:
            cached = self._lengths.get(lane)
        if cached is not None and now - cached[0] < max_age_s:
            return cached[1] + cached[2]
        length = self.length(context, environment)
        with self._lengths_lock:
            self._lengths[lane] = (now, length, 0)
        return length

    def remove(self, job_id: str, context: str, environment: str | None = None) -> None:
        """Drop a job that will not run (cancelled while queued)."""
        # Every copy: a job enqueued twice (the reconciler's requeue racing a pop) is one job.
        self.redis.lrem(self.queue(context, environment).key, 0, job_id)
        self._delete(job_id)

    def pop(self, context: str, timeout_s: int, environment: str | None = None) -> str | None:
        """The next job id queued for ``context`` (in ``environment``), waiting up to
        ``timeout_s`` (>= 1)."""
        queue = self.queue(context, environment)
        try:
            popped = Queue.lpop([queue.key], timeout=timeout_s, connection=self.redis)
        except DequeueTimeout:
            return None
        if popped is None:
            return None
        _, raw_id = popped
        return raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)

    def give_back(self, job_id: str, context: str, environment: str | None = None) -> None:
        """Return a popped job to the head of its queue (a worker that started draining)."""
        self.redis.lpush(self.queue(context, environment).key, job_id)

    def done(self, job_id: str, pipeline: Pipeline | None = None) -> None:
        """Forget RQ's copy of a job a worker has taken. Its hash is all there is (sparkgate
        workers never put a job in RQ's registries), so a DEL does it, in the caller's
        pipeline if given."""
        (pipeline or self.redis).delete(RQJob.key_for(job_id))

    def queued_ids(self, context: str) -> list[str]:
        return self.queue(context).get_job_ids()

    def queued_id_sets(self, lanes: Iterable[Lane]) -> dict[Lane, set[str]]:
        """The ids waiting in each lane's queue: one LRANGE per lane, one round trip."""
        names = sorted(set(lanes), key=lambda lane: (lane[0], lane[1] or ""))
        with self.redis.pipeline(transaction=False) as pipe:
            for context, environment in names:
                pipe.lrange(self.queue(context, environment).key, 0, -1)
            replies = pipe.execute()
        return {lane: {i.decode() if isinstance(i, bytes) else str(i) for i in ids}
                for lane, ids in zip(names, replies, strict=True)}

    def length(self, context: str, environment: str | None = None) -> int:
        return self.queue(context, environment).count

    def lanes_with_work(self) -> list[Lane]:
        """(context, environment) of each queue that holds at least one job."""
        queues = [(q, lane_of(q.name)) for q in Queue.all(connection=self.redis)]
        return [lane for q, lane in queues if lane is not None and q.count]

    def _delete(self, job_id: str) -> None:
        with contextlib.suppress(NoSuchJobError):
            RQJob.fetch(job_id, connection=self.redis).delete(remove_from_queue=False)
