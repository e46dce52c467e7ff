"""Per-job log capture in a worker that runs several jobs at once, one Python thread each.

A job's log holds what the job's own thread said — ``logging`` records, ``print`` output, writes
to ``sys.stderr`` — plus the lifecycle lines the worker adds with :meth:`JobLogCapture.add`.
Nothing another thread says (the worker's own, a neighbour job's) ever lands in it; that output
keeps going where it went before :meth:`JobLogCapture.install`.

How: ``install()`` puts two routing streams in ``sys.stdout``/``sys.stderr`` and one handler on
the root logger. Both look the calling thread up in one dict (thread id → job buffer) that
:meth:`JobLogCapture.job` fills while a job runs. A thread that is not bound pays one dict lookup
and writes through to the original stream; a bound thread appends to its own job's buffer under
that buffer's short lock — no lock is shared by all jobs. A background thread hands each job's
complete lines to the sink every ``flush_interval_s``, and a job's last lines are handed over
when its ``job()`` block ends.

Levels: ``print`` output is INFO, ``sys.stderr`` output is ERROR (as container log collectors
treat the two streams), logging records keep their own level (WARNING → WARN, CRITICAL → ERROR).

Known limits:

- Threads that a job starts itself are not bound: their prints go to the worker's own
  stdout/stderr and their log records to the worker's own handlers, not to the job's log.
- Only writes through ``sys.stdout``/``sys.stderr`` are seen. Output written to the file
  descriptors directly (the JVM and log4j, C extensions, subprocesses), to ``sys.__stdout__``,
  to ``sys.stdout.buffer``, or to a stream object fetched before ``install()`` is not captured.
- A logging record is captured only if it reaches the root logger (``propagate``) and passes
  its logger's effective level: the worker sets the root level it wants jobs to log at.
  Records from a bound thread also still reach the worker's other handlers.
- A ``StreamHandler`` created *after* ``install()`` writes into the routing stream, so a record
  that also propagates to the root shows up twice in the job's log. The worker configures its
  own logging before ``install()``, so its handlers hold the original streams.
- Each job buffers at most ``max_buffered_lines`` lines while the sink is behind or failing;
  past that the oldest are dropped and a WARN line says how many.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from sparkgate.jobs.logs import LogLine, mist_level

Sink = Callable[[str, list[LogLine]], None]

#: Level of a line written to sys.stdout / sys.stderr by a job's thread.
STREAM_LEVELS = ("INFO", "ERROR")
_STDOUT, _STDERR = 0, 1
#: A line longer than this without a newline (progress bars redrawn with "\r") is cut here.
MAX_PARTIAL_CHARS = 64 * 1024

# One capture may own sys.stdout/sys.stderr at a time: a second one would wrap the first.
_install_lock = threading.Lock()
_installed: JobLogCapture | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _JobBuffer:
    """One job's lines waiting for the sink, and the unterminated tail of each stream."""

    __slots__ = (
        "binders",
        "dropped",
        "idle",
        "in_flight",
        "job_id",
        "lines",
        "lock",
        "max_lines",
        "partial",
        "partial_chars",
        "retired",
    )

    def __init__(self, job_id: str, max_lines: int) -> None:
        self.job_id = job_id
        self.max_lines = max_lines
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified when a sink call for it ends
        self.lines: deque[LogLine] = deque()
        self.dropped = 0
        self.partial: tuple[list[str], list[str]] = ([], [])  # stdout, stderr fragments
        self.partial_chars = [0, 0]
        self.binders = 0  # job() blocks open on it
        self.in_flight = False  # a sink call holds lines taken from it
        self.retired = False  # removed from the registry: nothing may be added any more

    # Every method below runs with self.lock held, except write().

    def append(self, line: LogLine) -> None:
        if len(self.lines) >= self.max_lines:
            self.lines.popleft()
            self.dropped += 1
        self.lines.append(line)

    def write(self, stream: int, text: str) -> None:
        ts = _now_ms()
        with self.lock:
            fragments = self.partial[stream]
            if "\n" not in text:
                fragments.append(text)
                self.partial_chars[stream] += len(text)
                if self.partial_chars[stream] >= MAX_PARTIAL_CHARS:
                    self.end_partial(stream, ts)
                return
            pieces = text.split("\n")
            if fragments:
                fragments.append(pieces[0])
                pieces[0] = "".join(fragments)
                fragments.clear()
            level = STREAM_LEVELS[stream]
            for piece in pieces[:-1]:
                self.append(LogLine(ts, level, piece.rstrip("\r")))
            if pieces[-1]:
                fragments.append(pieces[-1])
            self.partial_chars[stream] = len(pieces[-1])

    def end_partial(self, stream: int, ts: int) -> None:
        fragments = self.partial[stream]
        if fragments:
            self.append(LogLine(ts, STREAM_LEVELS[stream], "".join(fragments).rstrip("\r")))
            fragments.clear()
        self.partial_chars[stream] = 0

    def end_partials(self, ts: int) -> None:
        self.end_partial(_STDOUT, ts)
        self.end_partial(_STDERR, ts)

    def take(self) -> tuple[list[LogLine], int]:
        batch = list(self.lines)
        self.lines.clear()
        dropped, self.dropped = self.dropped, 0
        return batch, dropped

    def put_back(self, batch: list[LogLine], dropped: int) -> None:
        """Lines the sink refused go back in front of the newer ones, within the bound."""
        kept = batch + list(self.lines)
        excess = len(kept) - self.max_lines
        if excess > 0:
            del kept[:excess]
            dropped += excess
        self.lines = deque(kept)
        self.dropped += dropped

    def is_done(self) -> bool:
        return not (
            self.binders or self.in_flight or self.lines or self.dropped or any(self.partial)
        )


