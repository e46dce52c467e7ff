"""Turn what a function returned into JSON, or say exactly why it cannot be."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import re
import sys
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
    """A JSON-ready copy of ``value``, by one rule (docs/functions.md, "Results"): JSON values
    as they are; Spark Rows, dataclasses and Mappings as objects; lists, tuples and sets as
    arrays; pandas DataFrames as arrays of records and Series as arrays, their missing values
    null; numpy arrays as arrays and numpy scalars as numbers; Enum members as their values;
    Decimals as numbers; dates and times as ISO 8601 strings; a pydantic model as its own JSON
    (``model_dump(mode="json")``). Anything else raises ResultNotSerializable naming the type
    and where it is in the result."""
    if isinstance(value, enum.Enum):  # before int and str: an IntEnum is an int
        return to_json_value(value.value, path)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ResultNotSerializable(f"{path} is {value}, which JSON cannot represent")
        return value
    if hasattr(value, "asDict") and callable(value.asDict):  # pyspark Row
        return to_json_value(value.asDict(recursive=True), path)
    return _composite(value, path)


def _composite(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return {_key(k, path): to_json_value(v, _item_path(path, k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    table = _pandas_value(value)
    if table is not None:
        return to_json_value(table, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json_value(getattr(value, f.name), _item_path(path, f.name))
                for f in dataclasses.fields(value)}
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return to_json_value(value.model_dump(mode="json"), path)
    return _scalar(value, path)


def _pandas_value(value: Any) -> list[Any] | None:
    """A DataFrame's records or a Series' values, missing ones (NaN, None, NaT, NA) as None;
    None for anything else. The index is left out: ``reset_index()`` keeps it as a column."""
    pandas = sys.modules.get("pandas")  # loaded if the function made a DataFrame
    if pandas is None or not isinstance(value, pandas.DataFrame | pandas.Series):
        return None
    present = value.astype(object).where(value.notna(), None)
    if isinstance(value, pandas.DataFrame):
        records: list[Any] = present.to_dict(orient="records")
        return records
    values: list[Any] = present.tolist()
    return values


def _scalar(value: Any, path: str) -> Any:
    if isinstance(value, decimal.Decimal):
        return to_json_value(float(value), path)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy array or scalar
        return to_json_value(value.tolist(), path)
    raise ResultNotSerializable(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which is not "
        "JSON-serializable; return dicts, lists, strings, numbers, booleans or None, or the "
        "values docs/functions.md lists under Results"
    )


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _item_path(path: str, key: Any) -> str:
    """``result.rows``, but ``result["a.b"]`` where a dotted path would be ambiguous."""
    text = str(key)
    return f"{path}.{text}" if _IDENTIFIER.match(text) else f"{path}[{json.dumps(text)}]"


def _key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float, bool)) or key is None:
        return str(key)
    raise ResultNotSerializable(
        f"{path} has a key of type {type(key).__name__}; keys must be strings"
    )
