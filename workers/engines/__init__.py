"""Execution engines: what a worker runs its context's jobs on (the context's ``engine``).

An engine is one module, ``sparkgate.workers.engines.<name>``, named in ``settings.ENGINES``.
Its ``start(context, scratch, settings)`` builds what the jobs share (a SparkSession, or
nothing) and returns an :class:`Engine`. The module is imported only by a worker of that
engine, so a python worker never imports pyspark (nor starts a JVM).
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from sparkgate.jobs.contexts import Context
from sparkgate.jobs.settings import Settings
from sparkgate.workers.progress import ProgressCallback
from sparkgate.workers.streaming import Following


class Progress(Protocol):
    """Follows running jobs and reports their progress (workers/progress.py for Spark)."""

    def watch(self, job_id: str) -> None: ...

    def ending(self, job_id: str) -> dict[str, Any] | None:
        """What was seen of the job whose function returned, for its end (no waiting)."""

    def ended(self, job_id: str) -> None:
        """Its end is recorded: report the final counts later, if they differ."""

    def close(self) -> None: ...


class Engine(Protocol):
    # The settings the engine was built with, as the workers API shows them (sparkConf).
    conf: dict[str, str]

    def handle(self, kind: str) -> Any:
        """What a function whose signature takes a handle of ``kind`` gets first."""

    def running(self, job_id: str, title: str, slot: int,
                following: Following | None = None) -> AbstractContextManager[None]:
        """The scope of a job's function call, in the thread that runs it. ``following``
        hears of a stream the job's function starts (docs/streaming.md)."""

    def follow(self, job_id: str, value: Any) -> Any:
        """What the job's function returned (``value``) comes to, in its ``running`` scope: the
        value itself, or, for a stream the function left running, what that stream ends with
        once it ends (docs/streaming.md). Raises what ends the job otherwise."""

    def cancel(self, job_id: str) -> None:
        """Interrupt the job, if it is running; the watchdog calls it again at each tick of the
        job's grace, so it must be cheap when there is nothing (left) to interrupt."""

    def progress(self, on_progress: ProgressCallback) -> Progress: ...

    def stop(self) -> None: ...


class Starter(Protocol):
    def __call__(self, context: Context, scratch: Path,
                 settings: Settings | None = None) -> Engine:
        """``settings``: the worker's (None: the engine's own defaults, as for a local run)."""


def starter(name: str) -> Starter:
    """The ``start`` of the engine ``name`` (one of settings.ENGINES)."""
    module = importlib.import_module(f"{__name__}.{name}")
    start: Starter = module.start
    return start


class NoProgress:
    """For engines with nothing to report while a job runs: its progress stays null."""

    def watch(self, job_id: str) -> None:
        pass

    def ending(self, job_id: str) -> None:
        return None

    def ended(self, job_id: str) -> None:
        pass

    def close(self) -> None:
        pass
