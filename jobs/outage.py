"""A dependency's outage (the database, Redis, the MQTT broker) logged as two lines: one when
it starts, one when it ends, however many attempts fail in between. Loops that retry every
second would otherwise log a line per attempt.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

#: Errors that say a service is unreachable: their message is the whole story. Anything else
#: that fails a retried step is a bug, whose traceback is logged with the outage's first line.
UNREACHABLE_ERRORS = (RedisError, DBAPIError, OSError)


class Outage:
    """``down`` is logged when a failure starts an outage (its ``%s`` is the error), ``back``
    (as is: no ``%`` formatting) when a success ends it. Safe to share between threads."""

    def __init__(self, logger: logging.Logger, down: str, back: str) -> None:
        self.logger = logger
        self.down_message = down
        self.back_message = back
        self.down = False
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> bool:
        """Log ``down`` if ``exc`` starts an outage; whether it did."""
        trace = None if isinstance(exc, UNREACHABLE_ERRORS) else exc
        return self.starts(f"{type(exc).__name__}: {exc}", exc_info=trace)

    def starts(self, *args: Any, message: str | None = None, level: int = logging.WARNING,
               exc_info: BaseException | None = None) -> bool:
        """Log ``message`` (by default ``down``) with ``args`` if this failure starts an
        outage (for failures that are not exceptions); whether it did."""
        with self._lock:
            first, self.down = not self.down, True
        if first:
            self.logger.log(level, message or self.down_message, *args, exc_info=exc_info)
        return first

    def ok(self) -> bool:
        """Log ``back`` if this success ends an outage; whether it did."""
        if not self.down:  # the common case, without the lock
            return False
        with self._lock:
            was, self.down = self.down, False
        if was:
            self.logger.info(self.back_message)
        return was
