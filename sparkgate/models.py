"""Models from a function: the one import from sparkgate a function ever needs, and only for
this::

    from sparkgate import models

    def train(spark, rows: int) -> str:
        ...
        return models.save("churn", fitted)   # a new version, live at once: its sha256

    def score(tenure: int, plan: str) -> float:
        model = models.load("churn")          # the live version, loaded once per worker
        ...

``load`` gives the live version's object from a per-process cache. The first call in a worker
reads and unpickles it; after that a call costs a dict lookup: when the cached entry is older
than ``check_every_s`` (1 s), a background thread reads the live version's sha (one
primary-key row) and, if another version went live (a newer one, or a roll back), unpickles it
and swaps it in. So no request pays a load after the first, and a promotion reaches every
worker within about a second, without Redis (``sparkgate run --local`` has none) and with no
polling at all while a worker is idle. A notification on promote (pub/sub) would reach them
sooner but needs a listener thread per worker and still a check at start; a second of delay is
what a model rollout can take.

Loading runs code: ``pickle`` executes what the bytes say. The store takes versions only from
jobs of this sparkgate and from admins (docs/models.md); never load a model from elsewhere.

The store is found through ``use``, which the worker process calls at start: a process-wide
setting, since a function reaches it through a bare import. A process that never called it
(``sparkgate run --local``, ``sparkgate.testing``, a notebook) gets the database of its
settings (``SPARKGATE_CONFIG``, ``SPARKGATE_*``) at its first save or load.
"""

from __future__ import annotations

import logging
import pickle
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparkgate.gateway.wire.schema import NAME
from sparkgate.jobs.db import make_engine
from sparkgate.jobs.models import ModelStore
from sparkgate.jobs.settings import load_settings

__all__ = ["Live", "live", "load", "save", "use"]

log = logging.getLogger("sparkgate.models")

CHECK_EVERY_S = 1.0
_NAME = re.compile(NAME)


def use(store: ModelStore, job_of_thread: Callable[[], str | None] = lambda: None,
        check_every_s: float = CHECK_EVERY_S) -> None:
    """Save to and load from ``store`` in this process, forgetting what was loaded before.
    ``job_of_thread``: the job the calling thread runs, if any; a version it saves is recorded
    as that job's ("job:<id>"), else as "local"."""
    global _models
    _models = _Models(store, job_of_thread, check_every_s)


def save(name: str, obj: Any, live: bool = True) -> str:
    """Pickle ``obj`` as a version of the model ``name`` and make it live (unless ``live`` is
    false: promote it later through the API). Returns the version (its content's sha256)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"model name: expected letters, digits, '_', '.', '-' (starting with a "
                         f"letter or digit, no '..', at most 255 characters), got {name!r}")
    return _configured().save(name, obj, live)


def load(name: str) -> Any:
    """The live version of the model ``name``, unpickled once per process and version."""
    return _configured().load(name).value


@dataclass(frozen=True)
class Live:
    """A model's live version as this process holds it: ``value`` is what ``load`` gives."""

    version: str
    value: Any


def live(name: str) -> Live:
    """As ``load``, with the version (its sha256) the object is, to say which model answered."""
    loaded = _configured().load(name)
    return Live(loaded.sha256, loaded.value)


@dataclass
class _Loaded:
    sha256: str
    value: Any
    checked_at: float


class _Models:
    def __init__(self, store: ModelStore, job_of_thread: Callable[[], str | None],
                 check_every_s: float) -> None:
        self.store = store
        self.job_of_thread = job_of_thread
        self.check_every_s = check_every_s
        self.loaded: dict[str, _Loaded] = {}
        # Held through a first load, so that concurrent first calls load once.
        self.loading = threading.Lock()
        # Held only to start one check at a time: never waits for a load.
        self.checking = threading.Lock()

    def save(self, name: str, obj: Any, live: bool) -> str:
        content = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        job = self.job_of_thread()
        created_by = "local" if job is None else f"job:{job}"
        return self.store.save(name, content, created_by, live).sha256

    def load(self, name: str) -> _Loaded:
        loaded = self.loaded.get(name)
        if loaded is None:
            return self._first_load(name)
        if time.monotonic() - loaded.checked_at >= self.check_every_s:
            self._check_soon(name, loaded)
        return loaded

    def _first_load(self, name: str) -> _Loaded:
        with self.loading:
            loaded = self.loaded.get(name)
            if loaded is None:
                loaded = self.loaded[name] = self._read(name, self._live(name))
        return loaded

    def _live(self, name: str) -> str:
        sha256 = self.store.live_version(name)
        if sha256 is None:
            raise LookupError(f"model {name!r} has no live version: promote one first")
        return sha256

    def _read(self, name: str, sha256: str) -> _Loaded:
        started = time.perf_counter()
        # Runs code: only versions from this sparkgate's jobs and admins (docs/models.md).
        value = pickle.loads(self.store.content(name, sha256))
        log.info("model %s: loaded version %s in %.0f ms", name, sha256[:12],
                 (time.perf_counter() - started) * 1000)
        return _Loaded(sha256, value, time.monotonic())

    def _check_soon(self, name: str, loaded: _Loaded) -> None:
        # The check's start counts as a check: the calls meanwhile start no other. A time, not
        # a "checking" flag, so that nothing can leave it stuck (on the python engine a cancel
        # is an exception that may land between any two instructions of the job's thread).
        with self.checking:
            if time.monotonic() - loaded.checked_at < self.check_every_s:
                return
            loaded.checked_at = time.monotonic()
        threading.Thread(target=self._check, args=(name, loaded), daemon=True,
                         name=f"model-check-{name}").start()

    def _check(self, name: str, loaded: _Loaded) -> None:
        """In the background: swap in the live version if it is no longer the loaded one."""
        try:
            sha256 = self._live(name)
            if sha256 != loaded.sha256:
                self.loaded[name] = self._read(name, sha256)
        except Exception:  # the database is away, the bytes do not unpickle: keep serving
            log.warning("model %s: could not check for a new live version; keeping %s", name,
                        loaded.sha256[:12], exc_info=True)
        finally:
            loaded.checked_at = time.monotonic()


_models: _Models | None = None
_configuring = threading.Lock()


def _configured() -> _Models:
    global _models
    with _configuring:
        if _models is None:
            # Outside a worker (sparkgate run --local, sparkgate.testing, a notebook): the
            # database of this machine's settings, read as `sparkgate serve` reads them, so a
            # function run here saves and loads the models of the sparkgate it deploys to;
            # prepared as serve prepares it (an embedded SQLite may not exist yet).
            from sparkgate.jobs.migrate import prepare_database

            settings = load_settings()
            prepare_database(settings.resolved_database_url)
            _models = _Models(ModelStore(make_engine(settings.resolved_database_url),
                                         settings.max_model_bytes), lambda: None, CHECK_EVERY_S)
        return _models
