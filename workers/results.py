"""Turn what a function returned into JSON, or say exactly why it cannot be."""

from __future__ import annotations

import datetime
import decimal
import json
import math
from collections.abc import Mapping
from typing import Any


class ResultNotSerializable(TypeError):
    pass


class ResultTooLarge(ValueError):
    """The result's JSON is larger than ``max_result_bytes``: it would bloat the database and
    every answer that carries it."""


def checked_result(value: Any, max_bytes: int) -> Any:
    """``to_json_value(value)``, if its JSON is at most ``max_bytes`` long."""
    converted = to_json_value(value)
    # ASCII-only JSON, as the database column stores it: its length is its size in bytes.
    size = len(json.dumps(converted, allow_nan=False))
    if size > max_bytes:
        raise ResultTooLarge(
            f"result is {size:,} bytes of JSON; the limit is max_result_bytes = {max_bytes:,}: "
            "return a summary (aggregates, a sample), or write large outputs to storage and "
            "return where they are"
        )
    return converted


def to_json_value(value: Any, path: str = "result") -> Any:
    """A JSON-ready copy of ``value``: Spark Rows, numpy scalars, Decimals, dates converted."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ResultNotSerializable(f"{path} is {value}, which JSON cannot represent")
        return value
    if hasattr(value, "asDict") and callable(value.asDict):  # pyspark Row
        return to_json_value(value.asDict(recursive=True), path)
    if isinstance(value, Mapping):
        return {_key(k, path): to_json_value(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return _scalar(value, path)


def _scalar(value: Any, path: str) -> Any:
    if isinstance(value, decimal.Decimal):
        return to_json_value(float(value), path)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy array or scalar
        return to_json_value(value.tolist(), path)
    raise ResultNotSerializable(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which is not "
        "JSON-serializable; return dicts, lists, strings, numbers, booleans or None"
    )


def _key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float, bool)) or key is None:
        return str(key)
    raise ResultNotSerializable(
        f"{path} has a key of type {type(key).__name__}; keys must be strings"
    )
