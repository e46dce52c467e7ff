"""A worker on the wire: Mist's WorkerLink (``name``, ``address``, ``initInfo``) plus its live
state, from the record it announces in Redis."""

from __future__ import annotations

from dataclasses import dataclass

from sparkgate.gateway.redaction import Redaction
from sparkgate.gateway.wire.contexts import SPARK_CONF
from sparkgate.gateway.wire.fields import schema_of, wire
from sparkgate.gateway.wire.schema import INT, STRING, TIME_MS, array
from sparkgate.jobs.worker_registry import WorkerRecord


@dataclass(slots=True)
class WorkerInit:
    spark_conf: dict[str, str] = wire("sparkConf", SPARK_CONF)
    max_jobs: int = wire("maxJobs", INT)
    worker_mode: str = wire("workerMode", STRING)


@dataclass(slots=True)
class WorkerInfo:
    name: str = wire("name", STRING)
    address: str = wire("address", STRING)
    context: str = wire("context", STRING)
    init_info: WorkerInit = wire("initInfo", WorkerInit)
    started_at: int = wire("startedAt", TIME_MS)
    uptime_ms: int = wire("uptimeMs", INT)
    heartbeat_at: int = wire("heartbeatAt", TIME_MS)
    running_jobs: list[str] = wire("runningJobs", array(STRING), description=(
        "the running jobs the caller may see (a submit key: its own)"))
    # sparkgate's own: every running job, the caller's or not (how busy the worker is).
    running_job_count: int = wire("runningJobCount", INT,
                                  description="every running job, the caller's or not")
    jobs_done: int = wire("jobsDone", INT)
    state: str = wire("state", {"enum": ["running", "draining"]})
    drain_reason: str | None = wire("drainReason", {"type": ["string", "null"]})
    environment: str | None = wire("environment", {"type": ["string", "null"]}, description=(
        "the id of the Python environment it runs in (docs/environments.md); null: the base"))

    @classmethod
    def of(cls, record: WorkerRecord, redaction: Redaction, now_ms: int,
           visible_jobs: set[str] | None = None) -> WorkerInfo:
        """``visible_jobs``: the running jobs the caller may see (None: all)."""
        running = record.running_jobs
        return cls(
            name=record.id,
            address=f"{record.host}:{record.pid}",
            context=record.context,
            init_info=WorkerInit(redaction.shown(record.spark_conf), record.max_jobs,
                                 record.worker_mode),
            started_at=record.started_at,
            uptime_ms=now_ms - record.started_at,
            heartbeat_at=record.heartbeat_at,
            running_jobs=[j for j in running if visible_jobs is None or j in visible_jobs],
            running_job_count=len(running),
            jobs_done=record.jobs_done,
            state=record.state,
            drain_reason=record.drain_reason,
            environment=record.environment,
        )


WORKER = schema_of(WorkerInfo, "Mist's WorkerLink plus live state")
