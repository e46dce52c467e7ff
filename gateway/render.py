"""Domain objects as Mist's JSON (JobDetails, FunctionInfo, Context), plus sparkgate's extra
fields, which Mist's clients ignore.
"""

from __future__ import annotations

from typing import Any

from sparkgate.gateway.redaction import Redaction
from sparkgate.jobs.contexts import Context, Health
from sparkgate.jobs.durations import format_duration
from sparkgate.jobs.functions import Function
from sparkgate.jobs.signatures.model import Signature
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, oversized_marker

MIST_SOURCES = {"http": "Http", "cli": "Cli", "mqtt": "Async mqtt", "ws": "Async ws"}


def job_details(job: Job) -> dict[str, Any]:
    details: dict[str, Any] = {
        "jobId": job.id,
        "function": job.function,
        "context": job.context,
        "params": {
            "filePath": job.file_path,
            "className": job.class_name,
            "arguments": job.arguments,
            "action": "execute",
        },
        "status": job.status.value,
        "source": MIST_SOURCES.get(job.source, job.source),
        "createTime": job.create_time,
    }
    optional = {
        "externalId": job.external_id,
        "startTime": job.start_time,
        "endTime": job.end_time,
        "workerId": job.worker_id,
        "progress": job.progress,
        "startTimeout": job.start_timeout_ms,
        "performTimeout": job.perform_timeout_ms,
        # sparkgate's own: who submitted it ("key:<name>", "jwt:<subject>", "mqtt",
        # "anonymous"); absent on jobs from before it was recorded.
        "submitter": job.submitter,
    }
    details.update({k: v for k, v in optional.items() if v is not None})
    if job.status is JobStatus.FINISHED:
        details["jobResult"] = job.result
    elif job.error is not None:
        details["jobResult"] = job.error
    if job.oversized:
        _mark_oversized(details, job)
    return details


def _mark_oversized(details: dict[str, Any], job: Job) -> None:
    """Put a marker where each value a listing left out would be: an object (what Mist's
    clients expect of ``params.arguments``), and sparkgate's ``truncated`` naming the fields
    that hold markers, so a client never mistakes a marker for a value of that shape."""
    marked = []
    if "arguments" in job.oversized:
        details["params"]["arguments"] = oversized_marker(job.id, job.oversized["arguments"])
        marked.append("params.arguments")
    outcome = "result" if job.status is JobStatus.FINISHED else "error"
    if outcome in job.oversized:
        details["jobResult"] = oversized_marker(job.id, job.oversized[outcome])
        marked.append("jobResult")
    if marked:
        details["truncated"] = marked


def sync_response(job: Job) -> dict[str, Any]:
    """Mist's answer to ``force=true``."""
    if job.status is JobStatus.FINISHED:
        return {"success": True, "payload": job.result, "errors": []}
    if job.status is JobStatus.CANCELLED:
        return {"success": False, "payload": {}, "errors": [f"job {job.id} was cancelled"]}
    return {"success": False, "payload": {}, "errors": [job.error or "job failed"]}


def function_info(function: Function) -> dict[str, Any]:
    signature = Signature.from_dict(function.signature) if function.signature else None
    return {
        "name": function.name,
        "lang": function.lang,
        "execute": signature.to_mist_execute() if signature else {},
        "tags": function.tags,
        "path": function.path,
        "className": function.class_name,
        "defaultContext": function.default_context,
        # sparkgate's own: the same arguments as JSON Schema; null when deployed uninspected.
        "argumentsSchema": signature.to_json_schema() if signature else None,
    }


def context_info(context: Context, health: Health, redaction: Redaction) -> dict[str, Any]:
    return {
        "name": context.name,
        "sparkConf": redaction.shown(context.spark_conf),
        "maxJobs": context.max_jobs,
        "workerMode": context.worker_mode,
        "precreated": context.precreated,
        "downtime": format_duration(context.downtime_s),
        "maxConnFailures": context.max_conn_failures,
        "runOptions": context.run_options,
        "streamingDuration": format_duration(context.streaming_duration_s),
        # sparkgate's own: job timeout defaults, and how the context's workers are doing.
        "startTimeout": format_duration(context.start_timeout_s),
        "performTimeout": format_duration(context.perform_timeout_s),
        "state": "broken" if health.broken else "ok",
        "workerFailures": health.failures,
        "lastFailure": health.last_failure,
    }
