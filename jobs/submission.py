"""Submitting a job: check the arguments, record the job, queue it. Shared by every interface
(HTTP today; MQTT and the CLI call the same function).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from jobs.catalog import Catalog, Health
from jobs.db import now_ms
from jobs.errors import BadRequest, NotFound, Unavailable
from jobs.events import CHANNEL, encode, initialized_event, lifecycle_event
from jobs.queue import JobQueue
from jobs.signatures import Signature, validate_arguments
from jobs.state import JobStatus
from jobs.store import Job, NewJob, Store

log = logging.getLogger("sparkgate.events")


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
           announce: bool = False) -> Job:
    """The queued job. Nothing is written when the request is refused.

    The job row is committed before it is queued, so an id a client has seen is never lost; if
    the queue is unreachable the job is failed at once (and the client told 503), so it cannot
    run later behind the back of a client that will retry.

    ``announce``: publish the job's ``initialized`` and first status event, before the job is
    queued, so that no worker's event for it can come first.
    """
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
    artifact = catalog.get_artifact(function.path)
    job = store.create_job(NewJob(
        function=function.name, context=name, arguments=arguments,
        file_path=function.path, class_name=function.class_name, artifact_sha1=artifact.sha1,
        source=request.source, external_id=request.external_id,
        start_timeout_ms=_or_default(request.start_timeout_ms, context.start_timeout_s),
        perform_timeout_ms=_or_default(request.perform_timeout_ms, context.perform_timeout_s),
    ))
    health = catalog.health(name)
    if health.broken:
        # Recorded and failed at once: the client gets a job id whose error says what to do.
        failed = store.transition(job.id, JobStatus.FAILED,
                                  error=broken_message(name, health), end_time=now_ms())
        if announce:
            _publish(queue, initialized_event(failed), lifecycle_event(failed))
        return failed
    if announce:
        _publish(queue, initialized_event(job), lifecycle_event(job))
    try:
        queue.enqueue(job.id, name)
    except Exception as exc:
        failed = store.transition(job.id, JobStatus.FAILED, error=f"could not be queued: {exc}",
                                  end_time=now_ms())
        if announce:
            _publish(queue, lifecycle_event(failed))
        raise Unavailable("the job queue (Redis) is unavailable; the job was not queued") from exc
    return job


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
