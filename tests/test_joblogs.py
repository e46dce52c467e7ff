"""Per-job log capture: each job's log holds its own thread's output, and only that."""

from __future__ import annotations

import calendar
import io
import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from sparkgate.jobs.logs.capture import JobLogCapture
from sparkgate.jobs.logs.lines import LogLine, mist_level
from sparkgate.jobs.logs.mist_text import format_mist_line, iso_utc_ms

WAIT_S = 10


class Sink:
    """Records every sink call; can be told to fail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, list[LogLine]]] = []
        self.delivered = threading.Event()
        self.failures_left = 0
        self.always_fail = False

    def __call__(self, job_id: str, lines: list[LogLine]) -> None:
        with self.lock:
            if self.always_fail or self.failures_left > 0:
                self.failures_left -= 1
                raise ConnectionError("database is down")
            self.calls.append((job_id, list(lines)))
        self.delivered.set()

    def lines(self, job_id: str) -> list[LogLine]:
        with self.lock:
            return [line for jid, lines in self.calls if jid == job_id for line in lines]

    def pairs(self, job_id: str) -> list[tuple[str, str]]:
        return [(line.level, line.message) for line in self.lines(job_id)]


class Env:
    """Builds captures installed over StringIO streams that stand for the worker's real ones.

    The swap happens inside the test, not in fixture setup: pytest's own capture puts its
    streams back in sys.stdout/sys.stderr between the setup and call phases.
    """

    def __init__(self) -> None:
        self.sink = Sink()
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.captures: list[JobLogCapture] = []
        self.saved: tuple[object, object] | None = None

    def capture(self, **kwargs: float) -> JobLogCapture:
        if self.saved is None:
            self.saved = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = self.out, self.err
        kwargs.setdefault("flush_interval_s", 60)  # no periodic flush unless a test wants one
        capture = JobLogCapture(self.sink, **kwargs)  # type: ignore[arg-type]
        self.captures.append(capture)
        capture.install()
        return capture

    def teardown(self) -> None:
        for capture in self.captures:
            capture.uninstall()
            capture.close()
        if self.saved is not None:
            sys.stdout, sys.stderr = self.saved  # type: ignore[assignment]


@pytest.fixture
def env() -> Iterator[Env]:
    logger = logging.getLogger("test.joblogs")
    saved_level = logger.level
    logger.setLevel(logging.DEBUG)
    e = Env()
    try:
        yield e
    finally:
        e.teardown()
        logger.setLevel(saved_level)


def log() -> logging.Logger:
    return logging.getLogger("test.joblogs")


def run_in_threads(*targets: object) -> None:
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        for future in [pool.submit(t) for t in targets]:  # type: ignore[arg-type]
            future.result(timeout=WAIT_S)


def test_concurrent_jobs_get_only_their_own_lines_in_order(env: Env) -> None:
    capture = env.capture()
    barrier = threading.Barrier(3, timeout=WAIT_S)  # two jobs + this (unbound) thread

    def job(name: str) -> None:
        with capture.job(name):
            for i in range(5):
                barrier.wait()
                print(f"{name} print {i}")
                barrier.wait()
                log().info("%s log %d", name, i)
                barrier.wait()
                sys.stderr.write(f"{name} err {i}\n")
                barrier.wait()
                sys.stdout.write(f"{name} part-a {i} ")  # a partial line meets the
                barrier.wait()  # neighbour's partial line before its newline comes
                sys.stdout.write(f"part-b {i}\n")

    def worker_thread() -> None:
        for i in range(5):
            for _ in range(5):
                barrier.wait()
                print(f"worker {i}")

    run_in_threads(lambda: job("A"), lambda: job("B"), worker_thread)

    for name in ("A", "B"):
        expected = []
        for i in range(5):
            expected += [
                ("INFO", f"{name} print {i}"),
                ("INFO", f"{name} log {i}"),
                ("ERROR", f"{name} err {i}"),
                ("INFO", f"{name} part-a {i} part-b {i}"),
            ]
        assert env.sink.pairs(name) == expected
    assert env.out.getvalue().splitlines() == [f"worker {i}" for i in range(5) for _ in range(5)]
    assert env.err.getvalue() == ""


def test_unbound_threads_write_through_and_log_to_normal_handlers(env: Env) -> None:
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = ListHandler()
    log().addHandler(handler)
    try:
        capture = env.capture()
        job_running = threading.Event()
        other_done = threading.Event()

        def job() -> None:
            with capture.job("J"):
                job_running.set()
                assert other_done.wait(WAIT_S)
                print("from job")

        def other() -> None:
            assert job_running.wait(WAIT_S)
            print("from worker")
            sys.stderr.write("worker stderr\n")
            log().warning("worker record")
            other_done.set()

        run_in_threads(job, other)
        print("from main")
    finally:
        log().removeHandler(handler)

    assert env.sink.pairs("J") == [("INFO", "from job")]
    assert env.out.getvalue() == "from worker\nfrom main\n"
    assert env.err.getvalue() == "worker stderr\n"
    assert "worker record" in records


@contextmanager
def logger_levels(**levels: int) -> Iterator[None]:
    """Set loggers' levels (``a__b`` names logger ``a.b``) for the block."""
    loggers = {logging.getLogger(name.replace("__", ".")): lvl for name, lvl in levels.items()}
    saved = {logger: logger.level for logger in loggers}
    for logger, lvl in loggers.items():
        logger.setLevel(lvl)
    try:
        yield
    finally:
        for logger, lvl in saved.items():
            logger.setLevel(lvl)