class _NullStream:
    """Stands in for a missing sys.stdout/sys.stderr (``None`` under pythonw)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _RoutingStream:
    """sys.stdout/sys.stderr stand-in: a bound thread's text goes to its job, others' through."""

    def __init__(self, target: TextIO | None, bound: dict[int, _JobBuffer], stream: int) -> None:
        self.target: Any = target if target is not None else _NullStream()
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


class _JobLogHandler(logging.Handler):
    """Root handler: a record made in a bound thread becomes a line of that thread's job."""

    def __init__(self, bound: dict[int, _JobBuffer]) -> None:
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

    def _add(self, buf: _JobBuffer, record: logging.LogRecord) -> None:
        try:
            message = self.format(record).rstrip("\r\n")
        except Exception:  # logging's contract: a bad record is reported, never raised
            self.handleError(record)  # its report goes to sys.stderr: to this job's log
            return
        line = LogLine(int(record.created * 1000), mist_level(record.levelno), message)
        with buf.lock:
            buf.append(line)


class JobLogCapture:
    """Routes each job thread's output to that job's log lines, delivered to ``sink``.

    ``sink(job_id, lines)`` stores the lines (oldest first); it is called from the flusher
    thread, or from the job's thread when its ``job()`` block ends, never with a lock of this
    class held, and never twice at once for one job (so one job's lines arrive in order).
    """

    def __init__(
        self, sink: Sink, flush_interval_s: float = 0.5, max_buffered_lines: int = 10_000
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, not {flush_interval_s}")
        if max_buffered_lines < 1:
            raise ValueError(f"max_buffered_lines must be >= 1, not {max_buffered_lines}")
        self._sink = sink
        self._flush_interval_s = flush_interval_s
        self._max_lines = max_buffered_lines
        self._bound: dict[int, _JobBuffer] = {}  # thread id -> buffer of the job it runs
        self._jobs: dict[str, _JobBuffer] = {}  # job id -> buffer, while it has anything
        self._lock = threading.Lock()  # guards _jobs changes, _closed, _flusher
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._streams: tuple[_RoutingStream, _RoutingStream] | None = None
        self._originals: tuple[TextIO, TextIO] | None = None
        self._sink_failing = False
        self.handler: logging.Handler = _JobLogHandler(self._bound)

    # -- process-wide hooks ------------------------------------------------------------------

    def install(self) -> None:
        """Swap in the routing sys.stdout/sys.stderr and add the root handler (idempotent)."""
        global _installed
        with _install_lock:
            if _installed is self:
                return
            if _installed is not None:
                raise RuntimeError("another JobLogCapture is installed in this process")
            if self._closed:
                raise RuntimeError("this JobLogCapture is closed")
            self._originals = (sys.stdout, sys.stderr)
            self._streams = (
                _RoutingStream(sys.stdout, self._bound, _STDOUT),
                _RoutingStream(sys.stderr, self._bound, _STDERR),
            )
            sys.stdout, sys.stderr = self._streams  # type: ignore[assignment]
            logging.getLogger().addHandler(self.handler)
            _installed = self

    def uninstall(self) -> None:
        """Put back the streams found at install() and remove the root handler (idempotent).

        A stream that someone replaced after install() is left as they set it; the routing
        streams write everything through to the originals from now on, so a reference to one
        kept elsewhere (a StreamHandler) still works.
        """
        global _installed
        with _install_lock:
            if _installed is not self or self._streams is None or self._originals is None:
                return
            logging.getLogger().removeHandler(self.handler)
            if sys.stdout is self._streams[_STDOUT]:
                sys.stdout = self._originals[_STDOUT]
            if sys.stderr is self._streams[_STDERR]:
                sys.stderr = self._originals[_STDERR]
            for stream in self._streams:
                stream.stop_routing()
            _installed = None

    # -- per job -----------------------------------------------------------------------------

    @contextmanager
    def job(self, job_id: str, hand_over: bool = True) -> Iterator[None]:
        """Bind the current thread to ``job_id`` for the block; hand over its last lines at exit.

        At exit the unterminated tail of stdout/stderr becomes a line, and the job's lines go to
        the sink before the block returns (if the sink fails they stay for the flusher's retries).
        ``hand_over=False`` leaves them for ``take_remaining`` (stored with the job's end).
        """
        buf = self._buffer(job_id, bind=True)
        tid = threading.get_ident()
        previous = self._bound.get(tid)
        self._bound[tid] = buf
        try:
            yield
        finally:
            if previous is None:
                self._bound.pop(tid, None)
            else:
                self._bound[tid] = previous
            with buf.lock:
                buf.binders -= 1
                if not buf.binders:
                    buf.end_partials(_now_ms())
            if hand_over:
                self._deliver(buf, wait=True)
                self._retire_if_done(buf)

    def take_remaining(self, job_id: str) -> list[LogLine]:
        """The job's lines not yet handed to the sink, for the caller to store; the flusher will
        not see them. After the job's block, with none open: a finished job's last lines."""
        buf = self._jobs.get(job_id)
        if buf is None:
            return []
        with buf.lock:
            while buf.in_flight:  # the flusher's lines are older: let them land first
                buf.idle.wait()
            batch, dropped = buf.take()
        self._retire_if_done(buf)
        return ([_dropped_line(dropped, batch, self._max_lines)] if dropped else []) + batch

    def give_back(self, job_id: str, lines: list[LogLine]) -> None:
        """Lines from ``take_remaining`` that the caller could not store: the flusher tries."""
        for line in lines:
            self._buffer(job_id, line=line)

    def add(self, job_id: str, level: int | str, message: str) -> None:
        """Add a line to a job's log from any thread ("started", "finished in 12 ms", a traceback).

        ``level`` is a Mist or ``logging`` level name, or a ``logging`` level number.
        """
        self._buffer(job_id, line=LogLine(_now_ms(), mist_level(level), message.rstrip("\r\n")))

    def flush(self, job_id: str | None = None) -> None:
        """Hand one job's (or every job's) complete lines to the sink now, in this thread."""
        if job_id is None:
            self._flush_all(wait=True)
            return
        buf = self._jobs.get(job_id)
        if buf is not None:
            self._deliver(buf, wait=True)
            self._retire_if_done(buf)

    def close(self) -> None:
        """Uninstall, stop the flusher, and hand every buffered line (partial ones too) over."""
        self.uninstall()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            flusher = self._flusher
        self._stop.set()
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()
        ts = _now_ms()
        for buf in self._snapshot():
            with buf.lock:
                buf.end_partials(ts)
        self._flush_all(wait=True)
        lost = sum(len(buf.lines) + buf.dropped for buf in self._snapshot())
        if lost:
            self._report(f"{lost} log lines could not be stored before close and are lost\n")

    # -- internals ---------------------------------------------------------------------------

    def _buffer(self, job_id: str, bind: bool = False, line: LogLine | None = None) -> _JobBuffer:
        """The job's live buffer, created if needed; bind to it or add ``line`` atomically."""
        if self._closed:
            raise RuntimeError("this JobLogCapture is closed")
        while True:
            buf = self._jobs.get(job_id)
            if buf is None:
                with self._lock:
                    buf = self._jobs.get(job_id)
                    if buf is None:
                        buf = self._jobs[job_id] = _JobBuffer(job_id, self._max_lines)
                        self._start_flusher()
            with buf.lock:
                if buf.retired:  # emptied and removed meanwhile: take the new one
                    continue
                if bind:
                    buf.binders += 1
                if line is not None:
                    buf.append(line)
                return buf

    def _start_flusher(self) -> None:  # with self._lock held
        if self._flusher is None and not self._closed:
            self._flusher = threading.Thread(
                target=self._run_flusher, name="sparkgate-joblogs-flusher", daemon=True
            )
            self._flusher.start()

    def _run_flusher(self) -> None:
        while not self._stop.wait(self._flush_interval_s):
            try:
                self._flush_all(wait=False)
            except Exception:  # the flusher must not die; the next round retries
                self._report("log flusher error\n" + traceback.format_exc())

    def _snapshot(self) -> list[_JobBuffer]:
        with self._lock:
            return list(self._jobs.values())

    def _flush_all(self, wait: bool) -> None:
        for buf in self._snapshot():
            self._deliver(buf, wait)
            self._retire_if_done(buf)

    def _deliver(self, buf: _JobBuffer, wait: bool) -> None:
        """One sink call with the buffer's complete lines; on failure they go back in front."""
        with buf.lock:
            if buf.in_flight and not wait:
                return  # the job's own thread is delivering; its lines stay in order
            while buf.in_flight:
                buf.idle.wait()
            batch, dropped = buf.take()
            if not batch and not dropped:
                return
            buf.in_flight = True
        lines = [_dropped_line(dropped, batch, self._max_lines)] if dropped else []
        lines.extend(batch)  # the sink gets its own list: `batch` stays intact for a retry
        delivered = False
        try:
            self._sink(buf.job_id, lines)
            delivered = True
            self._sink_failing = False
        except Exception as exc:  # whatever the sink raised: report, keep the lines, retry
            self._report_sink_failure(buf.job_id, len(lines), exc)
        finally:
            with buf.lock:
                if not delivered:
                    buf.put_back(batch, dropped)
                buf.in_flight = False
                buf.idle.notify_all()

    def _retire_if_done(self, buf: _JobBuffer) -> None:
        with self._lock, buf.lock:
            if buf.retired or not buf.is_done():
                return
            buf.retired = True
            if self._jobs.get(buf.job_id) is buf:
                del self._jobs[buf.job_id]

    def _report_sink_failure(self, job_id: str, count: int, exc: Exception) -> None:
        text = (
            f"storing {count} log lines of job {job_id} failed "
            f"({type(exc).__name__}: {exc}); they are kept for the next try\n"
        )
        if not self._sink_failing:  # the whole traceback once per run of failures
            self._sink_failing = True
            text += "".join(traceback.format_exception(exc))
        self._report(text)

    def _report(self, text: str) -> None:
        """Write to the worker's real stderr, even if the calling thread is bound to a job."""
        stream = sys.stderr
        if isinstance(stream, _RoutingStream):
            stream = stream.target
        with contextlib.suppress(OSError, ValueError, AttributeError):  # nowhere left to report
            stream.write("sparkgate joblogs: " + text)
            stream.flush()


def _dropped_line(dropped: int, batch: list[LogLine], limit: int) -> LogLine:
    ts = batch[0].ts_ms if batch else _now_ms()
    return LogLine(
        ts, "WARN", f"{dropped} log lines were dropped: more than {limit} lines waited to be stored"
    )
