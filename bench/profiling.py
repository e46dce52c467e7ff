"""``bench/run --profile``: py-spy samples a server process while a scenario loads it, and a
summary says where its CPU time went (inclusive and own time per function).

The raw stacks (py-spy's collapsed format, one ``frame;frame;... count`` per line) land in
bench/results/ beside the JSON; feed them to any flame graph tool (speedscope, inferno). Numbers
of a profiled run carry py-spy's cost (sampling at 100 Hz, without pausing the process).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import Bench, log
from bench.infra import REPO

RESULTS = REPO / "bench" / "results"
_LINE = re.compile(r":\d+\)$")


@contextmanager
def profiled(b: Bench, name: str, pid: int, gil: bool = False) -> Iterator[None]:
    """``gil``: sample only the thread holding the GIL (where the CPU goes), not every busy
    thread (where the time goes, waits on sockets included)."""
    if not b.shared.get("profile"):
        yield
        return
    out = RESULTS / f"{b.shared['stamp']}-profile-{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = b.procs.start(f"py-spy-{name}", [
        "py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
        "--nonblocking", "--output", str(out), *(["--gil"] if gil else [])])
    time.sleep(1.0)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            b.procs.stop(spy)
    if out.exists():
        summary = summarize(out)
        out.with_name(out.stem + "-summary.txt").write_text(summary)
        log.info("profile of %s: %s\n%s", name, out.relative_to(REPO),
                 "\n".join(summary.splitlines()[:30]))
        b.notes.append(f"Profile of {name} (py-spy{', GIL holder only' if gil else ''}): "
                       f"`{out.relative_to(REPO)}` and its `-summary.txt`.")


def summarize(path: Path, top: int = 40) -> str:
    """Per function: the share of samples it was on the stack (inclusive), and at the top
    (own time)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "inclusive  own     function"]
    for frame, n in inclusive.most_common(top):
        lines.append(f"{100 * n / total:6.1f}%  {100 * own[frame] / total:5.1f}%  {frame}")
    lines += ["", "own time, top:"]
    for frame, n in own.most_common(top):
        lines.append(f"{100 * n / total:6.1f}%  {frame}")
    return "\n".join(lines) + "\n"
