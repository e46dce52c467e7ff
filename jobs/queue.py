"""The job queue: RQ on Redis, one RQ queue per context and environment (``rq info`` lists
them): ``sparkgate:<context>`` for the base environment, ``sparkgate-env:<id>:<context>`` for an
artifact's own (jobs/environments.py; the id is fixed-length hex, so the name parses back, and
no context name can make one queue's name another's).

The database is the source of truth; an RQ job only carries the sparkgate job id (the RQ job id
is the same uuid). The hot path speaks RQ's data model directly instead of through RQ's objects:
an enqueue writes the keys and hash fields ``Queue.enqueue_call`` writes for such a job (so
``rq info`` and rq-dashboard show it as they would any RQ job), a pop is RQ's own BLPOP on the
queue's list. RQ's stock worker, whose per-job bookkeeping costs milliseconds and forks per
job, is not used; building an RQ ``Job`` and ``Queue`` per job cost the gateway more than the
Redis commands themselves.
"""

from __future__ import annotations

import pickle
import threading
import time
import zlib
from collections.abc import Iterable

from redis import Redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus as RQJobStatus
from rq.utils import now, utcformat

from sparkgate.jobs.redis_wire import Command, packed

QUEUE_PREFIX = "sparkgate:"
ENV_QUEUE_PREFIX = "sparkgate-env:"
# The callable RQ records for each job: sparkgate workers run jobs through the database row,
# so this is informational (what `rq info -v` and rq-dashboard show).
JOB_FUNC = "sparkgate.workers.execution.JobRunner.run"
# RQ's key names, as RQ declares them: the set of queue keys `rq info` lists, a queue's list,
# a job's hash.
QUEUES_KEY: str = Queue.redis_queues_keys
QUEUE_KEY_PREFIX: str = Queue.redis_queue_namespace_prefix
JOB_KEY_PREFIX: str = RQJob.redis_job_namespace_prefix


# What a queue serves: a context, and the environment its workers run in (None: the base one).
Lane = tuple[str, str | None]


def queue_name(context: str, environment: str | None = None) -> str:
    if environment is None:
        return QUEUE_PREFIX + context
    return f"{ENV_QUEUE_PREFIX}{environment}:{context}"


def queue_key(context: str, environment: str | None = None) -> str:
    """The Redis list of the queue's job ids (``Queue(queue_name(...)).key``)."""
    return QUEUE_KEY_PREFIX + queue_name(context, environment)


def job_key(job_id: str) -> str:
    """The Redis hash of RQ's copy of a job (``Job.key_for``)."""
    return JOB_KEY_PREFIX + job_id


def lane_of(name: str) -> Lane | None:
    """The (context, environment) a queue name serves; None for another app's queue."""
    if name.startswith(QUEUE_PREFIX):
        return name[len(QUEUE_PREFIX):], None
    if name.startswith(ENV_QUEUE_PREFIX):
        environment, _, context = name[len(ENV_QUEUE_PREFIX):].partition(":")
        return context, environment
    return None


