"""What a job that ran out of time is told, the same wherever its timeout is noticed."""

from __future__ import annotations


def start_timeout_message(context: str, waited_ms: int, start_timeout_ms: int | None) -> str:
    return (f"start timeout: waited {waited_ms} ms in the queue of context {context!r}, "
            f"longer than its startTimeout of {start_timeout_ms} ms")


def perform_timeout_message(perform_timeout_ms: int | None) -> str:
    return (f"performTimeout exceeded: the job ran longer than its {perform_timeout_ms} ms "
            "and was cancelled")
