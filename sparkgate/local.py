"""Running a function on this machine exactly as deployed (``sparkgate run --local``,
``sparkgate.testing``).

Each step is the deployed code's own: the file is checked and its signature read as an upload
and a function's creation do (``jobs/deployment.py``), the arguments checked as a submit does
(``validate_arguments``, same errors), the file imported by the worker's ``FunctionLoader``
(from a cached copy, as ``sparkgate_artifact_<sha1>``, with nothing added to ``sys.path``) and
called by the worker's ``call_function`` on the engine it asks for, started as a worker starts
it: the python engine for a plain function (no JVM), the spark engine (a worker's session,
``local[*]``, no UI) for one that takes a Spark handle, the first time one does.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkgate.arguments import parse_arguments
from sparkgate.jobs.contexts import Context
from sparkgate.jobs.deployment import checked_code, default_limits, signature_of
from sparkgate.jobs.errors import BadRequest, InvalidArtifact
from sparkgate.jobs.settings import ContextDefaults, Settings, load_settings
from sparkgate.jobs.signatures.validation import validate_arguments
from sparkgate.workers.artifacts import FunctionLoader
from sparkgate.workers.calling import call_function, describe_error
from sparkgate.workers.engines import Engine, starter

if TYPE_CHECKING:  # pyspark is imported only when a function takes a Spark handle
    from pyspark.sql import SparkSession


def parse_target(target: str) -> tuple[Path, str]:
    """``FILE:FUNCTION`` (``examples/pi.py:pi``; ``mypkg.zip:mypkg.jobs.pi`` for a package)."""
    path, _, function = target.rpartition(":")
    if not path or not function:
        raise BadRequest(f"expected FILE.py:FUNCTION, got {target!r}")
    return Path(path), function


class FunctionFailed(Exception):
    """The function raised, or returned what a job cannot store; ``text`` is the error the job
    would have recorded."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def run_target(target: str, args_json: str | None, pairs: Sequence[str]) -> Any:
    """``sparkgate run --local``: the result of ``FILE:FUNCTION`` called with ``--args`` and
    ``--arg`` in this process. Raises BadRequest where the gateway would refuse the function
    or the arguments, ConfigError if its engine cannot start (no Java), FunctionFailed where
    the job would fail."""
    path, function = parse_target(target)
    runner = local_runner()
    checked = runner.check(path, function, parse_arguments(args_json, pairs))
    local_engine(checked.engine)  # started first, as a worker's is: not a failure of the job
    try:
        return runner.call(checked)
    except (Exception, SystemExit) as exc:  # a worker records a sys.exit() as a failure too
        raise FunctionFailed(describe_error(exc)) from exc


@dataclass(frozen=True)
class Checked:
    """A call that passed the gateway's checks: what a submitted job records."""

    sha1: str
    file_name: str
    function: str
    arguments: dict[str, Any]  # as validate_arguments returned them
    engine: str  # the one the function needs: spark for a Spark function, else python


class LocalRunner:
    """Loads and runs functions from files; like a worker, it imports each version of a file
    once and keeps its module (and its module-level state) for the runner's life."""

    def __init__(self, cache_dir: Path,
                 max_result_bytes: int = Settings.max_result_bytes) -> None:
        self._files = _LocalFiles()
        self.loader = FunctionLoader(self._files, cache_dir)
        self.max_result_bytes = max_result_bytes

    def run(self, path: Path, function: str, arguments: object) -> Any:
        """The result as a job would store it. Raises BadRequest where the gateway refuses
        (InvalidArtifact for the file or function, InvalidArguments for the arguments, with
        the gateway's messages), and what the function raises as it is."""
        return self.call(self.check(path, function, arguments))

    def check(self, path: Path, function: str, arguments: object) -> Checked:
        """The checks an upload, a function's creation and a submit make; nothing is imported
        or run."""
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise InvalidArtifact(f"cannot read {str(path)!r}: {exc.strerror}",
                                  {"file": str(path)}) from None
        code = checked_code(path.name, content, default_limits(content))
        signature = signature_of(code, function, path.name)
        checked_arguments = validate_arguments(signature, arguments)
        return Checked(self._files.add(content), path.name, function, checked_arguments,
                       "spark" if signature.needs_spark else "python")

    def call(self, checked: Checked) -> Any:
        """Import (once) and call a checked function on its engine, as a worker does."""
        loaded = self.loader.load(checked.sha1, checked.file_name, checked.function)
        return call_function(loaded, checked.arguments, local_engine(checked.engine),
                             self.max_result_bytes)


class _LocalFiles:
    """The artifact bytes of the files a runner has read, by sha1, for its FunctionLoader."""

    def __init__(self) -> None:
        self._by_sha1: dict[str, bytes] = {}

    def add(self, content: bytes) -> str:
        sha1 = hashlib.sha1(content).hexdigest()
        self._by_sha1[sha1] = content
        return sha1

    def artifact_content(self, sha1: str) -> bytes:
        return self._by_sha1[sha1]


@functools.cache
def local_folder() -> Path:
    """This process's folder for the files it reads (``artifact-cache``) and its engines'
    temporary files (``scratch``), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="sparkgate-local-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def local_runner() -> LocalRunner:
    return LocalRunner(local_folder() / "artifact-cache")


@functools.cache
def local_engine(name: str) -> Engine:
    """This process's engine ``name`` (settings.ENGINES), started on first use as a worker of
    a context named ``local`` with the default settings starts it, and shared from then on.
    A Spark one maps Spark's classes from the machine's class archive, if a serve has built
    it (workers/class_archive.py): a local run never builds one."""
    context = Context.from_defaults("local", ContextDefaults(engine=name))
    return starter(name)(context, local_folder() / "scratch", load_settings())


def local_spark() -> SparkSession:
    """The session a Spark function gets here: its handle from this process's spark engine (a
    JVM start, seconds, the first time)."""
    session: SparkSession = local_engine("spark").handle("session")
    return session
