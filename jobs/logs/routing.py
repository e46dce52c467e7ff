"""Where a job thread's output is diverted to its job: stand-ins for sys.stdout/sys.stderr and a
root logging handler. Both look the calling thread up in one dict (thread id -> the buffer of
the job it runs); a thread that is not bound writes through to the original stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, TextIO

from sparkgate.jobs.logs.buffers import JobBuffer
from sparkgate.jobs.logs.lines import LogLine, mist_level


class NullStream:
    """Stands in for a missing sys.stdout/sys.stderr (``None`` under pythonw)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class RoutingStream:
    """sys.stdout/sys.stderr stand-in: a bound thread's text goes to its job, others' through."""

    def __init__(self, target: TextIO | None, bound: dict[int, JobBuffer], stream: int) -> None:
        self.target: Any = target if target is not None else NullStream()
        self._bound = bound
        self._stream = stream

    def stop_routing(self) -> None:
        """From now on every write goes to the original stream (after uninstall)."""
        self._bound = {}

    def write(self, text: str) -> int:
        buf = self._bound.get(threading.get_ident())
        if buf is None:
            return self.target.write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            buf.write(self._stream, text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        # A partial line stays partial until its newline or the job's end: a flush (print's
        # flush=True) only pushes the original stream.
        if threading.get_ident() not in self._bound:
            self.target.flush()

    def isatty(self) -> bool:
        # A job's output ends up in a log, not on a terminal: no colours or redrawn bars there.
        if threading.get_ident() in self._bound:
            return False
        return bool(getattr(self.target, "isatty", lambda: False)())

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return getattr(self.target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:
        return getattr(self.target, "errors", None) or "strict"

    def __getattr__(self, name: str) -> Any:  # fileno, buffer, closed, ... of the original
        return getattr(self.target, name)


def _is_py4j(logger_name: str) -> bool:
    return logger_name == "py4j" or logger_name.startswith("py4j.")


class JobLogHandler(logging.Handler):
    """Root handler: a record made in a bound thread becomes a line of that thread's job."""

    def __init__(self, bound: dict[int, JobBuffer]) -> None:
        super().__init__()
        self._bound = bound
        self.setFormatter(logging.Formatter("%(message)s"))

    def handle(self, record: logging.LogRecord) -> Any:
        # Overridden to skip logging.Handler's handler-wide lock, which every thread that logs
        # would take in turn; the job buffer has its own lock.
        buf = self._bound.get(threading.get_ident())
        if buf is None:
            return False  # not a job's thread: left to the worker's normal handlers
        # py4j logs every JVM call at DEBUG ("Command to send: ...", "Answer received: ...")
        # in the thread that makes it, so a worker run at DEBUG would bury each job's own lines
        # under thousands of protocol lines per Spark action. Those are dropped here (they still
        # reach the worker's own handlers); py4j's INFO and above (a connection lost, an error
        # while receiving) are rare and tell the job's reader why it failed, so they are kept.
        # User loggers are not filtered: a DEBUG record that their level lets through is kept.
        if record.levelno < logging.INFO and _is_py4j(record.name):
            return False
        accepted = self.filter(record)
        if not accepted:
            return False
        if isinstance(accepted, logging.LogRecord):  # Python 3.12+ filters may swap the record
            record = accepted
        self._add(buf, record)
        return accepted

    def emit(self, record: logging.LogRecord) -> None:
        buf = self._bound.get(threading.get_ident())
        if buf is not None:
            self._add(buf, record)

    def _add(self, buf: JobBuffer, record: logging.LogRecord) -> None:
        try:
            message = self.format(record).rstrip("\r\n")
        except Exception:  # logging's contract: a bad record is reported, never raised
            self.handleError(record)  # its report goes to sys.stderr: to this job's log
            return
        line = LogLine(int(record.created * 1000), mist_level(record.levelno), message)
        with buf.lock:
            buf.append(line)
