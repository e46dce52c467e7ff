"""A job's two time limits, decided here wherever they are enforced.

- ``startTimeout``: how long a job may wait in its queue. The reconciler fails queued jobs past
  it; a worker that claims one late fails it instead of running it (``missed_start``).
- ``performTimeout``: how long a job may run. Its worker's watchdog interrupts it at its
  deadline (``perform_deadline``, ``past``), and the job fails saying so, even if its function
  returned a result just after (``perform_timeout_message``).

Each is the submission's own, else its context's default (``job_timeout_ms``); None: no limit.
"""

from __future__ import annotations

from typing import Protocol


class _Queued(Protocol):
    @property
    def context(self) -> str: ...
    @property
    def create_time(self) -> int: ...
    @property
    def start_timeout_ms(self) -> int | None: ...


def job_timeout_ms(requested_ms: int | None, context_default_s: int | None) -> int | None:
    """A new job's limit: the one its submission asked for, else its context's."""
    if requested_ms is not None:
        return requested_ms
    return None if context_default_s is None else context_default_s * 1000


def job_perform_timeout_ms(requested_ms: int | None, context_default_s: int | None,
                           streaming: bool) -> int | None:
    """A new job's performTimeout. A streaming function's job (docs/streaming.md) runs as long
    as its stream: only its submission's own performTimeout bounds it."""
    return job_timeout_ms(requested_ms, None if streaming else context_default_s)


def missed_start(job: _Queued, at_ms: int) -> str | None:
    """The error of a job that, at ``at_ms``, has waited longer than its startTimeout; None
    while it is in time."""
    waited_ms = at_ms - job.create_time
    if job.start_timeout_ms is None or waited_ms <= job.start_timeout_ms:
        return None
    return (f"start timeout: waited {waited_ms} ms in the queue of context {job.context!r}, "
            f"longer than its startTimeout of {job.start_timeout_ms} ms")


def perform_deadline(perform_timeout_ms: int | None, started: float) -> float | None:
    """When a job started at ``started`` (``time.monotonic()``) runs out of time; None: never."""
    return None if perform_timeout_ms is None else started + perform_timeout_ms / 1000


def past(deadline: float | None, now: float) -> bool:
    """Whether ``now`` is at or past ``deadline`` (so a performTimeout of 0 always is)."""
    return deadline is not None and now >= deadline


def perform_timeout_message(perform_timeout_ms: int | None) -> str:
    return (f"performTimeout exceeded: the job ran longer than its {perform_timeout_ms} ms "
            "and was cancelled")


def abandoned_message(perform_timeout_ms: int | None) -> str:
    """The error of a timed-out job that ignored its interruption past its grace."""
    return (perform_timeout_message(perform_timeout_ms)
            + "; it did not stop, so its worker was replaced")