def test_logging_levels_are_mapped_and_effective_level_respected(env: Env) -> None:
    capture = env.capture()
    quiet = logging.getLogger("test.joblogs.quiet")
    with logger_levels(test__joblogs__quiet=logging.WARNING), capture.job("J"):
        log().debug("d")
        log().info("i")
        log().log(25, "custom")
        log().warning("w")
        log().error("e")
        log().critical("c")
        quiet.info("filtered by its level")
        quiet.warning("quiet w")
    assert env.sink.pairs("J") == [
        ("DEBUG", "d"),
        ("INFO", "i"),
        ("INFO", "custom"),
        ("WARN", "w"),
        ("ERROR", "e"),
        ("ERROR", "c"),
        ("WARN", "quiet w"),
    ]


def test_py4j_debug_is_skipped_but_its_info_and_user_debug_kept(env: Env) -> None:
    capture = env.capture()
    with logger_levels(py4j=logging.DEBUG, py4jx=logging.DEBUG), capture.job("J"):
        logging.getLogger("py4j.clientserver").debug("Command to send: c")
        logging.getLogger("py4j").debug("Answer received: yv")
        logging.getLogger("py4j.java_gateway").info("Error while receiving.")
        logging.getLogger("py4j.clientserver").error("Unknown command x")
        logging.getLogger("py4jx").debug("not py4j")
    assert env.sink.pairs("J") == [
        ("INFO", "Error while receiving."),
        ("ERROR", "Unknown command x"),
        ("DEBUG", "not py4j"),
    ]


def test_exception_tracebacks_are_one_record(env: Env) -> None:
    capture = env.capture()
    with capture.job("J"):
        try:
            raise ValueError("boom")
        except ValueError:
            log().exception("it failed")
            traceback.print_exc()
    lines = env.sink.lines("J")
    first = lines[0]
    assert first.level == "ERROR"
    assert first.message.startswith("it failed\nTraceback (most recent call last):\n")
    assert first.message.endswith("ValueError: boom")
    stderr_lines = [(line.level, line.message) for line in lines[1:]]
    assert stderr_lines[0] == ("ERROR", "Traceback (most recent call last):")
    assert stderr_lines[-1] == ("ERROR", "ValueError: boom")


