"""Submitting a job: check the arguments, record the job, queue it. Shared by every interface
(HTTP today; MQTT and the CLI call the same function).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from sparkgate.jobs.catalog import Catalog, SubmissionTarget
from sparkgate.jobs.contexts import Health
from sparkgate.jobs.db import now_ms, writing
from sparkgate.jobs.errors import Conflict, SparkgateError, TooManyRequests, Unavailable
from sparkgate.jobs.events import initialized_event, lifecycle_event
from sparkgate.jobs.functions import Function
from sparkgate.jobs.ids import uuid7
from sparkgate.jobs.placement import check_placement
from sparkgate.jobs.publishing import add_events, publish
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.redis_wire import queued, transaction
from sparkgate.jobs.result_cache import CallHit, Hit, Pending, ResultCache, Run
from sparkgate.jobs.signatures.model import Signature
from sparkgate.jobs.signatures.validation import validate_arguments
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, NewJob, RawJSON, Store
from sparkgate.jobs.timeouts import job_perform_timeout_ms, job_timeout_ms

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
    # The new job's id, when the caller needs it before the job exists (to watch for its end).
    job_id: str | None = None
    # Result cache (jobs/result_cache.py): a hit is recorded as a finished job of its own,
    # unless ``record`` is false (the answer is then the job that ran, nothing is written).
    record: bool = True
    # The caller can wait for an identical call's job still running (it gets ``Pending``);
    # otherwise such a call runs its own.
    follow: bool = False
    # Created by this schedule (jobs/scheduler.py, or its "run now").
    schedule: str | None = None
    # Told of the job's end (jobs/webhooks.py); the caller checked it against the allow-list.
    callback_url: str | None = None


def submit(catalog: Catalog, store: Store, queue: JobQueue, request: SubmitRequest,
           announce: bool = False, max_queued: int = 0) -> Job:
    """The queued job (see ``submit_many``); raises the request's error."""
    (outcome,) = submit_many(catalog, store, queue, [request], announce, max_queued)
    if isinstance(outcome, SparkgateError):
        raise outcome
    assert not isinstance(outcome, Pending)  # no result cache here
    return outcome


def submit_many(catalog: Catalog, store: Store, queue: JobQueue,
                requests: Sequence[SubmitRequest], announce: bool = False,
                max_queued: int = 0, cache: ResultCache | None = None) -> list[Outcome]:
    """Each request's job, or why it was refused (nothing is written for a refused one).

    All the accepted jobs are inserted in one transaction and queued in one Redis round trip:
    the gateway hands over every submit that arrived meanwhile, so the cost of a commit and of
    a round trip is shared among them.

    A job row is committed before it is queued, so an id a client has seen is never lost; if
    the queue is unreachable the rows are taken back (the clients get 503 and no id), so a
    retry starts afresh and nothing runs behind a client's back.

    A request with an idempotency key (``Idempotency-Key``, else ``externalId``) seen before
    gets the job it created then, whatever became of it; the same key with other arguments or
    context is a conflict.

    ``announce``: publish each job's ``initialized`` and first status event before it is
    queued, so that no worker's event for it can come first. ``max_queued``: refuse (429) when
    the context already has that many jobs waiting; 0: no limit.

    ``cache``: answer the calls of functions deployed with ``cache`` from the result cache
    (a job recorded finished, or the job that ran); a call with ``follow`` may get
    ``Pending``, an identical call's job to wait for, and nothing is recorded for it.
    """
    try:
        outcomes = _record(catalog, store, queue, requests, max_queued, cache)
    except IntegrityError:
        # A concurrent submit (another gateway) took one of the keys between our read and our
        # insert; read again, and its job is found as the earlier one.
        outcomes = _record(catalog, store, queue, requests, max_queued, cache)
    fresh = [o for o in outcomes if isinstance(o, _Fresh)]
    failed = _fail_broken(store, fresh)
    try:
        _announce_and_queue(queue, [f for f in fresh if f.job.id not in failed], announce)
    except Exception as exc:
        # A job answered from the cache is complete already: only its events are lost.
        unqueued = {f.job.id for f in fresh if _queued(f) and f.job.id not in failed}
        _take_back(store, [f.job for f in fresh if f.job.id in unqueued], exc)
        unavailable = Unavailable("the job queue (Redis) is unavailable; the job was not "
                                  "queued; retry shortly")
        unavailable.__cause__ = exc
        return [unavailable if isinstance(o, _Fresh) and o.job.id in unqueued
                else _settled(o, failed) for o in outcomes]
    return [_settled(o, failed) for o in outcomes]


