"""Live workers, as each announces itself in Redis: a JSON record with a TTL, renewed by the
worker's heartbeat. A record that expired is a worker that stopped beating (dead or hung).

Also the requests of draining workers for a successor: a set of requests (context, and who
asks) that the supervisors take from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

from redis import Redis

WORKERS_SET = "sparkgate:workers"
SUCCESSORS_SET = "sparkgate:successor-requests"


def worker_key(worker_id: str) -> str:
    return f"sparkgate:worker:{worker_id}"


@dataclass(frozen=True)
class WorkerRecord:
    """What a live worker announces of itself. In Redis as JSON, its names in camelCase
    (``startedAt``), as Mist's are; a record written by an older worker may lack the later
    fields, which then take their defaults."""

    id: str
    context: str
    host: str
    pid: int
    started_at: int = 0
    heartbeat_at: int = 0
    max_jobs: int = 0
    worker_mode: str = "shared"
    spark_conf: dict[str, str] = field(default_factory=dict)
    running_jobs: list[str] = field(default_factory=list)
    jobs_done: int = 0
    state: str = "running"
    drain_reason: str | None = None
    # The environment it runs in (jobs/environments.py); None: the base one.
    environment: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, attribute) for attribute, name in _json_names().items()}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> WorkerRecord:
        return cls(**{attribute: record[name] for attribute, name in _json_names().items()
                      if name in record})


@cache
def _json_names() -> dict[str, str]:
    """WorkerRecord's attributes and their names in JSON: ``started_at`` is ``startedAt``."""
    return {f.name: f.name.split("_")[0] + "".join(w.title() for w in f.name.split("_")[1:])
            for f in fields(WorkerRecord)}


class WorkerRegistry:
    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self.redis = redis
        self.ttl_ms = int(ttl_s * 1000)

    def beat(self, record: Mapping[str, Any]) -> None:
        """Announce (or renew) a worker: ``record`` is a ``WorkerRecord``'s JSON."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(worker_key(record["id"]), json.dumps(record), px=self.ttl_ms)
            pipe.sadd(WORKERS_SET, record["id"])
            pipe.execute()

    def remove(self, worker_id: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(worker_key(worker_id))
            pipe.srem(WORKERS_SET, worker_id)
            pipe.execute()

    def live(self) -> list[WorkerRecord]:
        ids = sorted(i.decode() if isinstance(i, bytes) else i
                     for i in self.redis.smembers(WORKERS_SET))
        if not ids:
            return []
        raw = self.redis.mget([worker_key(i) for i in ids])
        expired = [i for i, r in zip(ids, raw, strict=True) if r is None]
        if expired:
            self.redis.srem(WORKERS_SET, *expired)
        return [WorkerRecord.from_json(json.loads(r)) for r in raw if r is not None]

    def get(self, worker_id: str) -> WorkerRecord | None:
        raw = self.redis.get(worker_key(worker_id))
        return None if raw is None else WorkerRecord.from_json(json.loads(raw))

    def request_successor(self, context: str, host: str, pid: int,
                          environment: str | None = None) -> None:
        """Ask for a new worker for ``context`` (in ``environment``) now, on behalf of the
        worker ``pid`` on ``host``, which is draining. Unanswered (no supervisor runs), the
        request lapses after a record's TTL, so a supervisor started later is not misled."""
        request = json.dumps({"context": context, "host": host, "pid": pid,
                              "environment": environment})
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(SUCCESSORS_SET, request)
            pipe.pexpire(SUCCESSORS_SET, self.ttl_ms)
            pipe.execute()

    def take_successor_requests(self) -> list[dict[str, Any]]:
        """The requests made since the last take (``context``, ``host``, ``pid``,
        ``environment``), taken at once: of several supervisors, one starts each successor."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.smembers(SUCCESSORS_SET)
            pipe.delete(SUCCESSORS_SET)
            members, _ = pipe.execute()
        return [json.loads(m) for m in members]
