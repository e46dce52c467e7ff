"""Per-artifact environments: a virtualenv per set of requirements, built once per host under
``<data_dir>/environments/<id>/`` and reused by every artifact that names the same set
(docs/environments.md).

An environment sits on top of sparkgate's own interpreter (``--system-site-packages``, plus a
``.pth`` for the case where that interpreter is itself a virtualenv): pyspark and sparkgate come
from there, the artifact's packages from the environment, whose site-packages come first.

Packages are installed with pip, wheels only (``--only-binary :all:``): no package's code runs
at install time, so deploying does not run uploaded code in the gateway. pip rather than uv:
pip honours the operator's pip configuration (indexes, find-links, constraint files) as it is,
and it ships with the interpreter, so no new dependency is needed.

Built once: builders of one id take a lock (``flock``: the kernel releases it if the builder
dies); the ``.built`` marker is written last, and only a folder with it is used. A folder without
it is a build that died, removed by the next builder. The venv is built in its final folder,
not renamed into it: a virtualenv is not relocatable (its scripts name their folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import site
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sparkgate.jobs.errors import EnvironmentBuildFailed
from sparkgate.jobs.settings import Settings

MARKER = ".built"
# The end of an installer's output that an error message carries: where pip says what failed.
MESSAGE_MAX_CHARS = 3000


@dataclass(frozen=True)
class Environments:
    """The environments of one host, and how their packages are installed."""

    root: Path
    index_url: str | None = None
    no_index: bool = False
    find_links: tuple[str, ...] = ()
    timeout_s: float = Settings.environment_build_timeout_s

    @classmethod
    def for_settings(cls, settings: Settings) -> Environments:
        return cls(settings.data_dir.resolve() / "environments", settings.environment_index_url,
                   settings.environment_no_index, settings.environment_find_links,
                   settings.environment_build_timeout_s)

    def path(self, environment: str) -> Path:
        return self.root / environment

    def python(self, environment: str) -> Path:
        return self.path(environment) / "bin" / "python"

    def is_built(self, environment: str) -> bool:
        return (self.path(environment) / MARKER).exists()

    def ensure(self, environment: str, requirements: Sequence[str]) -> bool:
        """Build ``environment`` with ``requirements`` unless it is built; True if this call
        built it. EnvironmentBuildFailed with the installer's message if it cannot be."""
        if self.is_built(environment):
            return False
        with self._lock(environment):
            if self.is_built(environment):  # another process built it while we waited
                return False
            self._build(self.path(environment), requirements)
        return True

    @contextlib.contextmanager
    def _lock(self, environment: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f".{environment}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _build(self, path: Path, requirements: Sequence[str]) -> None:
        shutil.rmtree(path, ignore_errors=True)  # a build that died half-way
        deadline = time.monotonic() + self.timeout_s
        try:
            self._run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                       str(path)], "creating the virtualenv", deadline)
            _inherit_site_packages(path)
            self._run([str(path / "bin" / "python"), "-m", "pip", *self._install_options(),
                       "--", *requirements], "installing " + " ".join(requirements), deadline)
            (path / MARKER).write_text("\n".join(requirements) + "\n")
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def _install_options(self) -> list[str]:
        """pip's configuration applies as it is; the settings only add to it."""
        options = ["install", "--only-binary", ":all:", "--no-input",
                   "--disable-pip-version-check", "--no-warn-script-location"]
        if self.no_index:
            options.append("--no-index")
        elif self.index_url:
            options += ["--index-url", self.index_url]
        for link in self.find_links:
            options += ["--find-links", link]
        return options

    def _run(self, command: list[str], what: str, deadline: float) -> None:
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=max(0.0, deadline - time.monotonic()),
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise _failed(f"{what} took longer than environment_build_timeout_s "
                          f"({self.timeout_s:g}s)") from None
        if done.returncode != 0:
            output = (done.stderr.strip() or done.stdout.strip())[-MESSAGE_MAX_CHARS:]
            raise _failed(f"{what} failed: {output}")


def _inherit_site_packages(path: Path) -> None:
    """Make this interpreter's site-packages (sparkgate, pyspark...) visible in the new
    environment after its own, even when this interpreter is itself a virtualenv, whose
    packages ``--system-site-packages`` would not reach. ``addsitedir`` also reads their
    ``.pth`` files (an editable install's)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    purelib = path / "lib" / version / "site-packages"
    lines = [f"import site; site.addsitedir({d!r})" for d in site.getsitepackages()]
    (purelib / "_sparkgate_base.pth").write_text("\n".join(lines) + "\n")


def _failed(message: str) -> EnvironmentBuildFailed:
    return EnvironmentBuildFailed(f"requirements: {message}", {"field": "requirements"})


def worker_python(environments: Environments, environment: str | None) -> str:
    """The interpreter a worker for ``environment`` runs with (None: sparkgate's own)."""
    return sys.executable if environment is None else str(environments.python(environment))
