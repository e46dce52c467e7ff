"""When a request is tried again, and after how long.

Retried: answers ``429`` and ``503`` (the gateway says "later", and when, in ``Retry-After``),
and connections that fail. A request that may have reached the gateway before its connection
broke is retried only if repeating it is harmless: reads, upserts, and submits, which carry an
``Idempotency-Key`` so that the gateway answers a retry with the job the first try created.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import httpx

#: Transport errors that happen before the request leaves: always safe to retry.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Transport errors after which the request may have been handled.
MAYBE_SENT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries at most (1: no retry), spending at most ``budget_s`` seconds
    waiting between them. Waits are the gateway's ``Retry-After`` where it gives one, else
    ``backoff_s`` doubling up to ``max_backoff_s`` (with jitter)."""

    attempts: int = 5
    budget_s: float = 60.0
    backoff_s: float = 0.25
    max_backoff_s: float = 5.0
    statuses: frozenset[int] = frozenset({429, 503})

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1, 2, ...) when the gateway named none."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1))
        return float(ceiling * (0.5 + random.random() / 2))


#: No retries at all.
NO_RETRY = RetryPolicy(attempts=1)


class Attempts:
    """The tries of one request: each failure asks for the wait before the next try, or
    None when the policy (or the ``deadline``, a ``time.monotonic()``) says to give up."""

    def __init__(self, policy: RetryPolicy, deadline: float | None = None) -> None:
        self.policy = policy
        self.deadline = deadline
        self.made = 0
        self.waited_s = 0.0

    def after_status(self, status: int, retry_after: float | None) -> float | None:
        if status not in self.policy.statuses:
            return None
        return self._next(retry_after)

    def after_error(self, error: httpx.TransportError, idempotent: bool) -> float | None:
        if isinstance(error, NOT_SENT) or (idempotent and isinstance(error, MAYBE_SENT)):
            return self._next(None)
        return None

    def _next(self, retry_after: float | None) -> float | None:
        self.made += 1
        if self.made >= self.policy.attempts:
            return None
        delay = retry_after if retry_after is not None else self.policy.backoff(self.made)
        if self.waited_s + delay > self.policy.budget_s:
            return None
        if self.deadline is not None and time.monotonic() + delay >= self.deadline:
            return None
        self.waited_s += delay
        return delay


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