@dataclass(frozen=True)
class _Fresh:
    """A job this call created (as opposed to one found by its idempotency key)."""

    job: Job
    health: Health


@dataclass(frozen=True)
class _Checked:
    request: SubmitRequest
    target: SubmissionTarget
    arguments: Any
    key: str | None


Outcome = Job | SparkgateError | Pending
_Pending = Outcome | _Fresh


def _queued(fresh: _Fresh) -> bool:
    return fresh.job.status is JobStatus.QUEUED


def _settled(outcome: _Pending, failed: dict[str, Job]) -> Outcome:
    if isinstance(outcome, _Fresh):
        return failed.get(outcome.job.id, outcome.job)
    return outcome


def _record(catalog: Catalog, store: Store, queue: JobQueue,
            requests: Sequence[SubmitRequest], max_queued: int,
            cache: ResultCache | None) -> list[_Pending]:
    """Check every request and insert the accepted ones, in one transaction."""
    with writing(catalog.engine) as conn:
        checked = _check_all(catalog, conn, queue, requests, max_queued)
        keys = {c.key for c in checked if isinstance(c, _Checked) and c.key is not None}
        earlier = store.jobs_with_keys(conn, keys) if keys else {}
        outcomes: list[_Pending | int] = []
        new: dict[int, tuple[NewJob, Health]] = {}
        first_with_key: dict[str, int] = {}
        for i, c in enumerate(checked):
            if not isinstance(c, _Checked):
                outcomes.append(c)
            elif c.key in first_with_key:  # the same key twice in one batch: one job
                outcomes.append(first_with_key[c.key])
            elif c.key is not None and c.key in earlier:
                outcomes.append(_same_or_conflict(earlier[c.key], c))
            elif not isinstance(planned := _planned(cache, conn, c), NewJob):
                outcomes.append(planned)
            else:
                new[i] = (planned, c.target.health)
                outcomes.append(i)
                if c.key is not None:
                    first_with_key[c.key] = i
        created = store.insert_jobs(conn, [job for job, _ in new.values()]) if new else []
    fresh = {i: _Fresh(job, health)
             for (i, (_, health)), job in zip(new.items(), created, strict=True)}
    settled: list[_Pending] = []
    for i, outcome in enumerate(outcomes):
        if not isinstance(outcome, int):
            settled.append(outcome)
        elif outcome == i:
            settled.append(fresh[i])
        else:
            first = checked[i]
            assert isinstance(first, _Checked)
            settled.append(_same_or_conflict(fresh[outcome].job, first))
    return settled


def _check_all(catalog: Catalog, conn: Connection, queue: JobQueue,
               requests: Sequence[SubmitRequest],
               max_queued: int) -> list[_Checked | SparkgateError]:
    targets: dict[tuple[str, str | None], SubmissionTarget | SparkgateError] = {}
    checked: list[_Checked | SparkgateError] = []
    for request in requests:
        try:
            target = _target(catalog, conn, targets, request)
            arguments = checked_arguments(target, request.arguments)
            if max_queued:
                _check_room(queue, target, max_queued)
        except SparkgateError as exc:
            checked.append(exc)
            continue
        checked.append(_Checked(request, target, arguments, idempotency_digest(request)))
    return checked


def _target(catalog: Catalog, conn: Connection,
            cache: dict[tuple[str, str | None], SubmissionTarget | SparkgateError],
            request: SubmitRequest) -> SubmissionTarget:
    key = (request.function, request.context)
    if key not in cache:
        try:
            cache[key] = catalog.submission_target(conn, request.function, request.context)
        except SparkgateError as exc:
            cache[key] = exc
    found = cache[key]
    if isinstance(found, SparkgateError):
        raise found
    return found


