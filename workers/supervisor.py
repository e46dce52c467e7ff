"""Keep a worker process alive for each context that needs one, on this host.

A context needs a worker while it is the ``default`` context, is ``precreated``, or has jobs
waiting in its queue. A worker that exits is started again while it is needed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from jobs.catalog import DEFAULT_CONTEXT, Catalog
from jobs.queue import JobQueue
from jobs.settings import Settings

log = logging.getLogger("sparkgate.supervisor")

CHECK_INTERVAL_S = 0.5
STOP_GRACE_S = 30.0


def worker_environment(settings: Settings, redis_url: str,
                       config_path: Path | None) -> dict[str, str]:
    """What a worker process needs to find the same database, Redis and settings as us.

    Explicit values win over the settings file in the worker, as they did here (an embedded
    Redis has a URL only this process knows).
    """
    env = {"SPARKGATE_DATABASE_URL": settings.resolved_database_url,
           "SPARKGATE_REDIS_URL": redis_url,
           "SPARKGATE_DATA_DIR": str(settings.data_dir.resolve())}
    if config_path is not None:
        env["SPARKGATE_CONFIG"] = str(config_path.resolve())
    return env


class Supervisor:
    def __init__(self, catalog: Catalog, queue: JobQueue, worker_env: dict[str, str],
                 log_dir: Path) -> None:
        self.catalog = catalog
        self.queue = queue
        self.worker_env = worker_env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.check()
            except Exception:
                log.exception("supervisor check failed; trying again")
            self.stopping.wait(CHECK_INTERVAL_S)

    def check(self) -> None:
        for name in sorted(self.needed() | set(self.processes)):
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                log.warning("worker for context %s exited with code %s", name,
                            process.returncode)
                del self.processes[name]
            if name in self.needed() and name not in self.processes:
                self.processes[name] = self._spawn(name)

    def needed(self) -> set[str]:
        wanted = {DEFAULT_CONTEXT} | set(self.queue.contexts_with_work())
        wanted |= {c.name for c in self.catalog.list_contexts() if c.precreated}
        return wanted

    def _spawn(self, context: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = (self.log_dir / f"worker-{context}.log").open("ab")
        log.info("starting a worker for context %s (log: %s)", context, logfile.name)
        command = [sys.executable, "-m", "workers", "--context", context]
        env = {**os.environ, **self.worker_env}
        return subprocess.Popen(command, env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def stop(self) -> None:
        """Ask every worker to drain and stop; kill those still running after the grace."""
        self.stopping.set()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("worker for context %s did not stop in %ss; killing it", name,
                            STOP_GRACE_S)
                process.kill()
                process.wait()
