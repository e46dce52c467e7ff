"""Giving memory back to the system after big requests.

A burst of multi-megabyte bodies leaves glibc's heaps (one per thread that parsed or encoded
them) full of freed but unreturned pages: glibc raises its mmap threshold to the size of the
largest block freed, so later big blocks come from the heaps, which it trims only from their
top. The gateway would keep the burst's peak for ever (30 bodies of 4 MB: 97 MB before, 316 MB
after). So the threshold is fixed at glibc's default, and ``malloc_trim(0)``, which returns
every free page of every heap, is run once, on a blocking thread, a moment after the last big
request. What stays (about 50 MB after that burst) is Python's own small-object arenas, kept
by the few objects still living in each.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

# Long enough that a burst of big requests is trimmed once, after it, not after each one.
TRIM_DELAY_S = 1.0
# Requests or responses of this many bytes are big: smaller blocks stay below glibc's default
# mmap threshold (128 KiB) and leave no such residue.
BIG_BODY_BYTES = 1024 * 1024


def trim_after_big_bodies() -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` handler that schedules a trim after each big request."""
    _fix_mmap_threshold()
    trimmer = Trimmer()

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if max(request.content_length or 0, response.content_length or 0) >= BIG_BODY_BYTES:
            trimmer.soon()

    return on_prepare


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, if that is the C library (musl and macOS have neither call used here)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - raises AttributeError without them
    except (OSError, AttributeError):
        return None
    return libc


def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    return None if libc is None else libc.malloc_trim


def _fix_mmap_threshold() -> None:
    """Blocks of 128 KiB and more always mmapped, so freeing one unmaps it: glibc's default
    raises the threshold to each big block freed, after which big blocks live in the heaps."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


class Trimmer:
    """``soon()`` after each big request: one trim, ``TRIM_DELAY_S`` after the last call."""

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None

    def soon(self) -> None:
        if _malloc_trim() is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(TRIM_DELAY_S, self._trim, loop)

    def _trim(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        trim = _malloc_trim()
        if trim is not None:
            loop.run_in_executor(None, trim, 0)
