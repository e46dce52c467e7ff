"""Plain functions for the result cache's tests: each run appends a line to ``path``, so a
test counts how many times a call really ran."""

import time


def counted(path: str, x: int = 0, delay_s: float = 0.0) -> dict:
    with open(path, "a") as runs:
        runs.write("run\n")
    time.sleep(delay_s)
    return {"x": x, "path": path}


def failing(path: str, delay_s: float = 0.0) -> int:
    with open(path, "a") as runs:
        runs.write("run\n")
    time.sleep(delay_s)
    raise ValueError("failing fails")
