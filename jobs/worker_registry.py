"""Live workers, as each announces itself in Redis: a JSON record with a TTL, renewed by the
worker's heartbeat. A record that expired is a worker that stopped beating (dead or hung).

Also the requests of draining workers for a successor: a set of requests (context, and who
asks) that the supervisors take from.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

WORKERS_SET = "sparkgate:workers"
SUCCESSORS_SET = "sparkgate:successor-requests"


def worker_key(worker_id: str) -> str:
    return f"sparkgate:worker:{worker_id}"


class WorkerRegistry:
    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self.redis = redis
        self.ttl_ms = int(ttl_s * 1000)

    def beat(self, record: dict[str, Any]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(worker_key(record["id"]), json.dumps(record), px=self.ttl_ms)
            pipe.sadd(WORKERS_SET, record["id"])
            pipe.execute()

    def remove(self, worker_id: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(worker_key(worker_id))
            pipe.srem(WORKERS_SET, worker_id)
            pipe.execute()

    def live(self) -> list[dict[str, Any]]:
        ids = sorted(i.decode() if isinstance(i, bytes) else i
                     for i in self.redis.smembers(WORKERS_SET))
        if not ids:
            return []
        raw = self.redis.mget([worker_key(i) for i in ids])
        expired = [i for i, r in zip(ids, raw, strict=True) if r is None]
        if expired:
            self.redis.srem(WORKERS_SET, *expired)
        return [json.loads(r) for r in raw if r is not None]

    def get(self, worker_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(worker_key(worker_id))
        return None if raw is None else json.loads(raw)

    def request_successor(self, context: str, host: str, pid: int) -> None:
        """Ask for a new worker for ``context`` now, on behalf of the worker ``pid`` on
        ``host``, which is draining. Unanswered (no supervisor runs), the request lapses after
        a record's TTL, so a supervisor started later is not misled."""
        request = json.dumps({"context": context, "host": host, "pid": pid})
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(SUCCESSORS_SET, request)
            pipe.pexpire(SUCCESSORS_SET, self.ttl_ms)
            pipe.execute()

    def take_successor_requests(self) -> list[dict[str, Any]]:
        """The requests made since the last take (``context``, ``host``, ``pid``), taken at
        once: of several supervisors, one starts each successor."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.smembers(SUCCESSORS_SET)
            pipe.delete(SUCCESSORS_SET)
            members, _ = pipe.execute()
        return [json.loads(m) for m in members]
