"""The result cache: a function deployed with ``cache`` (a duration) answers an identical call
made within that time with the result of the job that ran it, without running anything.

Identical means: the same function in its current definition (its ``updated_at``: an update or
redeploy makes new keys), the same artifact sha1, the same context and the same arguments as
validated (JSON with sorted keys). Entries live in Redis, shared by every gateway, each one
bounded by the function's TTL, under ``sparkgate:cache:<function>:<generation>:<digest>``; a
purge increments the function's generation, so it is one INCR however many entries there are.

An entry is either a result (``r <job id> <end ms> <result JSON>``) or a marker that an
identical call's job is on its way (``p <job id> <claim ms>``): that is the single flight. The
first call of a key claims it in the same round trip as the lookup (one Lua script); the calls
that come while its job is queued or running learn its id (``Pending``) and wait for it. The
marker is resolved by whoever reads it next once the job has ended (from the job's row: no
process has to stay alive to fill the cache): finished, its result is stored (if under
``max_bytes``); failed or cancelled, the reader claims the key for its own job.

A hit reads Redis only. Better still, a call that a hit has answered once is indexed as the
client sent it (``sparkgate:cache-call:<function>:<generation>:<digest of context and
arguments as sent>``, naming the entry and what its job record needs), so the gateway answers
the same call again from that index alone, before the submit path: no database read, no thread
(``look_up_call``). Unlike an entry's key, the index cannot see the function's definition: so
every change of a definition through the API (create, update, delete, an artifact replaced)
purges the function's cache, and ``functions_cached`` keeps the gateway from paying the round
trip for functions without ``cache``.

Redis unreachable: the cache is a miss and the submit goes on as if
there were none (its enqueue then answers 503 as ever): an outage never serves a stale result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from sqlalchemy import Connection, Text, cast, select

from sparkgate.jobs import tables as t
from sparkgate.jobs.db import now_ms
from sparkgate.jobs.functions import Function
from sparkgate.jobs.state import JobStatus

log = logging.getLogger("sparkgate.result_cache")

KEY_PREFIX = "sparkgate:cache:"
GENERATION_PREFIX = "sparkgate:cache-generation:"
CALL_PREFIX = "sparkgate:cache-call:"
# A marker outlives its job's end only until someone reads it; this bounds a marker whose job
# takes longer (identical calls after that run their own) and one nobody reads again.
PENDING_MAX_MS = 3600 * 1000
# A marker whose job is not in the database yet: its submit's transaction is still being
# committed (a concurrent batch) for this long at most; after that the job was taken back.
UNCOMMITTED_GRACE_MS = 10_000

# KEYS: the generation key. ARGV: the key prefix, the digest, our marker, its TTL (ms).
# Returns the entry's key and what it held (nil when ours now: we claimed it).
_CLAIM = """
local key = ARGV[1] .. (redis.call('GET', KEYS[1]) or '0') .. ':' .. ARGV[2]
local held = redis.call('GET', key)
if not held then redis.call('SET', key, ARGV[3], 'PX', ARGV[4]) end
return {key, held}
"""
# KEYS: the generation key. ARGV: the call index's prefix, the call's digest. Returns the index
# entry ("<entry key> <job template>") and what that entry holds (a list of one when it is gone).
_CALL = """
local call = redis.call('GET', ARGV[1] .. (redis.call('GET', KEYS[1]) or '0') .. ':' .. ARGV[2])
if not call then return nil end
return {call, redis.call('GET', string.match(call, '^[^ ]+'))}
"""
# KEYS: an entry. ARGV: what it must still hold, its new value, the new TTL (ms).
_REPLACE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class Hit:
    """A cached result: ``job_id`` ran and ended at ``end_ms`` with ``result`` (JSON text)."""

    job_id: str
    end_ms: int
    result: str
    key: str = ""

    def value(self) -> Any:
        return orjson.loads(self.result)


@dataclass(frozen=True)
class CallHit:
    """A hit found by the call index, with what the job that answers it records:
    ``template`` holds its context, filePath, className, sha1 and (validated) arguments."""

    hit: Hit
    template: dict[str, Any]


@dataclass(frozen=True)
class Pending:
    """An identical call's job, queued or running: wait for its end, then submit again."""

    job_id: str


@dataclass(frozen=True)
class Run:
    """No cached result: run the job (``claimed``: it is the one identical calls wait for)."""

    claimed: bool


Lookup = Hit | Pending | Run


