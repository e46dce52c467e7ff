"""Cancelling a job: a queued one is cancelled outright; a started one passes through
``cancelling`` while its worker cancels the job's Spark job group.
"""

from __future__ import annotations

from sparkgate.jobs.db import now_ms
from sparkgate.jobs.errors import Conflict, IllegalTransition
from sparkgate.jobs.publishing import send_control
from sparkgate.jobs.queue import JobQueue
from sparkgate.jobs.state import JobStatus
from sparkgate.jobs.store import Job, Store


def cancel(store: Store, queue: JobQueue, job_id: str) -> Job:
    job = store.get_job(job_id)
    if job.status is JobStatus.QUEUED:
        try:
            job = store.transition(job_id, JobStatus.CANCELLED, end_time=now_ms())
            queue.remove(job_id, job.context, job.environment)
            return job
        except IllegalTransition:
            job = store.get_job(job_id)  # a worker took it meanwhile
    if job.status is JobStatus.STARTED:
        try:
            job = store.transition(job_id, JobStatus.CANCELLING, only_from={JobStatus.STARTED})
        except IllegalTransition:
            job = store.get_job(job_id)  # it ended meanwhile
        else:
            send_control(queue.redis, job.worker_id or "", {"cancel": job_id})
            return job
    if job.status is JobStatus.CANCELLING:
        return job
    raise Conflict(f"job {job_id} is already {job.status.value}; it cannot be cancelled",
                   {"jobId": job_id, "status": job.status.value})
