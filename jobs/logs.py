"""A job's log lines, and Mist's text format for them (``GET /v2/api/jobs/{id}/logs``).

Shared by the gateway (which stores and serves lines) and the workers (which capture them);
it imports nothing from either.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

#: Mist's level names, lowest first.
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")

_ALIASES = {"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}


@dataclass(frozen=True)
class LogLine:
    """One log record of a job: when (epoch ms), how bad (a Mist level), what (may span lines)."""

    ts_ms: int
    level: str
    message: str

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"log level {self.level!r} is not one of {', '.join(LEVELS)}")


def mist_level(level: int | str) -> str:
    """Mist's name for a ``logging`` level number or a level name.

    Numbers fall in the band they reach: below INFO is DEBUG, below WARNING is INFO, below ERROR
    is WARN, ERROR and above (CRITICAL too) is ERROR, so custom levels map sensibly.
    Names: Mist's own, or logging's (``WARNING`` → ``WARN``, ``CRITICAL`` → ``ERROR``).
    """
    if isinstance(level, int):
        if level < logging.INFO:
            return "DEBUG"
        if level < logging.WARNING:
            return "INFO"
        if level < logging.ERROR:
            return "WARN"
        return "ERROR"
    name = level.upper()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    return name


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
