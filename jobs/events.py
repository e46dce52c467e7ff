"""Job lifecycle events, in Mist's names and fields, carried on one Redis pub/sub channel.

Every gateway instance subscribes to the channel, so a waiter or a WebSocket client on any
instance sees every job's events. Pub/sub is at-most-once: nothing may depend on an event
arriving; waiters re-read the database (the source of truth) when woken or reconnected.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from sparkgate.jobs.db import json_value, now_ms
from sparkgate.jobs.logs.lines import LogLine
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, oversized_marker

CHANNEL_PREFIX = "sparkgate:events"


def events_channel(redis: Any) -> str:
    """The job events channel of the sparkgate using ``redis`` (a client or a pipeline, sync or
    async): one per Redis database. Pub/sub channels are server-wide, not per database, so two
    sparkgates sharing a Redis server, each with its own database, would otherwise each see
    (and relay over MQTT, and show) the other's job events."""
    return f"{CHANNEL_PREFIX}:{redis.connection_pool.connection_kwargs.get('db', 0)}"

TERMINAL_EVENTS = frozenset({"finished", "failed", "cancelled"})


def lifecycle_event(job: Job) -> dict[str, Any]:
    """The event that announces ``job``'s current status."""
    event: dict[str, Any] = {"event": job.status.value, "id": job.id, "time": now_ms()}
    if job.status is JobStatus.QUEUED:
        event["event"] = "queued"
    elif job.status is JobStatus.FINISHED:
        event["result"] = job.result
    elif job.status is JobStatus.FAILED:
        event["error"] = job.error
    elif job.status is JobStatus.STARTED:
        event["workerId"] = job.worker_id
    return event


def initialized_event(job: Job) -> dict[str, Any]:
    return {
        "event": "initialized",
        "id": job.id,
        "time": job.create_time,
        "params": job.arguments,
        "function": job.function,
        "context": job.context,
        "externalId": job.external_id,
        # sparkgate's own: whose job it is, so that streams of callers who see only their own
        # jobs can place its later events without reading the database.
        "submitter": job.submitter,
    }


def worker_assigned_event(job: Job) -> dict[str, Any]:
    return {"event": "worker-assigned", "id": job.id, "workerId": job.worker_id,
            "time": now_ms()}


def logs_event(job_id: str, lines: list[LogLine]) -> dict[str, Any]:
    return {
        "event": "logs",
        "id": job_id,
        "events": [
            {"from": job_id, "message": line.message, "timeStamp": line.ts_ms,
             "level": line.level}
            for line in lines
        ],
    }


# Events carry job values (params, result, error) up to this many bytes of JSON.
VALUE_MAX_BYTES = 64 * 1024
_VALUE_FIELDS = ("params", "result", "error")


def encode(event: dict[str, Any]) -> str:
    """The event as published. Its params, result or error, when larger than
    ``VALUE_MAX_BYTES``, is replaced by a marker (``oversized_marker``, and the event's
    ``truncated`` names the fields): every gateway decodes every event on its loop and hands
    it to every stream, so megabytes there would stall them all; the job has the value."""
    text = _json(event)
    if len(text) <= VALUE_MAX_BYTES:  # no value in it can be larger (nearly every event)
        return text.decode()
    capped = event
    for name in _VALUE_FIELDS:
        if name in event and len(_json(event[name])) > VALUE_MAX_BYTES:
            capped = {**capped, name: oversized_marker(event["id"]),
                      "truncated": [*capped.get("truncated", ()), name]}
    return (text if capped is event else _json(capped)).decode()


def _json(value: Any) -> bytes:
    """Compact JSON, by orjson: an event is encoded on every submit and every job's end, and
    the json module took several times longer (and longer still measuring a value's size
    incrementally). What orjson does not take (integers beyond 64 bits, keys that are not
    strings), the json module does."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def decode(raw: bytes | str) -> dict[str, Any]:
    return json_value(raw)


def progress_event(job_id: str, progress: dict[str, Any]) -> dict[str, Any]:
    """sparkgate's own event: Spark stages and tasks done for a running job."""
    return {"event": "progress", "id": job_id, "progress": progress, "time": now_ms()}
