"""The job state machine: Mist's status names and the moves allowed between them.

Every change of a job's status goes through ``jobs.store.Store.transition``, which turns
``ALLOWED_SOURCES[target]`` into one conditional UPDATE, so of two racing changes (start vs.
cancel, two workers) exactly one wins.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    CANCELLING = "cancelling"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED})

# target -> the statuses a job may be in to move there.
ALLOWED_SOURCES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.STARTED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLING: frozenset({JobStatus.STARTED}),
    JobStatus.FINISHED: frozenset({JobStatus.STARTED, JobStatus.CANCELLING}),
    # queued -> failed: start timeout, broken context, lost from the queue.
    JobStatus.FAILED: frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.CANCELLING}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED, JobStatus.CANCELLING}),
}

# Mist's full list, for the API's status filter; sparkgate never stores the other three.
MIST_STATUSES = (
    "initialized", "queued", "started", "job-file-downloading",
    "cancelling", "finished", "cancelled", "failed",
)


def allowed(current: JobStatus, target: JobStatus) -> bool:
    return current in ALLOWED_SOURCES.get(target, frozenset())