class ResultCache:
    """The blocking client (the submit path runs on the gateway's executor)."""

    def __init__(self, redis: Redis, max_bytes: int, aredis: AsyncRedis | None = None) -> None:
        self.redis = redis
        self.max_bytes = max_bytes
        self._claim = redis.register_script(_CLAIM)
        self._replace = redis.register_script(_REPLACE)
        self._call = None if aredis is None else aredis.register_script(_CALL)
        # Functions seen with ``cache`` by this process's submits: only their calls are
        # looked up in the call index (a round trip saved for every other function).
        self.functions_cached: set[str] = set()

    async def look_up_call(self, function: str, context: str | None,
                           arguments: Any) -> CallHit | None:
        """The hit indexed for this call as sent, if any (see the module's docstring); None
        also when Redis is unreachable (the submit path then decides)."""
        assert self._call is not None, "no asynchronous client"
        try:
            found = await self._call([GENERATION_PREFIX + function], [
                f"{CALL_PREFIX}{function}:", _call_digest(context, arguments)])
        except RedisError:
            return None
        if not found or len(found) < 2 or not found[1].startswith(b"r "):
            return None
        key, template = found[0].decode().split(" ", 1)
        _, job_id, end_ms, result = found[1].decode().split(" ", 3)
        return CallHit(Hit(job_id, int(end_ms), result, key), orjson.loads(template))

    def index_call(self, function: Function, context: str | None, arguments: Any, hit: Hit,
                   template: dict[str, Any]) -> None:
        """Index ``hit`` under this call as sent, for as long as the hit lives."""
        assert function.cache_ms is not None
        left_ms = hit.end_ms + function.cache_ms - now_ms()
        generation = hit.key[len(KEY_PREFIX) + len(function.name) + 1:].split(":", 1)[0]
        index = f"{CALL_PREFIX}{function.name}:{generation}:{_call_digest(context, arguments)}"
        value = f"{hit.key} {_canonical(template).decode()}"
        if left_ms > 0 and len(value) <= self.max_bytes:
            with contextlib.suppress(RedisError):  # only a later call's shortcut is lost
                self.redis.set(index, value, px=left_ms)

    def look_up(self, conn: Connection, function: Function, call: list[Any], job_id: str,
                follow: bool) -> Lookup:
        """What to do with a call of ``function`` (``call``: artifact sha1, context,
        arguments) whose job would be ``job_id``. ``follow``: the caller can wait for an
        identical call's job (``Pending``); otherwise it runs its own."""
        assert function.cache_ms is not None
        try:
            key, held = self._claim(
                [GENERATION_PREFIX + function.name],
                [f"{KEY_PREFIX}{function.name}:", _digest(function, call),
                 _marker(job_id), PENDING_MAX_MS])
            if held is None:
                return Run(claimed=True)
            return self._resolve(conn, key.decode(), held.decode(), job_id, follow,
                                 function.cache_ms)
        except RedisError as exc:
            log.warning("result cache unavailable, treated as a miss: %s", exc)
            return Run(claimed=False)

    def purge(self, *functions: str) -> None:
        """Forget every cached result of ``functions``: later calls miss. Raises RedisError."""
        with self.redis.pipeline(transaction=False) as pipe:
            for function in functions:
                pipe.incr(GENERATION_PREFIX + function)
            pipe.execute()

    def _resolve(self, conn: Connection, key: str, held: str, job_id: str, follow: bool,
                 ttl_ms: int) -> Lookup:
        kind, other, at, *result = held.split(" ", 3)
        if kind == "r":
            return Hit(other, int(at), result[0], key)
        if other == job_id:  # our own claim: a submit retried after a conflict
            return Run(claimed=True)
        ended = _ended(conn, other, int(at))
        if ended is None:  # queued or running, or not committed yet
            return Pending(other) if follow else Run(claimed=False)
        if ended.status is JobStatus.FINISHED:
            hit = self._store(key, held, ended, ttl_ms)
            if hit is not None:
                return hit
        # Failed, cancelled, gone, or a result not to keep: this call takes the key over.
        return Run(claimed=bool(self._replace([key], [held, _marker(job_id), PENDING_MAX_MS])))

    def _store(self, key: str, held: str, ended: _Ended, ttl_ms: int) -> Hit | None:
        left_ms = ended.end_ms + ttl_ms - now_ms()
        if ended.result is None or left_ms <= 0 \
                or len(ended.result.encode()) > self.max_bytes:
            return None
        hit = Hit(ended.job_id, ended.end_ms, ended.result, key)
        self._replace([key], [held, f"r {hit.job_id} {hit.end_ms} {hit.result}", left_ms])
        return hit


@dataclass(frozen=True)
class _Ended:
    job_id: str
    status: JobStatus
    end_ms: int
    result: str | None


def _ended(conn: Connection, job_id: str, claimed_ms: int) -> _Ended | None:
    """The job as it ended, its result as stored (JSON text); None while it has not ended.
    A job that is not there (claimed at ``claimed_ms``) is ended once its submit had time to
    commit it: it was taken back."""
    c = t.jobs.c
    row = conn.execute(select(c.status, c.end_time, cast(c.result, Text))
                       .where(c.id == job_id)).first()
    if row is None:
        gone = now_ms() - claimed_ms >= UNCOMMITTED_GRACE_MS
        return _Ended(job_id, JobStatus.FAILED, 0, None) if gone else None
    status = JobStatus(row[0])
    if not status.terminal:
        return None
    return _Ended(job_id, status, row[1] or 0, row[2])


def _marker(job_id: str) -> str:
    return f"p {job_id} {now_ms()}"


def _digest(function: Function, call: list[Any]) -> str:
    """The call's identity: the function's definition, artifact, context and arguments, as
    canonical JSON (sorted keys)."""
    return hashlib.sha256(_canonical([function.updated_at, *call])).hexdigest()


def _call_digest(context: str | None, arguments: Any) -> str:
    """A call as sent: the context asked for (None: the function's default) and arguments."""
    return hashlib.sha256(_canonical([context, arguments])).hexdigest()


def _canonical(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson does not take (integers beyond 64 bits)
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
