"""Children that end with the process that started them: nothing sparkgate starts (an
embedded Redis, gateway processes, a Spark class archive build) outlives it, even when it is
killed with SIGKILL (DESIGN.md, invariant 7)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def dies_with(parent_pid: int) -> Callable[[], None] | None:
    """What the child runs before exec: ask the kernel for SIGKILL when its parent ends
    (Linux only; elsewhere a killed parent leaves it running).

    The kernel sends it when the *thread* that started the child ends: start children this
    way from a thread that lives as long as they may (the main thread, or one that ends only
    when the process stops).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl: no signal would come
            os.kill(os.getpid(), signal.SIGKILL)

    return in_child
