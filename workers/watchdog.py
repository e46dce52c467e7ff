"""Deadlines of running jobs: performTimeout, and the grace a job gets after it is interrupted.

The engine interrupts a job (Spark cancels its job group, the python engine raises in its
thread), but a function can still go on: one stuck in pure Python ignores Spark's cancel, one
inside a long C call does not see the python engine's. So an interrupted job gets
``cancel_grace_s`` to end by itself; past that the watchdog reports it overdue and the worker
abandons it (the job is ended in the database, the worker replaced), which bounds the time to
a terminal state.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sparkgate.jobs.timeouts import past, perform_deadline

log = logging.getLogger("sparkgate.worker")

TICK_S = 0.1


class Interruption(enum.Enum):
    CANCEL = "cancel"
    TIMEOUT = "timeout"


@dataclass
class _Watch:
    perform_deadline: float | None  # time.monotonic()
    interrupted: Interruption | None = None
    grace_deadline: float | None = None


class Watchdog:
    def __init__(self, interrupt: Callable[[str], None],
                 on_overdue: Callable[[str, Interruption], None], cancel_grace_s: float) -> None:
        """``interrupt(job_id)`` is the engine's cancel of the job; ``on_overdue`` is called
        once, from the watchdog's thread, for a job still running after its grace."""
        self._interrupt_job = interrupt
        self._on_overdue = on_overdue
        self._grace_s = cancel_grace_s
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def started(self, job_id: str, perform_timeout_ms: int | None) -> None:
        deadline = perform_deadline(perform_timeout_ms, time.monotonic())
        with self._lock:
            self._watches[job_id] = _Watch(deadline)

    def unbound(self, job_id: str) -> bool:
        """Drop the job's perform deadline (a stream that only its context's default bounds);
        False if it is not watched or already interrupted."""
        with self._lock:
            watch = self._watches.get(job_id)
            if watch is None or watch.interrupted is not None:
                return False
            watch.perform_deadline = None
            return True

    def ended(self, job_id: str) -> Interruption | None:
        """Stop watching; why the job was interrupted, if it was. A job that ends past its
        deadline timed out, though it ended before a tick noticed (performTimeout=0 always)."""
        now = time.monotonic()
        with self._lock:
            watch = self._watches.pop(job_id, None)
        if watch is None:
            return None
        if watch.interrupted is None and past(watch.perform_deadline, now):
            return Interruption.TIMEOUT
        return watch.interrupted

    def cancel(self, job_id: str) -> bool:
        """Interrupt a job on request; False if it is not running here."""
        return self._interrupt(job_id, Interruption.CANCEL)

    def close(self) -> None:
        self._stop.set()

    def _interrupt(self, job_id: str, why: Interruption) -> bool:
        with self._lock:
            watch = self._watches.get(job_id)
            if watch is None:
                return False
            if watch.interrupted is None:
                watch.interrupted = why
                watch.grace_deadline = time.monotonic() + self._grace_s
        log.info("interrupting job %s (%s)", job_id, why.value)
        self._interrupt_job(job_id)
        return True

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            timed_out, interrupted, overdue = self._due(time.monotonic())
            for job_id in timed_out:
                self._interrupt(job_id, Interruption.TIMEOUT)
            # Spark cancels only the group's active jobs: one the function starts after the
            # interruption (or while its first is still being planned) is cancelled here. The
            # python engine raises again, in case the function caught the first one.
            for job_id in interrupted:
                self._interrupt_job(job_id)
            for job_id, why in overdue:
                self._report(job_id, why)

    def _due(self, now: float) -> tuple[list[str], list[str], list[tuple[str, Interruption]]]:
        """Jobs past their perform deadline, jobs interrupted within their grace, and
        interrupted jobs past their grace (which stop being watched: each is reported once)."""
        with self._lock:
            timed_out = [job_id for job_id, w in self._watches.items()
                         if w.interrupted is None and past(w.perform_deadline, now)]
            interrupted = [job_id for job_id, w in self._watches.items()
                           if w.interrupted is not None and not past(w.grace_deadline, now)]
            overdue = [(job_id, w.interrupted) for job_id, w in self._watches.items()
                       if w.interrupted is not None and past(w.grace_deadline, now)]
            for job_id, _ in overdue:
                del self._watches[job_id]
        return timed_out, interrupted, overdue

    def _report(self, job_id: str, why: Interruption) -> None:
        try:
            self._on_overdue(job_id, why)
        except Exception:
            log.exception("handling overdue job %s failed", job_id)
