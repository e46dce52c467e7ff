"""What the API answers, as typed, read-only values. Each keeps the JSON it was read from in
``raw``: fields a newer gateway adds are there before this client knows them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sparkgate_client.errors import ProtocolError

#: A job's ended statuses: it never changes again.
ENDED = frozenset({"finished", "failed", "cancelled"})


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"expected {what} as a JSON object, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class JobInfo:
    """A job as the gateway last answered it (Mist's ``JobDetails``). Times are epoch
    milliseconds."""

    id: str
    function: str
    context: str
    #: ``queued``, ``started``, ``cancelling``, ``finished``, ``failed`` or ``cancelled``.
    status: str
    arguments: Any
    source: str
    create_time: int
    start_time: int | None = None
    end_time: int | None = None
    worker_id: str | None = None
    external_id: str | None = None
    #: The function's result, once ``finished``; else None.
    result: Any = None
    #: Once ``failed``: the error text (``Type: message``, a blank line, the traceback), or
    #: why sparkgate ended the job. Once ``cancelled``: why, if sparkgate cancelled it itself.
    error: str | None = None
    #: What Spark has done for the job (stages, tasks, ``percent``), once a worker took it.
    progress: dict[str, Any] | None = None
    #: Who submitted it: ``key:<name>``, ``jwt:<subject>``, ``anonymous`` ...
    submitter: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def succeeded(self) -> bool:
        return self.status == "finished"

    @classmethod
    def from_json(cls, data: Any) -> JobInfo:
        job = _object(data, "a job")
        status = str(job.get("status", ""))
        outcome = job.get("jobResult")
        params = job.get("params")
        params = params if isinstance(params, dict) else {}
        error = None
        if status in ("failed", "cancelled") and outcome is not None:
            error = outcome if isinstance(outcome, str) else json.dumps(outcome)
        return cls(
            id=str(job.get("jobId", "")), function=str(job.get("function", "")),
            context=str(job.get("context", "")), status=status,
            arguments=params.get("arguments"), source=str(job.get("source", "")),
            create_time=int(job.get("createTime", 0)), start_time=job.get("startTime"),
            end_time=job.get("endTime"), worker_id=job.get("workerId"),
            external_id=job.get("externalId"),
            result=outcome if status == "finished" else None, error=error,
            progress=job.get("progress"), submitter=job.get("submitter"), raw=job,
        )


@dataclass(frozen=True)
class JobPage:
    """A page of a job listing, with how many jobs match in all."""

    jobs: list[JobInfo]
    total: int
    #: False when, beyond 10,000 matches on PostgreSQL, ``total`` is an estimate.
    total_exact: bool


@dataclass(frozen=True)
class FunctionInfo:
    """A deployed function (Mist's ``FunctionInfo``)."""

    name: str
    #: The artifact it is in.
    path: str
    class_name: str
    default_context: str
    #: Mist's argument map, ``{name: {"type": "MInt"}}``.
    execute: dict[str, Any]
    #: The arguments as JSON Schema; None for a function stored uninspected.
    arguments_schema: dict[str, Any] | None = None
    #: True for a Spark function; None for a function stored uninspected.
    needs_spark: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> FunctionInfo:
        info = _object(data, "a function")
        return cls(name=str(info.get("name", "")), path=str(info.get("path", "")),
                   class_name=str(info.get("className", "")),
                   default_context=str(info.get("defaultContext", "")),
                   execute=dict(info.get("execute") or {}),
                   arguments_schema=info.get("argumentsSchema"),
                   needs_spark=info.get("needsSpark"), raw=info)


@dataclass(frozen=True)
class ContextInfo:
    """A context: where jobs run (its Spark settings, its engine, how many jobs at once).
    Every field the API has is in ``raw`` (``sparkConf``, ``downtime``, timeouts ...)."""

    name: str
    #: ``spark`` or ``python``.
    engine: str
    max_jobs: int
    worker_mode: str
    #: ``ok``, or ``broken`` after its workers failed ``maxConnFailures`` times in a row.
    state: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> ContextInfo:
        info = _object(data, "a context")
        return cls(name=str(info.get("name", "")), engine=str(info.get("engine", "spark")),
                   max_jobs=int(info.get("maxJobs", 1)),
                   worker_mode=str(info.get("workerMode", "shared")),
                   state=str(info.get("state", "ok")), raw=info)


@dataclass(frozen=True)
class Artifact:
    """An uploaded artifact: its name and the SHA-1 of its content; read back
    (``Client.artifact``), also the Python requirements its functions run with and the id of
    their environment (None: sparkgate's own)."""

    name: str
    sha1: str
    requirements: tuple[str, ...] = ()
    environment: str | None = None


@dataclass(frozen=True)
class Event:
    """A job event (docs/api.md, Job events): ``name`` is ``queued``, ``started``,
    ``finished``, ``failed``, ``cancelled``, ``progress``, ``logs`` ...; ``data`` the event's
    JSON. ``seq`` is the stream's id for it (None for an end the client read from the job
    because the stream had missed it)."""

    name: str
    data: dict[str, Any]
    seq: str | None = None

    @property
    def job_id(self) -> str | None:
        value = self.data.get("id")
        return value if isinstance(value, str) else None

    @property
    def ended(self) -> bool:
        """A job's end: ``finished``, ``failed`` or ``cancelled``."""
        return self.name in ENDED

    @property
    def progress(self) -> dict[str, Any] | None:
        """A ``progress`` event's reading (jobs, stages, tasks, ``percent``)."""
        value = self.data.get("progress") if self.name == "progress" else None
        return value if isinstance(value, dict) else None

    @property
    def percent(self) -> float | None:
        """A ``progress`` event's ``percent`` (0.0 to 100.0)."""
        progress = self.progress
        value = None if progress is None else progress.get("percent")
        return float(value) if isinstance(value, (int, float)) else None
