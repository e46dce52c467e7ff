"""Following a job from the command line: its log records as they are stored, and a progress
bar fed by its ``progress`` events, until it ends.

As the Python client does (docs/client.md): the log is read by offset about every half second
(``X-Sparkgate-Next-Offset``, ``X-Sparkgate-Job-Status``): each record once, in order, and
the first answer whose status is ended holds the last records. Spark's progress comes from the
job's event stream (``GET /v2/api/events?job=<id>``), read by a thread: a lost event only
delays the bar, never the end.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from sparkgate.remote import Remote, RemoteError

ENDED = frozenset({"finished", "failed", "cancelled"})
NEXT_OFFSET = "X-Sparkgate-Next-Offset"
JOB_STATUS = "X-Sparkgate-Job-Status"
LOG_POLL_S = 0.5  # workers store log lines that often
STREAM_SILENCE_S = 25.0  # the event stream's keep-alive comes every 15 s
STREAM_RETRY_S = 1.0


def job_path(job_id: str) -> str:
    return f"/v2/api/jobs/{quote(job_id, safe='')}"


def log_records(text: str) -> list[str]:
    """One record per line, a record's continuation lines (two spaces first) kept with it."""
    records: list[str] = []
    for line in text.split("\n"):
        if line.startswith("  ") and records:
            records[-1] += "\n" + line
        elif line:
            records.append(line)
    return records


@dataclass(frozen=True)
class LogChunk:
    records: list[str]
    next_offset: int
    status: str | None  # None from a gateway that does not say (Mist)


def read_logs(remote: Remote, job_id: str, offset: int) -> LogChunk:
    answer = remote.request("GET", f"{job_path(job_id)}/logs?offset={offset}",
                            headers={"Accept": "text/plain"})
    records = log_records(answer.text)
    told = answer.headers.get(NEXT_OFFSET)
    if told is None:  # the offset was ignored: the whole log came
        return LogChunk(records[offset:], max(offset, len(records)), None)
    return LogChunk(records, int(told), answer.headers.get(JOB_STATUS))


def follow_logs(remote: Remote, job_id: str, offset: int,
                show: Callable[[str], None], tick: Callable[[str], None] | None = None) -> str:
    """Show each record from ``offset`` on until the job has ended; its final status."""
    while True:
        chunk = read_logs(remote, job_id, offset)
        for record in chunk.records:
            show(record)
        offset = chunk.next_offset
        status = chunk.status or str(remote.call("GET", job_path(job_id))["status"])
        if tick is not None:
            tick(status)
        if status in ENDED:
            return status
        time.sleep(LOG_POLL_S)


@dataclass
class Tasks:
    """Spark tasks done of total, as the last ``progress`` event (or the job) said."""

    done: int = 0
    total: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, progress: Any) -> None:
        tasks = progress.get("tasks") if isinstance(progress, dict) else None
        if isinstance(tasks, dict) and isinstance(tasks.get("total"), int):
            with self.lock:
                self.done, self.total = int(tasks.get("done") or 0), tasks["total"]

    def now(self) -> tuple[int, int | None]:
        with self.lock:
            return self.done, self.total


class ProgressEvents(threading.Thread):
    """Reads the job's event stream into ``tasks`` until ``stop``; reconnects if it breaks."""

    def __init__(self, remote: Remote, job_id: str, tasks: Tasks) -> None:
        super().__init__(name="sparkgate-events", daemon=True)
        self.remote, self.job_id, self.tasks = remote, job_id, tasks
        self.stop = threading.Event()

    def run(self) -> None:
        path = f"/v2/api/events?job={quote(self.job_id, safe='')}"
        while not self.stop.is_set():
            try:
                with self.remote.stream(path, STREAM_SILENCE_S) as lines:
                    self._read(lines)
            except RemoteError:
                pass
            self.stop.wait(STREAM_RETRY_S)

    def _read(self, lines: Any) -> None:
        name, data = "", []
        for line in lines:
            if self.stop.is_set():
                return
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line:
                if name == "progress" and data:
                    with contextlib.suppress(ValueError, AttributeError):
                        self.tasks.read(json.loads("\n".join(data)).get("progress"))
                name, data = "", []


class Display:
    """Where a followed job shows: a live bar on a terminal, plain lines otherwise (captured
    output stays readable). Both on stderr: stdout holds the result."""

    def __init__(self, out: Console, function: str, tasks: Tasks) -> None:
        self.out, self.function, self.tasks = out, function, tasks
        self.live = out.is_terminal
        self._status = ""
        self._shown: tuple[int, int | None] = (0, None)
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Display:
        if self.live:
            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("tasks"),
                                 TimeElapsedColumn(), console=self.out)
            self._bar.start()
            self._task = self._bar.add_task(self.function, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def record(self, record: str) -> None:
        self.out.print(Text(record), soft_wrap=True)

    def tick(self, status: str) -> None:
        done, total = self.tasks.now()
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=f"{self.function} {status}",
                             completed=done, total=total)
            return
        if status != self._status:
            self.out.print(Text(f"{self.function}: {status}"), soft_wrap=True)
            self._status = status
        if (done, total) != self._shown and total:
            self.out.print(Text(f"{self.function}: {done}/{total} Spark tasks"), soft_wrap=True)
            self._shown = (done, total)


def follow(remote: Remote, job_id: str, function: str, out: Console) -> dict[str, Any]:
    """Show the job's logs and progress until it ends; the ended job."""
    tasks = Tasks()
    events = ProgressEvents(remote, job_id, tasks)
    events.start()
    try:
        with Display(out, function, tasks) as display:
            follow_logs(remote, job_id, 0, display.record, display.tick)
            job: dict[str, Any] = remote.call("GET", job_path(job_id))
            tasks.read(job.get("progress"))  # the stored counts: final once the job ended
            display.tick(str(job["status"]))
    finally:
        events.stop.set()
    return job
