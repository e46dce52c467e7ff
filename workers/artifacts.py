"""Load functions from artifacts: fetched from the database by sha1, cached on disk and in memory.

The cache is keyed by content (sha1), so a replaced artifact is a new entry and a job always
runs the code it was submitted with.

- A ``.py`` artifact is imported as its own module, ``sparkgate_artifact_<sha1>``: two versions
  of one file never share a module.
- A package (``.zip``, ``.egg``, ``.whl``) is unpacked once per sha1 into ``<cache>/<sha1>/``
  (through a temporary folder renamed into place, so a half-written one is never used; every
  path checked by ``jobs.archives`` again) and imported under its own names (``mypkg``), as
  its code expects (``from mypkg.helpers import ...``). Python has one ``sys.modules``, so one
  worker holds one version of a package name at a time: loading another sha1 of it first
  removes ``mypkg`` and ``mypkg.*`` from ``sys.modules`` (under a process-wide lock), then
  imports the new one. Functions already loaded from the old version keep their own module
  globals and go on running the old code; only an import the old code makes later, while
  running (``import mypkg.extra`` inside a function), would see the new version. A package
  name that is already importable in the worker otherwise (installed, or sparkgate's own)
  is refused rather than shadowed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from sparkgate.jobs.archives import ArchiveLimits, is_package, top_level_names, unpack
from sparkgate.jobs.errors import InvalidArtifact
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.signatures.model import Signature
from sparkgate.jobs.signatures.reading import inspect_package, inspect_source


@dataclass(frozen=True)
class LoadedFunction:
    """A function, its signature, and (a package's) the modules that define the classes its
    arguments are typed with, by name: imported with it, so that they are the same version."""

    fn: Callable[..., Any]
    signature: Signature
    modules: Mapping[str, ModuleType] = field(default_factory=dict)


class ArtifactContents(Protocol):
    """Where artifact bytes come from: the catalog in a worker, the file itself in a local
    run (sparkgate/local.py), which so imports it exactly as a worker does."""

    def artifact_content(self, sha1: str) -> bytes: ...


class FunctionLoader:
    def __init__(self, catalog: ArtifactContents, cache_dir: Path) -> None:
        self.catalog = catalog
        self.cache_dir = cache_dir
        self._loaded: dict[tuple[str, str], LoadedFunction] = {}
        self._lock = threading.Lock()

    def load(self, sha1: str, file_path: str, class_name: str) -> LoadedFunction:
        key = (sha1, class_name)
        with self._lock:
            # One lock for all: importing user code twice at once could run it twice.
            if key not in self._loaded:
                self._loaded[key] = self._load(sha1, file_path, class_name)
            return self._loaded[key]

    def _load(self, sha1: str, file_path: str, class_name: str) -> LoadedFunction:
        if is_package(file_path):
            return self._load_package(sha1, file_path, class_name)
        if not file_path.endswith(".py"):
            raise InvalidArtifact(
                f"artifact {file_path!r} is neither a .py file nor a package (.zip, .egg, .whl)",
                {"artifact": file_path},
            )
        path = self._cached_file(sha1, file_path)
        source = path.read_text(encoding="utf-8")
        signature = inspect_source(source, class_name, file_path)
        module_name = f"sparkgate_artifact_{sha1}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        # Registered before exec so dataclasses/pickling inside user code can find the module.
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _shipped_by_value([module_name])
        return LoadedFunction(fn=getattr(module, class_name), signature=signature)

    def _cached_file(self, sha1: str, file_path: str) -> Path:
        target = self.cache_dir / sha1 / Path(file_path).name
        if target.exists():
            return target
        content = self._content(sha1)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash never leaves a half-written file that looks cached.
        fd, tmp = tempfile.mkstemp(dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, target)
        return target

    def _content(self, sha1: str) -> bytes:
        content = self.catalog.artifact_content(sha1)
        if hashlib.sha1(content).hexdigest() != sha1:
            raise InvalidArtifact(f"artifact content stored as {sha1} has another sha1",
                                  {"sha1": sha1})
        return content

    # -- packages ----------------------------------------------------------------------------

    def _load_package(self, sha1: str, file_path: str, class_name: str) -> LoadedFunction:
        root = self._unpacked(sha1, file_path)

        def read(path: str) -> bytes | None:
            file = root / path
            return file.read_bytes() if file.is_file() else None

        signature = inspect_package(read, class_name, file_path)
        module_name, _, attribute = class_name.rpartition(".")
        defining = sorted(signature.class_modules())
        module, *modules = PACKAGES.import_from(root, [module_name, *defining], file_path)
        _shipped_by_value(top_level_names(_relative_files(root)))
        return LoadedFunction(fn=getattr(module, attribute), signature=signature,
                              modules=dict(zip(defining, modules, strict=True)))

    def _unpacked(self, sha1: str, file_path: str) -> Path:
        target = self.cache_dir / sha1
        if target.is_dir():
            return target
        content = self._content(sha1)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=f".{sha1}-"))
        try:
            # Stored archives were checked on upload with the configured limits; these are
            # never smaller than this archive needs, and the checks run again regardless.
            limits = ArchiveLimits.for_artifact_bytes(
                max(len(content), Settings.max_artifact_bytes))
            unpack(file_path, content, limits, tmp)
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():  # not a worker on the same host that got there first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target


def _shipped_by_value(module_names: Iterable[str]) -> None:
    """Have Spark ship the artifact's own functions to its executors by value.

    A function handed to Spark (a UDF, ``mapInPandas``, ``rdd.map``) is pickled with pyspark's
    cloudpickle, which sends a module-level function *by reference* (its module's name) when
    that module is imported: Spark's Python worker processes then fail to import the
    artifact's module, which only this process has. By value, its code goes along. Only where
    Spark is (pyspark imported by the worker or by the artifact): importing pyspark costs a
    python engine's worker more than it would ever use.
    """
    if "pyspark" not in sys.modules:
        return
    from pyspark import cloudpickle

    for name in module_names:
        if name in sys.modules:
            cloudpickle.register_pickle_by_value(sys.modules[name])


class _PackageRoots(importlib.abc.MetaPathFinder):
    """Which unpacked folder each package name is imported from, in this process: a finder
    first on ``sys.meta_path`` that answers only for names it was given."""

    def __init__(self) -> None:
        self.roots: dict[str, Path] = {}
        self.lock = threading.Lock()
        self._installed = False

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        root = self.roots.get(fullname)
        if root is None or path is not None:
            return None  # not ours; submodules are found through the package's __path__
        return importlib.machinery.PathFinder.find_spec(fullname, [str(root)])

    def import_from(self, root: Path, module_names: Sequence[str],
                    artifact: str) -> list[ModuleType]:
        """``module_names`` imported from ``root``, all under one lock: of the same version."""
        with self.lock:
            if not self._installed:
                sys.meta_path.insert(0, self)
                self._installed = True
            for name in sorted(top_level_names(_relative_files(root))):
                self._switch(name, root, artifact)
            return [importlib.import_module(name) for name in module_names]

    def _switch(self, name: str, root: Path, artifact: str) -> None:
        current = self.roots.get(name)
        if current == root:
            return
        if current is None:
            _refuse_shadowing(name, artifact)
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        self.roots[name] = root
        importlib.invalidate_caches()


PACKAGES = _PackageRoots()


def _relative_files(root: Path) -> list[str]:
    """The names at the root of an unpacked package, as archive paths (``mypkg/``, ``tool.py``)."""
    return [f"{p.name}/" if p.is_dir() else p.name for p in root.iterdir()]


def _refuse_shadowing(name: str, artifact: str) -> None:
    elsewhere = sys.modules.get(name)
    where = getattr(elsewhere, "__file__", None) or ("already loaded" if elsewhere else None)
    if where is None:
        if name in sys.builtin_module_names:
            where = "built in"
        else:
            spec = importlib.machinery.PathFinder.find_spec(name)
            where = None if spec is None else (spec.origin or "a namespace package")
    if where is not None:
        raise InvalidArtifact(
            f"artifact {artifact!r} brings the top-level module {name!r}, but the worker can "
            f"already import {name!r} ({where}); sparkgate does not shadow it: rename the "
            "package",
            {"artifact": artifact, "module": name, "existing": str(where)},
        )
