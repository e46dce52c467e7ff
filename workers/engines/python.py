"""The python engine: plain functions in a plain Python process, no JVM, ready at once.

Spark cancels a job by cancelling its Spark jobs; a plain function has none, so a cancel (or a
performTimeout) raises :class:`JobInterrupted` in the job's thread instead, with CPython's
``PyThreadState_SetAsyncExc``. It lands at the function's next Python instruction: a function
blocked inside one long C call (a ``time.sleep(60)``, a socket read) does not see it until that
call returns, and one may catch it. The watchdog's grace and the worker's replacement, as on
Spark, bound what such a function can do.

An exception raised from outside lands wherever its thread is: between a lock's acquire and
the ``try`` that releases it, or in the bookkeeping that records the job's end. So it is sent
only while the thread is inside the function (``calling.running_function``, read from the
thread's stack under the GIL), and the watchdog's next tick sends it again if the function
caught it. Once the function has returned, nothing more is sent, and one sent just before
lands in ``call_function``, whose caller records it as the job's error.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparkgate.jobs.contexts import Context
from sparkgate.jobs.settings import Settings
from sparkgate.workers.calling import running_function
from sparkgate.workers.engines import NoProgress
from sparkgate.workers.progress import ProgressCallback
from sparkgate.workers.streaming import Following


class JobInterrupted(BaseException):
    """Raised in a job's thread to stop it. A BaseException, so that the ``except Exception``
    of a function's retry loop does not swallow it."""


def start(context: Context, scratch: Path, settings: Settings | None = None) -> PythonEngine:
    return PythonEngine()


class PythonEngine:
    def __init__(self) -> None:
        self.conf: dict[str, str] = {}  # nothing to set up
        self._threads: dict[str, int] = {}  # running job -> the ident of its thread
        self._lock = threading.Lock()

    def handle(self, kind: str) -> Any:
        # The gateway refuses Spark functions for python contexts; one deployed with
        # ?force=true (never inspected) still gets here.
        raise TypeError(f"the function takes a Spark handle ({kind}), but its context runs on "
                        f"engine 'python', which has no Spark: run it in a spark context")

    @contextlib.contextmanager
    def running(self, job_id: str, title: str, slot: int,
                following: Following | None = None) -> Iterator[None]:
        thread = threading.get_ident()
        with self._lock:
            self._threads[job_id] = thread
        try:
            yield
        finally:
            with self._lock:
                del self._threads[job_id]
                # An interruption sent as the function returned must not hit what this
                # thread runs next: clear it while no cancel can send another.
                _send(thread, None)

    def follow(self, job_id: str, value: Any) -> Any:
        return value  # no Spark, so no stream: what a function returns is its result

    def cancel(self, job_id: str) -> None:
        with self._lock:
            thread = self._threads.get(job_id)
            if thread is not None and running_function(sys._current_frames().get(thread)):
                _send(thread, JobInterrupted)

    def progress(self, on_progress: ProgressCallback) -> NoProgress:
        return NoProgress()

    def stop(self) -> None:
        pass


def _send(thread: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in ``thread`` at its next instruction; None clears a pending one."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                               ctypes.py_object(exc) if exc else None)
