"""Plain functions (no Spark handle) that behave in ways the python engine's tests need.
Nothing here imports pyspark."""

import os
import sys
import time


def where(x: int) -> dict:
    """Which process ran the job, and whether pyspark was ever imported in it."""
    return {"pid": os.getpid(), "x": x,
            "pyspark": any(name.split(".")[0] in ("pyspark", "py4j") for name in sys.modules)}


def naps(seconds: float) -> float:
    """Short sleeps in a Python loop: an interruption lands within one of them."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return seconds


def one_long_nap(seconds: float) -> float:
    """One C call for the whole time: nothing in Python can interrupt it."""
    time.sleep(seconds)
    return seconds
