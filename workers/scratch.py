"""Each worker's scratch folder: its temp files, Spark's and the JVM's, in one place it owns.

Left to their defaults, Spark (``spark-*``, ``blockmgr-*``), the JVM (native libraries) and
Python put them under /tmp, where a killed worker leaves them for good. Under
``<data_dir>/tmp/worker-<pid>`` the worker removes them as it ends, and whoever finds the
folder of a worker that is gone (killed before it could) removes it: the supervisor after its
workers stop, ``serve`` as it starts.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

import psutil

log = logging.getLogger("sparkgate.worker")

PREFIX = "worker-"


def scratch_root(data_dir: Path) -> Path:
    return data_dir.resolve() / "tmp"


def scratch_dir(data_dir: Path, pid: int) -> Path:
    return scratch_root(data_dir) / f"{PREFIX}{pid}"


def use_scratch(path: Path) -> None:
    """Make ``path`` this process's temp folder, and its children's (TMPDIR), removed when
    the process exits (``os._exit()`` and kills aside: their callers remove it)."""
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    atexit.register(remove_scratch, path)


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sweep_scratch(data_dir: Path) -> None:
    """Remove the scratch folders of workers that are gone."""
    root = scratch_root(data_dir)
    if not root.is_dir():
        return
    for path in root.glob(f"{PREFIX}*"):
        pid = path.name.removeprefix(PREFIX)
        if not (pid.isdigit() and psutil.pid_exists(int(pid))):
            log.info("removing %s, left by a worker that was killed", path)
            remove_scratch(path)
