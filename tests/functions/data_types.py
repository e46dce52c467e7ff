"""Every argument and result type beyond JSON's own, for tests/test_data_types.py: the types
are this file's own classes, read by the gateway from the source and built by the worker."""

from __future__ import annotations

import datetime
import decimal
import enum
from dataclasses import dataclass, field
from typing import Literal, NotRequired, Optional, TypedDict

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


@dataclass
class Point:
    x: float
    y: float = 0.0
    tags: list[str] = field(default_factory=list)


class Item(TypedDict):
    name: str
    price: decimal.Decimal
    note: NotRequired[str]


class Line(BaseModel):
    sku: str
    price: decimal.Decimal


class Order(BaseModel):
    id: int
    placed: datetime.datetime
    lines: list[Line] = Field(default_factory=list)


def types(point: Point, items: list[Item], order: Order, colour: Colour, size: Size,
          mode: Literal["fast", "exact"], when: datetime.datetime, day: datetime.date,
          amount: decimal.Decimal, weights: list[dict[str, float]],
          maybe: Optional[Point] = None) -> dict:
    """What each argument arrived as: its Python type and value."""
    return {
        "point": [type(point).__name__, point.x, type(point.x).__name__, point.y, point.tags],
        "items": [[type(i).__name__, i["name"], repr(i["price"]), i.get("note")] for i in items],
        "order": [type(order).__name__, order.id, order.placed.isoformat(),
                  [repr(line.price) for line in order.lines]],
        "colour": repr(colour), "size": repr(size), "mode": mode,
        "when": repr(when), "day": repr(day), "amount": repr(amount),
        "weights": [[type(v).__name__ for v in w.values()] for w in weights],
        "maybe": None if maybe is None else repr(maybe),
    }


def results() -> dict:
    """One of each result type."""
    frame = pd.DataFrame({"n": [1, 2, 3], "x": [0.5, float("nan"), 2.5],
                          "when": pd.to_datetime(["2026-01-02", None, "2026-01-04"])})
    return {
        "frame": frame,
        "series": frame["x"],
        "array": np.arange(6).reshape(2, 3),
        "scalars": [np.int64(7), np.float32(0.25), np.bool_(True)],
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "day": datetime.date(2026, 1, 2),
        "amount": decimal.Decimal("12.50"),
        "point": Point(1.5, 2.0, ["a"]),
        "colour": Colour.GREEN,
        "order": Order(id=1, placed=datetime.datetime(2026, 1, 2), lines=[]),
    }


def bad_result(kind: str) -> dict:
    """A result with something JSON has no form for, deep inside."""
    return {"rows": [1, 2, 3, {"blob": b"bytes" if kind == "bytes" else object()}]}


def strict(point: Point) -> float:
    return point.x


@dataclass
class Positive:
    value: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError("value must be positive")


def positive(p: Positive) -> int:
    return p.value
