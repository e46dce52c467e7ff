"""Load functions from artifacts: fetched from the database by sha1, cached on disk and in memory.

The cache is keyed by content (sha1), so a replaced artifact is a new entry and a job always
runs the code it was submitted with.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.catalog import Catalog
from jobs.errors import InvalidArtifact
from jobs.signatures import Signature, inspect_source


@dataclass(frozen=True)
class LoadedFunction:
    fn: Callable[..., Any]
    signature: Signature


class FunctionLoader:
    def __init__(self, catalog: Catalog, cache_dir: Path) -> None:
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
        if not file_path.endswith(".py"):
            raise InvalidArtifact(
                f"artifact {file_path!r} is not a .py file; only .py artifacts can be run",
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
        return LoadedFunction(fn=getattr(module, class_name), signature=signature)

    def _cached_file(self, sha1: str, file_path: str) -> Path:
        target = self.cache_dir / sha1 / Path(file_path).name
        if target.exists():
            return target
        content = self.catalog.artifact_content(sha1)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash never leaves a half-written file that looks cached.
        fd, tmp = tempfile.mkstemp(dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, target)
        return target
