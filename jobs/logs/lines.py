"""A job's log line, and Mist's level names for it."""

from __future__ import annotations

import logging
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
