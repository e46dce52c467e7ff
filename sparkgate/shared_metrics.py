"""Where ``serve``'s gateway processes keep their per-process metrics, so that a scrape
answered by any one of them counts the requests of all (gateway/metrics.py, docs/metrics.md):
prometheus-client's multiprocess mode, in ``<data_dir>/metrics``. Each process writes its
values to files of its own there; a scrape reads them all.

prometheus-client chooses its mode once, as it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``: ``serve`` sets it before importing the gateway, and the gateway
processes it starts inherit it. The folder belongs to the ``serve`` that holds the data folder
(sparkgate/claims.py), which empties it as it starts: the counts of a ``serve`` start at 0.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def folder(data_dir: Path) -> Path:
    return data_dir.resolve() / "metrics"


def share(data_dir: Path) -> None:
    """``serve``, before anything imports prometheus_client: this process and the gateway
    processes it starts keep their metrics in ``folder(data_dir)``."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before serve chose its metrics "
                           "folder: its gateway processes would each count only their own")
    os.environ[ENV] = str(folder(data_dir))


def reset(data_dir: Path) -> None:
    """``serve``, once it holds the data folder and before any gateway starts: an empty
    folder (a killed ``serve`` may have left its processes' files)."""
    path = folder(data_dir)
    if os.environ.get(ENV) != str(path):
        return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def unshare(data_dir: Path) -> None:
    """A worker started by ``serve``'s supervisor inherits its environment: a function that
    uses prometheus_client itself keeps its metrics to itself, out of ``serve``'s folder."""
    if os.environ.get(ENV) == str(folder(data_dir)):
        del os.environ[ENV]
