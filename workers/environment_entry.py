"""A worker's way into its environment (jobs/environments.py): ``sparkgate worker
--environment ID`` started with any interpreter builds the environment on this host if it is
not built (from the requirements the database holds for that id), then becomes a worker
running in it, by executing itself again with the environment's interpreter (same pid, so
whoever started it, a supervisor or systemd, still watches the right process).

The build runs in the worker's process, not in the supervisor's: a build taking minutes holds
up no other context's workers. Like a running worker, a building one outlives neither its
supervisor nor a stop: it ends its installer with it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from sparkgate.jobs.catalog import Catalog
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.environments import Environments
from sparkgate.jobs.settings import Settings
from sparkgate.workers.process import PARENT_CHECK_S, end_children

log = logging.getLogger("sparkgate.worker")

#: A worker's exit status when its environment cannot be built on its host (sysexits'
#: EX_CONFIG): the supervisor counts it against that environment's jobs, not its context.
ENVIRONMENT_UNAVAILABLE = 78


def enter_environment(settings: Settings, environment: str,
                      supervisor_pid: int | None = None) -> None:
    """Return in the environment's interpreter (at once when this is it); else never return.
    ``supervisor_pid``: as the worker's own, a build ends when that process is gone."""
    environments = Environments.for_settings(settings)
    if in_environment(environments, environment):
        # Spark's Python workers (a UDF's, an RDD map's) run PYSPARK_PYTHON, by default the
        # python3 on PATH: on this host they need the environment too. An operator's own
        # setting (a cluster whose executors have another path) wins.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        return
    if not environments.is_built(environment):
        engine = make_engine(settings.resolved_database_url, pool_size=1)
        try:
            requirements = Catalog(engine, settings.context).environment_requirements(environment)
        finally:
            engine.dispose()
        log.info("building environment %s: %s", environment, " ".join(requirements))
        _end_build_with(supervisor_pid)
        environments.ensure(environment, requirements)
    python = str(environments.python(environment))
    # -P: as the supervisor starts workers, the current directory never shadows sparkgate.
    os.execv(python, [python, "-P", "-m", "sparkgate", *sys.argv[1:]])


def in_environment(environments: Environments, environment: str) -> bool:
    return Path(sys.prefix).resolve() == environments.path(environment).resolve()


def _end_build_with(supervisor_pid: int | None) -> None:
    """Until this process becomes the worker (exec), a stop signal or the supervisor's end
    ends the build (a folder without its marker, removed by the next builder)."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if supervisor_pid is not None:
        threading.Thread(target=_watch, args=(supervisor_pid,), name="supervisor-watch",
                         daemon=True).start()


def _watch(supervisor_pid: int) -> None:
    while os.getppid() == supervisor_pid:
        time.sleep(PARENT_CHECK_S)
    _end(1, f"its supervisor (pid {supervisor_pid}) is gone")


def _stop(signum: int, frame: FrameType | None) -> None:
    # A stop before the worker took any job: a clean exit, not a failure of the context.
    _end(0, f"stopped ({signal.Signals(signum).name})")


def _end(code: int, why: str) -> None:
    log.warning("environment build abandoned: %s", why)
    end_children()
    os._exit(code)
