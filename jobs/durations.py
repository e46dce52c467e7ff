"""Durations as Mist wrote them: ``500ms``, ``10s``, ``5min``, ``1h``, ``Inf``.

Internally every duration is a float of seconds, or ``None`` for unbounded.
"""

from __future__ import annotations

import math
import re

_UNITS_S = {
    "ms": 0.001,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
# ASCII digits: \d would also take other scripts' digits ("٣s"), which float() reads.
_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNBOUNDED = {"inf", "infinite", "unbounded"}
# Longer is meant as "no limit" (say Inf); the cap keeps milliseconds within a 64-bit column.
MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str | int | float, field: str = "duration") -> float | None:
    """Seconds for ``text``; ``None`` for ``Inf``. A bare number is seconds.

    Raises ``ValueError`` naming ``field``, what is accepted and what came.
    """
    if isinstance(text, bool):
        raise ValueError(f"{field}: expected a duration like 500ms, 10s, 5min or Inf, got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    elif isinstance(text, str) and text.strip().lower() in _UNBOUNDED:
        return None
    else:
        seconds = _parse_text(text, field)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"{field}: expected a duration from 0 to 100 years (or Inf), "
                         f"got {text!r}")
    return seconds


def _parse_text(text: object, field: str) -> float:
    match = _PATTERN.match(text) if isinstance(text, str) else None
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in _UNITS_S):
        raise ValueError(
            f"{field}: expected a duration like 500ms, 10s, 5min, 1h or Inf, got {text!r}"
        )
    return float(match.group(1)) * _UNITS_S.get(unit, 1.0)


def format_duration(seconds: float | None) -> str:
    """Mist's form: ``Inf``, ``3600s``, ``500ms``."""
    if seconds is None:
        return "Inf"
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    return f"{int(seconds)}s"
