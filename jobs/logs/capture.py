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
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from sparkgate.jobs.db import now_ms
from sparkgate.jobs.logs.buffers import STDERR, STDOUT, JobBuffer, dropped_line
from sparkgate.jobs.logs.lines import LogLine, mist_level
from sparkgate.jobs.logs.routing import JobLogHandler, RoutingStream

Sink = Callable[[str, list[LogLine]], None]

# One capture may own sys.stdout/sys.stderr at a time: a second one would wrap the first.
_install_lock = threading.Lock()
_installed: JobLogCapture | None = None


def current_job() -> str | None:
    """The job the calling thread runs, in a process whose capture is installed (a worker);
    None elsewhere (what JSON log lines name as their ``job_id``)."""
    installed = _installed
    return None if installed is None else installed.current_job()


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
        self._bound: dict[int, JobBuffer] = {}  # thread id -> buffer of the job it runs
        self._jobs: dict[str, JobBuffer] = {}  # job id -> buffer, while it has anything
        self._lock = threading.Lock()  # guards _jobs changes, _closed, _flusher
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._streams: tuple[RoutingStream, RoutingStream] | None = None
        self._originals: tuple[TextIO, TextIO] | None = None
        self._sink_failing = False
        self.handler: logging.Handler = JobLogHandler(self._bound)

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
                RoutingStream(sys.stdout, self._bound, STDOUT),
                RoutingStream(sys.stderr, self._bound, STDERR),
            )
            sys.stdout, sys.stderr = self._streams
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
            if sys.stdout is self._streams[STDOUT]:
                sys.stdout = self._originals[STDOUT]
            if sys.stderr is self._streams[STDERR]:
                sys.stderr = self._originals[STDERR]
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
                    buf.end_partials(now_ms())
            if hand_over:
                self._deliver(buf, wait=True)
                self._retire_if_done(buf)

    def current_job(self) -> str | None:
        """The job the calling thread runs (is bound to), if any: what a function's own code
        is done for (sparkgate.models records the job that saved a model)."""
        buf = self._bound.get(threading.get_ident())
        return None if buf is None else buf.job_id

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
        return ([dropped_line(dropped, batch, self._max_lines)] if dropped else []) + batch

    def give_back(self, job_id: str, lines: list[LogLine]) -> None:
        """Lines from ``take_remaining`` that the caller could not store: the flusher tries."""
        for line in lines:
            self._buffer(job_id, line=line)

    def add(self, job_id: str, level: int | str, message: str) -> None:
        """Add a line to a job's log from any thread ("started", "finished in 12 ms", a traceback).

        ``level`` is a Mist or ``logging`` level name, or a ``logging`` level number.
        """
        self._buffer(job_id, line=LogLine(now_ms(), mist_level(level), message.rstrip("\r\n")))

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
        ts = now_ms()
        for buf in self._snapshot():
            with buf.lock:
                buf.end_partials(ts)
        self._flush_all(wait=True)
        lost = sum(len(buf.lines) + buf.dropped for buf in self._snapshot())
        if lost:
            self._report(f"{lost} log lines could not be stored before close and are lost\n")

    # -- internals ---------------------------------------------------------------------------

    def _buffer(self, job_id: str, bind: bool = False, line: LogLine | None = None) -> JobBuffer:
        """The job's live buffer, created if needed; bind to it or add ``line`` atomically."""
        if self._closed:
            raise RuntimeError("this JobLogCapture is closed")
        while True:
            buf = self._jobs.get(job_id)
            if buf is None:
                with self._lock:
                    buf = self._jobs.get(job_id)
                    if buf is None:
                        buf = self._jobs[job_id] = JobBuffer(job_id, self._max_lines)
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

    def _snapshot(self) -> list[JobBuffer]:
        with self._lock:
            return list(self._jobs.values())

    def _flush_all(self, wait: bool) -> None:
        for buf in self._snapshot():
            self._deliver(buf, wait)
            self._retire_if_done(buf)

    def _deliver(self, buf: JobBuffer, wait: bool) -> None:
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
        lines = [dropped_line(dropped, batch, self._max_lines)] if dropped else []
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

    def _retire_if_done(self, buf: JobBuffer) -> None:
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
        if isinstance(stream, RoutingStream):
            stream = stream.target
        with contextlib.suppress(OSError, ValueError, AttributeError):  # nowhere left to report
            stream.write("sparkgate joblogs: " + text)
            stream.flush()
