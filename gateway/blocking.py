"""The one way the gateway calls blocking code (SQLAlchemy, RQ): on a thread pool, never on the
event loop, so one slow query never stalls every other request and waiter.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Enough threads to keep the database pool busy; each blocking call is short.
THREADS = 32


def make_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="blocking")


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
