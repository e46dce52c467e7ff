"""Submitting a job: check the arguments, record the job, queue it. Shared by every interface
(HTTP today; MQTT and the CLI call the same function).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.catalog import Catalog
from jobs.db import now_ms
from jobs.errors import BadRequest, Unavailable
from jobs.queue import JobQueue
from jobs.signatures import Signature, validate_arguments
from jobs.state import JobStatus
from jobs.store import Job, NewJob, Store


@dataclass(frozen=True)
class SubmitRequest:
    function: str
    arguments: Any
    source: str = "http"
    context: str | None = None
    external_id: str | None = None
    start_timeout_ms: int | None = None
    perform_timeout_ms: int | None = None


def submit(catalog: Catalog, store: Store, queue: JobQueue, request: SubmitRequest) -> Job:
    """The queued job. Nothing is written when the request is refused.

    The job row is committed before it is queued, so an id a client has seen is never lost; if
    the queue is unreachable the job is failed at once (and the client told 503), so it cannot
    run later behind the back of a client that will retry.
    """
    function = catalog.get_function(request.function)
    arguments = request.arguments
    if function.signature is not None:
        arguments = validate_arguments(Signature.from_dict(function.signature), arguments)
    elif not isinstance(arguments, dict):
        validate_arguments(Signature(handle="session", params=(), mist=False), arguments)
    context = request.context or function.default_context
    if not catalog.context_exists(context):
        raise BadRequest(f"context: context {context!r} does not exist",
                         {"field": "context", "got": context})
    artifact = catalog.get_artifact(function.path)
    job = store.create_job(NewJob(
        function=function.name, context=context, arguments=arguments,
        file_path=function.path, class_name=function.class_name, artifact_sha1=artifact.sha1,
        source=request.source, external_id=request.external_id,
        start_timeout_ms=request.start_timeout_ms, perform_timeout_ms=request.perform_timeout_ms,
    ))
    try:
        queue.enqueue(job.id, context)
    except Exception as exc:
        store.transition(job.id, JobStatus.FAILED, error=f"could not be queued: {exc}",
                         end_time=now_ms())
        raise Unavailable("the job queue (Redis) is unavailable; the job was not queued") from exc
    return job
