"""Submitting a job: check the arguments, record the job, queue it. Shared by every interface
(HTTP today; MQTT and the CLI call the same function).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from jobs.catalog import Catalog, Context, Function, Health
from jobs.db import now_ms
from jobs.errors import BadRequest, Conflict, NotFound, TooManyRequests, Unavailable
from jobs.events import CHANNEL, encode, initialized_event, lifecycle_event
from jobs.queue import JobQueue
from jobs.signatures import Signature, validate_arguments
from jobs.state import JobStatus
from jobs.store import Job, NewJob, Store

log = logging.getLogger("sparkgate.submission")

# A full queue drains at the speed of its workers: a few seconds is a fair first wait.
QUEUE_FULL_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class SubmitRequest:
    function: str
    arguments: Any
    source: str = "http"
    context: str | None = None
    external_id: str | None = None
    start_timeout_ms: int | None = None
    perform_timeout_ms: int | None = None
    # Who asks: "key:<name>", "jwt:<subject>", "mqtt", or "anonymous" with authentication off.
    submitter: str | None = None
    # The client's Idempotency-Key header; without one, externalId plays that part.
    idempotency_key: str | None = None


def submit(catalog: Catalog, store: Store, queue: JobQueue, request: SubmitRequest,
           announce: bool = False, max_queued: int = 0) -> Job:
    """The queued job. Nothing is written when the request is refused.

    The job row is committed before it is queued, so an id a client has seen is never lost; if
    the queue is unreachable the row is taken back (the client gets 503 and no id), so a retry
    starts afresh and nothing runs behind the client's back.

    A request with an idempotency key (``Idempotency-Key``, else ``externalId``) that was seen
    before returns the job it created then, whatever became of it; the same key with other
    arguments is a conflict.

    ``announce``: publish the job's ``initialized`` and first status event, before the job is
    queued, so that no worker's event for it can come first. ``max_queued``: refuse (429) when
    the context already has that many jobs waiting; 0: no limit.
    """
    function, context, arguments = _resolve(catalog, request)
    key = idempotency_digest(request)
    if key is not None:
        earlier = store.find_idempotent(key)
        if earlier is not None:
            return _same_request(earlier, request, context.name, arguments)
    if max_queued:
        _check_room(queue, context.name, max_queued)
    artifact = catalog.get_artifact(function.path)
    new = NewJob(
        function=function.name, context=context.name, arguments=arguments,
        file_path=function.path, class_name=function.class_name, artifact_sha1=artifact.sha1,
        source=request.source, external_id=request.external_id,
        start_timeout_ms=_or_default(request.start_timeout_ms, context.start_timeout_s),
        perform_timeout_ms=_or_default(request.perform_timeout_ms, context.perform_timeout_s),
        submitter=request.submitter, idempotency_key=key,
    )
    job = store.create_job(new)
    if job.id != new.id:  # a concurrent retry with the same key won the insert
        return _same_request(job, request, context.name, arguments)
    return _queue(catalog, store, queue, job, announce)


def _resolve(catalog: Catalog, request: SubmitRequest) -> tuple[Function, Context, Any]:
    """The function, its context and the validated arguments; 4xx for anything unknown."""
    function = catalog.get_function(request.function)
    arguments = request.arguments
    if function.signature is not None:
        arguments = validate_arguments(Signature.from_dict(function.signature), arguments)
    elif not isinstance(arguments, dict):
        validate_arguments(Signature(handle="session", params=(), mist=False), arguments)
    name = request.context or function.default_context
    try:
        context = catalog.get_context(name)
    except NotFound:
        raise BadRequest(f"context: context {name!r} does not exist",
                         {"field": "context", "got": name}) from None
    return function, context, arguments


def _queue(catalog: Catalog, store: Store, queue: JobQueue, job: Job, announce: bool) -> Job:
    health = catalog.health(job.context)
    if health.broken:
        # Recorded and failed at once: the client gets a job id whose error says what to do.
        failed = store.transition(job.id, JobStatus.FAILED,
                                  error=broken_message(job.context, health), end_time=now_ms())
        if announce:
            _publish(queue, initialized_event(failed), lifecycle_event(failed))
        return failed
    if announce:
        _publish(queue, initialized_event(job), lifecycle_event(job))
    try:
        queue.enqueue(job.id, job.context)
    except Exception as exc:
        _take_back(store, job, exc)
        raise Unavailable("the job queue (Redis) is unavailable; the job was not queued; "
                          "retry shortly") from exc
    return job


def idempotency_digest(request: SubmitRequest) -> str | None:
    """One key per (submitter, function, client key): two clients never share one."""
    key = request.idempotency_key or request.external_id
    if not key:
        return None
    scope = json.dumps([request.submitter or "anonymous", request.function, key])
    return hashlib.sha256(scope.encode()).hexdigest()


def _same_request(earlier: Job, request: SubmitRequest, context: str, arguments: Any) -> Job:
    if earlier.function == request.function and earlier.context == context \
            and earlier.arguments == arguments:
        return earlier
    field_name = "Idempotency-Key" if request.idempotency_key else "externalId"
    raise Conflict(
        f"{field_name} {request.idempotency_key or request.external_id!r} was already used "
        f"for job {earlier.id} with other arguments or context; use a new key for a new job",
        {"field": field_name, "jobId": earlier.id},
    )


def _check_room(queue: JobQueue, context: str, max_queued: int) -> None:
    waiting = queue.length(context)
    if waiting >= max_queued:
        raise TooManyRequests(
            f"context {context!r} has {waiting} jobs queued; the limit is "
            f"max_queued_per_context = {max_queued}; retry later",
            retry_after_s=QUEUE_FULL_RETRY_AFTER_S,
            details={"context": context, "queued": waiting, "limit": max_queued},
        )


def _take_back(store: Store, job: Job, exc: Exception) -> None:
    """Undo a job that could not be queued. Deleting it (the client never saw its id) lets a
    retry with the same idempotency key start afresh; if even that fails, failing it keeps it
    from running later behind the client's back."""
    try:
        store.delete_unqueued(job.id)
    except Exception:
        log.exception("could not take back job %s after a queue failure", job.id)
        try:
            store.transition(job.id, JobStatus.FAILED, error=f"could not be queued: {exc}",
                             end_time=now_ms())
        except Exception:
            log.exception("job %s stays queued; the reconciler will queue it", job.id)


def broken_message(context: str, health: Health) -> str:
    return (
        f"context {context!r} is broken: its workers failed {health.failures} times in a row "
        f"(last: {health.last_failure}). Fix its settings and update it "
        f"(PUT /v2/api/contexts/{context}) to repair it; its jobs fail until then."
    )


def _or_default(requested_ms: int | None, default_s: int | None) -> int | None:
    if requested_ms is not None:
        return requested_ms
    return None if default_s is None else default_s * 1000


def _publish(queue: JobQueue, *events: dict[str, Any]) -> None:
    """Best effort: the job is recorded; a lost event only delays a live view."""
    try:
        with queue.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(CHANNEL, encode(event))
            pipe.execute()
    except RedisError as exc:
        log.warning("could not publish %d event(s): %s", len(events), exc)