def test_partial_lines_wait_for_newline_and_are_flushed_at_job_end(env: Env) -> None:
    capture = env.capture()
    with capture.job("J"):
        print("whole")
        print("no newline", end="", flush=True)
        sys.stderr.write("err tail")
        capture.flush("J")
        assert env.sink.pairs("J") == [("INFO", "whole")]
    assert env.sink.pairs("J") == [
        ("INFO", "whole"),
        ("INFO", "no newline"),
        ("ERROR", "err tail"),
    ]
    assert env.out.getvalue() == ""


def test_periodic_flush_delivers_while_the_job_runs(env: Env) -> None:
    capture = env.capture(flush_interval_s=0.02)
    with capture.job("J"):
        print("tick")
        assert env.sink.delivered.wait(WAIT_S), "no flush while the job was still running"
        assert env.sink.pairs("J") == [("INFO", "tick")]
        print("tock")
    assert env.sink.pairs("J") == [("INFO", "tick"), ("INFO", "tock")]


def test_job_end_waits_for_a_running_periodic_flush_so_lines_stay_in_order(env: Env) -> None:
    entered = threading.Event()
    release = threading.Event()
    order: list[list[str]] = []

    def slow_sink(job_id: str, lines: list[LogLine]) -> None:
        if not entered.is_set():
            entered.set()
            assert release.wait(WAIT_S)
        order.append([line.message for line in lines])  # stored when the call ends

    env.sink = slow_sink  # type: ignore[assignment]
    capture = env.capture(flush_interval_s=0.01)

    def job() -> None:
        with capture.job("J"):
            print("first")
            assert entered.wait(WAIT_S)  # the flusher is inside the sink with "first"
            print("second")

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(job)
        assert entered.wait(WAIT_S)
        time.sleep(0.1)  # time for a job end that did not wait to call the sink out of order
        release.set()
        future.result(WAIT_S)
    assert order == [["first"], ["second"]]


def test_lifecycle_lines_from_another_thread(env: Env) -> None:
    capture = env.capture()
    started = threading.Event()
    go_on = threading.Event()

    def job() -> None:
        with capture.job("J"):
            started.set()
            assert go_on.wait(WAIT_S)
            print("work")

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(job)
        assert started.wait(WAIT_S)
        capture.add("J", "INFO", "started")
        go_on.set()
        future.result(WAIT_S)
    capture.add("J", logging.WARNING, "Traceback:\n  line\n")
    capture.flush("J")
    assert env.sink.pairs("J") == [
        ("INFO", "started"),
        ("INFO", "work"),
        ("WARN", "Traceback:\n  line"),
    ]


def test_nested_job_blocks_restore_the_outer_binding(env: Env) -> None:
    capture = env.capture()
    with capture.job("outer"):
        print("o1")
        with capture.job("inner"):
            print("i1")
        print("o2")
    print("unbound")
    assert env.sink.pairs("outer") == [("INFO", "o1"), ("INFO", "o2")]
    assert env.sink.pairs("inner") == [("INFO", "i1")]
    assert env.out.getvalue() == "unbound\n"


def test_job_that_says_nothing_calls_no_sink(env: Env) -> None:
    capture = env.capture(flush_interval_s=0.01)
    with capture.job("J"):
        pass
    capture.flush()
    assert env.sink.calls == []


def test_failing_sink_keeps_lines_and_does_not_crash(env: Env) -> None:
    env.sink.failures_left = 2
    capture = env.capture(flush_interval_s=0.02)
    with capture.job("J"):  # its delivery at exit fails: no exception reaches the job
        print("one")
        print("two")
    capture.add("J", "INFO", "finished")
    assert env.sink.delivered.wait(WAIT_S), "the flusher never retried"
    capture.flush("J")
    assert env.sink.pairs("J") == [("INFO", "one"), ("INFO", "two"), ("INFO", "finished")]
    assert "database is down" in env.err.getvalue()
    assert "Traceback" in env.err.getvalue()
    assert env.out.getvalue() == ""


