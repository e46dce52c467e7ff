"""Repeated errors logged a few times per interval, then summed up: a flood of bad clients or
an outage under load is a handful of log lines, not one per request (a slowloris run once grew
the log by 391k lines in 70 s).

Each kind of error (a key the caller chooses: the message and the source, say) may be logged
``burst`` times per ``every_s``; the rest are counted, and the next one logged after the
interval says how many were left out ("suppressed N similar").
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

#: Kinds remembered at once (least recently seen first out): keys may name client addresses.
MAX_KINDS = 1024


@dataclass(slots=True)
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class LogThrottle:
    def __init__(self, logger: logging.Logger, every_s: float = 10.0, burst: int = 3) -> None:
        self.logger = logger
        self.every_s = every_s
        self.burst = burst
        self._windows: OrderedDict[Hashable, _Window] = OrderedDict()

    def log(self, level: int, key: Hashable, message: str, *args: Any,
            exc_info: Any = None) -> None:
        """``logger.log(level, message, *args)`` unless ``key`` was logged ``burst`` times in
        the current interval."""
        window = self._window(key)
        if window.logged >= self.burst:
            window.suppressed += 1
            return
        window.logged += 1
        if window.suppressed:
            message += " (suppressed %d similar in the %gs before)"
            args = (*args, window.suppressed, self.every_s)
            window.suppressed = 0
        self.logger.log(level, message, *args, exc_info=exc_info)

    def _window(self, key: Hashable) -> _Window:
        now = time.monotonic()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now)
            while len(self._windows) > MAX_KINDS:
                self._windows.popitem(last=False)
        elif now - window.start >= self.every_s:
            # The count left out carries over: it is reported by the next line logged.
            window.start, window.logged = now, 0
        self._windows.move_to_end(key)
        return window