def checked_arguments(target: SubmissionTarget, arguments: Any) -> Any:
    """``arguments`` as the function's job gets them; raises as a submit would (the function
    cannot run on the context's engine, or the arguments do not fit its signature)."""
    signature = _signature(target.function)
    check_placement(target.function.name, signature, target.context, "context")
    return _validated(signature, arguments)


def _signature(function: Function) -> Signature | None:
    return None if function.signature is None else Signature.from_dict(function.signature)


def _validated(signature: Signature | None, arguments: Any) -> Any:
    if signature is not None:
        return validate_arguments(signature, arguments)
    if not isinstance(arguments, dict):
        validate_arguments(Signature(handle=None, params=()), arguments)
    return arguments


def _planned(cache: ResultCache | None, conn: Connection,
             checked: _Checked) -> NewJob | Job | Pending:
    """The job to record for ``checked`` (queued, or finished from the result cache), the
    cached job itself (not to be recorded), or an identical call's job to wait for."""
    request, target = checked.request, checked.target
    new = _new_job(checked, request.job_id or uuid7())
    function = target.function
    if cache is not None:
        _note(cache, function)
    if cache is None or function.cache_ms is None:
        return new
    call = [target.artifact_sha1, target.context.name, checked.arguments]
    found = cache.look_up(conn, function, call, new.id, request.follow)
    if isinstance(found, Run):
        return new
    if isinstance(found, Pending):
        return found
    cache.index_call(function, request.context, request.arguments, found, _template(new))
    return _answer(request, new, found)


def record_answered(store: Store, queue: JobQueue, jobs: Sequence[NewJob]) -> list[Job]:
    """Jobs answered from the result cache's call index (created finished): inserted in one
    transaction, then announced (``initialized``, ``finished``) in one round trip."""
    with writing(store.engine) as conn:
        created = store.insert_jobs(conn, jobs)
    publish(queue.redis, *(event for job in created
                           for event in (initialized_event(job), lifecycle_event(job))))
    return created


def answer_call(request: SubmitRequest, found: CallHit) -> Job | NewJob:
    """What answers ``request`` from a hit of the call index: the job to record (finished),
    or with ``record`` false, the job that ran."""
    t = found.template
    new = NewJob(
        function=request.function, context=t["context"], arguments=t["arguments"],
        file_path=t["filePath"], class_name=t["className"], artifact_sha1=t["sha1"],
        source=request.source, start_timeout_ms=request.start_timeout_ms,
        perform_timeout_ms=request.perform_timeout_ms, submitter=request.submitter,
        schedule=request.schedule, callback_url=request.callback_url,
        id=request.job_id or uuid7())
    return _answer(request, new, found.hit)


def _answer(request: SubmitRequest, new: NewJob, hit: Hit) -> Job | NewJob:
    if request.record:
        return replace(new, status=JobStatus.FINISHED, result=hit.value(),
                       cached_from=hit.job_id)
    # The job that ran, as far as the answer needs it (not read: nothing is).
    return Job(id=hit.job_id, function=new.function, context=new.context,
               arguments=new.arguments, file_path=new.file_path, class_name=new.class_name,
               artifact_sha1=new.artifact_sha1, status=JobStatus.FINISHED, source=new.source,
               external_id=None, create_time=hit.end_ms, end_time=hit.end_ms,
               result=RawJSON(hit.result))


def _template(new: NewJob) -> dict[str, Any]:
    return {"context": new.context, "filePath": new.file_path, "className": new.class_name,
            "sha1": new.artifact_sha1, "arguments": new.arguments}


def _note(cache: ResultCache, function: Function) -> None:
    if function.cache_ms is None:
        cache.functions_cached.discard(function.name)
    else:
        cache.functions_cached.add(function.name)


