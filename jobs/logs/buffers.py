"""One job's captured output waiting to be stored: its complete lines (bounded: the oldest go
first when the store is behind) and the unterminated tail of its stdout and stderr.
"""

from __future__ import annotations

import threading
from collections import deque

from sparkgate.jobs.db import now_ms
from sparkgate.jobs.logs.lines import LogLine

#: Level of a line written to sys.stdout / sys.stderr by a job's thread.
STREAM_LEVELS = ("INFO", "ERROR")
STDOUT, STDERR = 0, 1
#: A line longer than this without a newline (progress bars redrawn with "\r") is cut here.
MAX_PARTIAL_CHARS = 64 * 1024


class JobBuffer:
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
        ts = now_ms()
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
        self.end_partial(STDOUT, ts)
        self.end_partial(STDERR, ts)

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


def dropped_line(dropped: int, batch: list[LogLine], limit: int) -> LogLine:
    ts = batch[0].ts_ms if batch else now_ms()
    return LogLine(
        ts, "WARN", f"{dropped} log lines were dropped: more than {limit} lines waited to be stored"
    )

