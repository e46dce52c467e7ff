"""A job on the wire: Mist's JobDetails (plus who submitted it, and listings' size markers), a
page of them, and what a submit answers: the job's id (async), Mist's answer to a synchronous
run (``force=true``), or where to follow a job that ``wait=`` did not see end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparkgate.gateway.wire.fields import ABSENT, Absent, schema_of, wire
from sparkgate.gateway.wire.schema import ANY, STRING, TIME_MS, array, ref
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, oversized_marker

MIST_SOURCES = {"http": "Http", "cli": "Cli", "mqtt": "Async mqtt", "ws": "Async ws",
                "schedule": "Schedule"}
_MARKED_INSTEAD = ("in a listing, a `Truncated` marker instead when larger than "
                   "listing_value_max_bytes")
_MILLISECONDS = {"type": "integer", "description": "milliseconds"}


@dataclass(slots=True)
class JobParams:
    file_path: str = wire("filePath", STRING)
    class_name: str = wire("className", STRING)
    arguments: Any = wire("arguments", ANY, description=f"the arguments; {_MARKED_INSTEAD}")
    action: str = wire("action", {"const": "execute"})


@dataclass(slots=True)
class JobDetails:
    job_id: str = wire("jobId", STRING)
    function: str = wire("function", STRING)
    context: str = wire("context", STRING)
    params: JobParams = wire("params", JobParams)
    status: str = wire("status", {"enum": [s.value for s in JobStatus]})
    source: str = wire("source", STRING,
                       description="`Http`, `Cli`, `Async mqtt`, `Async ws`, `Schedule`")
    create_time: int = wire("createTime", TIME_MS)
    external_id: str | Absent = wire("externalId", STRING, optional=True)
    start_time: int | Absent = wire("startTime", TIME_MS, optional=True)
    end_time: int | Absent = wire("endTime", TIME_MS, optional=True)
    worker_id: str | Absent = wire("workerId", STRING, optional=True)
    progress: dict[str, Any] | Absent = wire("progress", ref("Progress"), optional=True)
    start_timeout_ms: int | Absent = wire("startTimeout", _MILLISECONDS, optional=True)
    perform_timeout_ms: int | Absent = wire("performTimeout", _MILLISECONDS, optional=True)
    # sparkgate's own; absent on jobs from before it was recorded.
    submitter: str | Absent = wire("submitter", STRING, optional=True, description=(
        "*sparkgate*: who submitted it: `key:<name>`, `jwt:<subject>`, `mqtt` or `anonymous`"))
    cached_from: str | Absent = wire("cachedFrom", STRING, optional=True, description=(
        "*sparkgate*: answered from the result cache (docs/caching.md) without running: the "
        "job that ran, whose result this one repeats"))
    schedule: str | Absent = wire("schedule", STRING, optional=True, description=(
        "*sparkgate*: the schedule that created it (a tick, or a run now)"))
    job_result: Any = wire("jobResult", ANY, optional=True, description=(
        f"the result when finished; the error text when failed; {_MARKED_INSTEAD}"))
    truncated: list[str] | Absent = wire("truncated", {
        "type": "array", "uniqueItems": True, "items": {"enum": ["params.arguments", "jobResult"]},
    }, optional=True, description="*sparkgate*, listings only: the fields holding a "
                                  "`Truncated` marker")

    @classmethod
    def of(cls, job: Job) -> JobDetails:
        """A listing leaves out values too big to list (``job.oversized``): a marker stands
        where each would be (an object, which Mist's clients expect of ``params.arguments``),
        and ``truncated`` names the fields that hold markers, so a client never mistakes a
        marker for a value of that shape."""
        marked = []
        arguments: Any = job.arguments
        if "arguments" in job.oversized:
            arguments = oversized_marker(job.id, job.oversized["arguments"])
            marked.append("params.arguments")
        outcome = "result" if job.status is JobStatus.FINISHED else "error"
        job_result: Any = job.result if outcome == "result" else job.error
        if outcome in job.oversized:
            job_result = oversized_marker(job.id, job.oversized[outcome])
            marked.append("jobResult")
        elif job_result is None and outcome == "error":
            job_result = ABSENT
        return cls(
            job_id=job.id, function=job.function, context=job.context,
            params=JobParams(job.file_path, job.class_name, arguments, "execute"),
            status=job.status.value, source=MIST_SOURCES.get(job.source, job.source),
            create_time=job.create_time, job_result=job_result, truncated=marked or ABSENT,
            **_given(external_id=job.external_id, start_time=job.start_time,
                     end_time=job.end_time, worker_id=job.worker_id, progress=job.progress,
                     start_timeout_ms=job.start_timeout_ms,
                     perform_timeout_ms=job.perform_timeout_ms, submitter=job.submitter,
                     cached_from=job.cached_from, schedule=job.schedule))


def _given(**values: Any) -> dict[str, Any]:
    """Optional fields: those that are None are left out."""
    return {name: value for name, value in values.items() if value is not None}


@dataclass(slots=True)
class SyncResult:
    success: bool = wire("success", {"type": "boolean"})
    payload: Any = wire("payload", ANY)
    errors: list[str] = wire("errors", array(STRING))

    @classmethod
    def of(cls, job: Job) -> SyncResult:
        if job.status is JobStatus.FINISHED:
            return cls(True, job.result, [])
        if job.status is JobStatus.CANCELLED:
            return cls(False, {}, [f"job {job.id} was cancelled"])
        return cls(False, {}, [job.error or "job failed"])


@dataclass(slots=True)
class JobPage:
    jobs: list[dict[str, Any]] = wire("jobs", array(ref("JobDetails")))
    total: int = wire("total", {"type": "integer", "minimum": 0})
    # sparkgate's own.
    total_exact: bool = wire("totalExact", {"type": "boolean"}, description=(
        "*sparkgate*: false when, beyond 10,000 matches, total is PostgreSQL's estimate"))


@dataclass(slots=True)
class JobId:
    id: str = wire("id", STRING)


@dataclass(slots=True)
class WaitPending:
    id: str = wire("id", STRING)
    status: str = wire("status", {"enum": [s.value for s in JobStatus if not s.terminal]})
    url: str = wire("url", STRING)

    @classmethod
    def of(cls, job: Job) -> WaitPending:
        return cls(job.id, job.status.value, f"/v2/api/jobs/{job.id}")


JOB_DETAILS = schema_of(JobDetails, "Mist's JobDetails; fields other than the first seven are "
                                    "left out while empty")
SYNC_RESULT = schema_of(SyncResult, "Mist's answer to force=true")
JOB_PAGE = schema_of(JobPage)
JOB_ID = schema_of(JobId, "async submit: the job is queued")
WAIT_PENDING = schema_of(WaitPending, "wait= ran out before the job ended")
