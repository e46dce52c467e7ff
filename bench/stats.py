"""Percentiles and the one row type every scenario returns."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Row:
    """One line of the table: a system measured in a scenario.

    ``metric`` names which of p50/p99/throughput/value the ratio compares: the ratio is this
    row's metric divided by the baseline row's (same scenario and ``group``).
    """

    scenario: str
    system: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    throughput: float | None = None  # per second; ``unit`` says of what (jobs/s, req/s)
    unit: str = ""
    value: float | None = None  # any other single number (total time, memory)
    value_unit: str = ""
    samples: int = 0
    baseline: bool = False
    group: str = ""  # rows compared with one another (e.g. "n=1e3"); the baseline is in it
    metric: str = "p50_ms"
    lower_is_better: bool = True
    ratio: float | None = None
    note: str = ""
    key: str = ""  # a stable name for the targets check (report.py), e.g. "s2.seq.sparkgate"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_latencies(cls, scenario: str, system: str, latencies_ms: list[float],
                       **kw: Any) -> Row:
        return cls(scenario, system, p50_ms=percentile(latencies_ms, 50),
                   p99_ms=percentile(latencies_ms, 99), samples=len(latencies_ms), **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fill_ratios(rows: list[Row]) -> None:
    """Set each row's ratio to its metric over its group's baseline's metric."""
    baselines = {(r.scenario, r.group): r for r in rows if r.baseline}
    for row in rows:
        base = baselines.get((row.scenario, row.group))
        if base is None:
            continue
        mine, theirs = getattr(row, row.metric), getattr(base, row.metric)
        if mine is not None and theirs:
            row.ratio = mine / theirs