def test_bounded_buffer_drops_oldest_with_one_warning(env: Env) -> None:
    env.sink.always_fail = True
    capture = env.capture(max_buffered_lines=5)
    with capture.job("J"):
        for i in range(8):
            print(f"line {i}")
    capture.flush("J")  # fails again: still bounded
    capture.add("J", "INFO", "finished")
    env.sink.always_fail = False
    capture.flush("J")
    pairs = env.sink.pairs("J")
    # 8 printed, 5 kept; "finished" arrived while still full and pushed out one more
    assert pairs[1:] == [("INFO", f"line {i}") for i in (4, 5, 6, 7)] + [("INFO", "finished")]
    level, message = pairs[0]
    assert level == "WARN"
    assert message.startswith("4 log lines were dropped")


def test_close_flushes_everything_and_stops_the_thread(env: Env) -> None:
    capture = env.capture()
    capture.add("J", "INFO", "queued line")
    flushers = [t for t in threading.enumerate() if t.name == "sparkgate-joblogs-flusher"]
    assert flushers
    capture.close()
    assert env.sink.pairs("J") == [("INFO", "queued line")]
    assert not any(t.is_alive() for t in flushers)
    assert sys.stdout is env.out
    with pytest.raises(RuntimeError):
        capture.add("J", "INFO", "too late")


def test_uninstall_restores_streams_and_handler(env: Env) -> None:
    root = logging.getLogger()
    capture = env.capture()
    assert sys.stdout is not env.out and sys.stderr is not env.err
    assert capture.handler in root.handlers
    capture.install()  # a second install is a no-op
    with pytest.raises(RuntimeError):
        JobLogCapture(env.sink).install()
    routing_stdout = sys.stdout
    capture.uninstall()
    assert sys.stdout is env.out and sys.stderr is env.err
    assert capture.handler not in root.handlers
    with capture.job("J"):
        print("after uninstall")
        routing_stdout.write("through a kept reference\n")
    assert env.sink.pairs("J") == []
    assert env.out.getvalue() == "after uninstall\nthrough a kept reference\n"


def test_installs_over_pytest_capture(capsys: pytest.CaptureFixture[str]) -> None:
    sink = Sink()
    capture = JobLogCapture(sink, flush_interval_s=60)
    capture.install()
    try:
        print("worker line")
        with capture.job("J"):
            print("job line")
    finally:
        capture.close()
    assert capsys.readouterr().out == "worker line\n"
    assert sink.pairs("J") == [("INFO", "job line")]


def test_mist_levels() -> None:
    assert [mist_level(n) for n in (5, 10, 20, 25, 30, 40, 50)] == [
        "DEBUG",
        "DEBUG",
        "INFO",
        "INFO",
        "WARN",
        "ERROR",
        "ERROR",
    ]
    assert [mist_level(n) for n in ("warning", "CRITICAL", "WARN", "info")] == [
        "WARN",
        "ERROR",
        "WARN",
        "INFO",
    ]
    with pytest.raises(ValueError):
        mist_level("TRACE")
    with pytest.raises(ValueError):
        LogLine(0, "WARNING", "x")


def test_format_mist_line_exact() -> None:
    ts = calendar.timegm((2026, 11, 25, 11, 43, 37)) * 1000 + 7
    job = "3f2a0c1e-0000-4000-8000-000000000001"
    assert format_mist_line(job, LogLine(ts, "INFO", "started")) == (
        f"INFO 2026-11-25T11:43:37.007Z [{job}] started"
    )
    assert format_mist_line(job, LogLine(ts, "ERROR", "failed\nTraceback:\n  x\r\n")) == (
        f"ERROR 2026-11-25T11:43:37.007Z [{job}] failed\n  Traceback:\n    x"
    )
    assert iso_utc_ms(0) == "1970-01-01T00:00:00.000Z"
