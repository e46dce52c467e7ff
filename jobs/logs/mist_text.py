"""Mist's text format for a job's log (``GET /v2/api/jobs/{id}/logs``)."""

from __future__ import annotations

import time

from sparkgate.jobs.logs.lines import LogLine


def iso_utc_ms(ts_ms: int) -> str:
    """``2026-11-25T11:43:37.123Z`` for epoch milliseconds (UTC, always three fraction digits)."""
    seconds, millis = divmod(ts_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def format_mist_line(job_id: str, line: LogLine) -> str:
    """One record in Mist's text format: ``LEVEL ISO-time [job id] message``, no final newline.

    A multi-line message (a traceback, a logged text block) stays one record: its continuation
    lines are indented by two spaces instead of repeating the prefix. This keeps each output line
    attributable — a line that starts with a level name opens a record, a line that starts with
    two spaces continues the one above — while a reader still sees the traceback as one block,
    as Mist showed it. Trailing line breaks are dropped so a record never ends in a blank line.
    """
    parts = [part.rstrip("\r") for part in line.message.rstrip("\r\n").split("\n")]
    parts[0] = f"{line.level} {iso_utc_ms(line.ts_ms)} [{job_id}] {parts[0]}"
    return "\n  ".join(parts)