def _new_job(checked: _Checked, job_id: str) -> NewJob:
    request, function, context = checked.request, checked.target.function, checked.target.context
    return NewJob(
        function=function.name, context=context.name, arguments=checked.arguments,
        file_path=function.path, class_name=function.class_name,
        artifact_sha1=checked.target.artifact_sha1, source=request.source,
        external_id=request.external_id,
        start_timeout_ms=job_timeout_ms(request.start_timeout_ms, context.start_timeout_s),
        perform_timeout_ms=job_perform_timeout_ms(request.perform_timeout_ms,
                                                  context.perform_timeout_s,
                                                  streaming=_declared_streaming(function)),
        submitter=request.submitter, idempotency_key=checked.key, schedule=request.schedule,
        callback_url=request.callback_url, id=job_id, environment=checked.target.environment,
    )


def _declared_streaming(function: Function) -> bool:
    """The function is declared to leave a stream running (Signature.streaming), read from the
    stored signature without parsing the rest of it."""
    return bool(function.signature and function.signature.get("streaming"))


def _fail_broken(store: Store, fresh: Sequence[_Fresh]) -> dict[str, Job]:
    """Jobs of broken contexts are recorded and failed at once: the client gets a job id whose
    error says what to do."""
    failed = {}
    for f in fresh:
        if f.health.broken and _queued(f):
            failed[f.job.id] = store.transition(
                f.job.id, JobStatus.FAILED, error=broken_message(f.job.context, f.health),
                end_time=now_ms())
    return failed


def _announce_and_queue(queue: JobQueue, fresh: Sequence[_Fresh], announce: bool) -> None:
    fresh = [f for f in fresh if announce or _queued(f)]
    if not fresh:
        return
    # The pipeline only collects the commands; they go as one transaction (jobs/redis_wire.py).
    with queue.redis.pipeline(transaction=False) as pipe:
        for f in fresh:
            if announce:
                add_events(pipe, initialized_event(f.job), lifecycle_event(f.job))
            if _queued(f):
                queue.enqueue(f.job.id, f.job.context, pipeline=pipe,
                              environment=f.job.environment)
        transaction(queue.redis, queued(pipe))


def idempotency_digest(request: SubmitRequest) -> str | None:
    """One key per (submitter, function, client key): two clients never share one."""
    key = request.idempotency_key or request.external_id
    if not key:
        return None
    scope = json.dumps([request.submitter or "anonymous", request.function, key])
    return hashlib.sha256(scope.encode()).hexdigest()


def _same_or_conflict(earlier: Job, checked: _Checked) -> Outcome:
    try:
        return _same_request(earlier, checked.request, checked.target.context.name,
                             checked.arguments)
    except Conflict as exc:
        return exc


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


def _check_room(queue: JobQueue, target: SubmissionTarget, max_queued: int) -> None:
    context = target.context.name
    waiting = queue.estimated_length(context, environment=target.environment)
    if waiting >= max_queued:
        raise TooManyRequests(
            f"context {context!r} has {waiting} jobs queued; the limit is "
            f"max_queued_per_context = {max_queued}; retry later",
            retry_after_s=QUEUE_FULL_RETRY_AFTER_S,
            details={"context": context, "queued": waiting, "limit": max_queued},
        )


def _take_back(store: Store, jobs: Sequence[Job], exc: Exception) -> None:
    """Undo jobs that could not be queued. Deleting them (their clients never saw the ids)
    lets a retry with the same idempotency key start afresh; if even that fails, failing
    them keeps them from running later behind their clients' backs."""
    ids = [j.id for j in jobs]
    try:
        store.delete_unqueued(ids)
    except Exception:
        log.exception("could not take back %d job(s) after a queue failure", len(ids))
        for job_id in ids:
            try:
                store.transition(job_id, JobStatus.FAILED, error=f"could not be queued: {exc}",
                                 end_time=now_ms())
            except Exception:
                log.exception("job %s stays queued; the reconciler will queue it", job_id)


def broken_message(context: str, health: Health) -> str:
    return (
        f"context {context!r} is broken: its workers failed {health.failures} times in a row "
        f"(last: {health.last_failure}). Fix its settings and update it "
        f"(PUT /v2/api/contexts/{context}) to repair it; its jobs fail until then."
    )