def rq_job_fields(job_id: str, context: str,
                  environment: str | None = None) -> dict[FieldT, EncodableT]:
    """The hash RQ's ``Queue.enqueue_call`` saves for a sparkgate job (``Job.to_dict`` of a job
    of ``JOB_FUNC(job_id)`` with ``result_ttl=0, timeout=-1``, queued), built without an RQ
    ``Job``. tests/test_queue.py holds it to RQ's own."""
    stamp = utcformat(now())
    return {
        "created_at": stamp,
        # RQ's DefaultSerializer: pickle at the highest protocol, compressed.
        "data": zlib.compress(pickle.dumps((JOB_FUNC, None, (job_id,), {}),
                                           protocol=pickle.HIGHEST_PROTOCOL)),
        "success_callback_name": "", "failure_callback_name": "", "stopped_callback_name": "",
        "started_at": "", "ended_at": "", "last_heartbeat": "", "worker_name": "", "group_id": "",
        "origin": queue_name(context, environment),
        "description": f"sparkgate job {job_id} in context {context}",
        "enqueued_at": stamp,
        # Results live in the database; RQ's copy would only take memory.
        "timeout": -1,
        "result_ttl": 0,
        "status": RQJobStatus.QUEUED.value,
    }


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class JobQueue:
    """Blocking client: workers use it directly, the gateway through its blocking adapter."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # lane -> (when read, LLEN then, jobs this client queued since): see estimated_length.
        self._lengths: dict[Lane, tuple[float, int, int]] = {}
        self._lengths_lock = threading.Lock()

    def enqueue(self, job_id: str, context: str, pipeline: Pipeline | None = None,
                environment: str | None = None) -> None:
        """Queue the job; with ``pipeline``, only when the caller executes it. The commands
        are ``Queue.enqueue_call``'s: the queue in RQ's set of queues, the job's hash, its id
        at the tail of the queue's list (RQ sets the hash's status first in a command of its
        own; here it is one of the hash's fields)."""
        key = queue_key(context, environment)
        if pipeline is None:
            with self.redis.pipeline() as pipe:
                self._enqueue_on(pipe, job_id, context, environment, key)
                pipe.execute()
        else:
            self._enqueue_on(pipeline, job_id, context, environment, key)
        lane = (context, environment)
        with self._lengths_lock:
            if lane in self._lengths:
                read_at, length, added = self._lengths[lane]
                self._lengths[lane] = (read_at, length, added + 1)

    @staticmethod
    def _enqueue_on(pipe: Pipeline, job_id: str, context: str, environment: str | None,
                    key: str) -> None:
        pipe.sadd(QUEUES_KEY, key)
        pipe.hset(job_key(job_id), mapping=rq_job_fields(job_id, context, environment))
        pipe.rpush(key, job_id)

    def estimated_length(self, context: str, max_age_s: float = 0.1,
                         environment: str | None = None) -> int:
        """How many jobs wait in the queue: its LLEN, read again only when older than
        ``max_age_s``, plus the jobs this client queued since. A limit checked against it costs
        no round trip per submit; other gateways' submits show up within ``max_age_s``."""
        now_s = time.monotonic()
        lane = (context, environment)
        with self._lengths_lock:
            cached = self._lengths.get(lane)
        if cached is not None and now_s - cached[0] < max_age_s:
            return cached[1] + cached[2]
        length = self.length(context, environment)
        with self._lengths_lock:
            self._lengths[lane] = (now_s, length, 0)
        return length

    def remove(self, job_id: str, context: str, environment: str | None = None) -> None:
        """Drop a job that will not run (cancelled while queued): one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            # Every copy: a job enqueued twice (the reconciler's requeue racing a pop) is one job.
            pipe.lrem(queue_key(context, environment), 0, job_id)
            self.done(job_id, pipeline=pipe)
            pipe.execute()

    def pop(self, context: str, timeout_s: int, environment: str | None = None) -> str | None:
        """The next job id queued for ``context`` (in ``environment``), waiting up to
        ``timeout_s`` (>= 1)."""
        popped = self.pop_many(context, timeout_s, 1, environment)
        return popped[0] if popped else None

    def pop_many(self, context: str, timeout_s: int, count: int,
                 environment: str | None = None) -> list[str]:
        """Up to ``count`` (>= 1) job ids from the head of the queue, in order, in one round
        trip: waits up to ``timeout_s`` (>= 1) for the first, takes the others only if they
        are already there ([] if none came). Needs Redis 6.2 (LPOP with a count)."""
        if timeout_s < 1:
            raise ValueError("a pop waits at least a second (0 would wait for ever)")
        key = queue_key(context, environment)
        # Redis runs the LPOP once the BLPOP before it on the connection has its job (or timed
        # out): both replies come back together. Sent as they are, not through a Pipeline,
        # whose bookkeeping cost a worker more than the round trip; never sent again after a
        # lost connection, as a pipeline would: the first BLPOP may have taken a job.
        commands: list[Command] = [("BLPOP", key, timeout_s)]
        if count > 1:
            commands.append(("LPOP", key, count - 1))
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(packed(commands))
            replies = [conn.read_response() for _ in commands]
        except BaseException:
            conn.disconnect()  # replies may be half read: it cannot be reused as is
            raise
        finally:
            pool.release(conn)
        first, more = replies[0], (replies[1] if count > 1 else None)
        return [_text(i) for i in ([first[1]] if first else []) + list(more or ())]

    def give_back(self, job_id: str, context: str, environment: str | None = None) -> None:
        """Return a popped job to the head of its queue (a worker that started draining)."""
        self.redis.lpush(queue_key(context, environment), job_id)

    def done(self, job_id: str, pipeline: Pipeline | None = None) -> None:
        """Forget RQ's copy of a job a worker has taken. Its hash is all there is (sparkgate
        jobs have no dependencies, results, executions or registry entries in RQ), so a DEL
        does what RQ's ``Job.delete`` would, in the caller's pipeline if given."""
        (pipeline or self.redis).delete(job_key(job_id))

    def queued_ids(self, context: str) -> list[str]:
        return [_text(i) for i in self.redis.lrange(queue_key(context), 0, -1)]

    def queued_id_sets(self, lanes: Iterable[Lane]) -> dict[Lane, set[str]]:
        """The ids waiting in each lane's queue: one LRANGE per lane, one round trip."""
        names = sorted(set(lanes), key=lambda lane: (lane[0], lane[1] or ""))
        with self.redis.pipeline(transaction=False) as pipe:
            for context, environment in names:
                pipe.lrange(queue_key(context, environment), 0, -1)
            replies = pipe.execute()
        return {lane: {_text(i) for i in ids} for lane, ids in zip(names, replies, strict=True)}

    def length(self, context: str, environment: str | None = None) -> int:
        return int(self.redis.llen(queue_key(context, environment)))

    def lanes_with_work(self) -> dict[Lane, int]:
        """(context, environment) of each queue that holds at least one job, and how many it
        holds: two round trips (RQ's set of queues, then every queue's LLEN)."""
        keys = [_text(k) for k in self.redis.smembers(QUEUES_KEY) if k]
        lanes = [(key, lane_of(key[len(QUEUE_KEY_PREFIX):])) for key in keys
                 if key.startswith(QUEUE_KEY_PREFIX)]
        ours = [(key, lane) for key, lane in lanes if lane is not None]
        if not ours:
            return {}
        with self.redis.pipeline(transaction=False) as pipe:
            for key, _ in ours:
                pipe.llen(key)
            counts = pipe.execute()
        return {lane: count for (_, lane), count in zip(ours, counts, strict=True) if count}
