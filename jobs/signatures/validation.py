"""Checking a job's arguments against its function's signature, with errors that name every
problem (bounded in number and size).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sparkgate.jobs.errors import InvalidArguments
from sparkgate.jobs.signatures.model import DECIMAL_PATTERN, JSON_SCALARS, ArgType, Signature

# The JSON value to the right of "got" is cut here so one huge string cannot flood an error.
_MAX_SHOWN_CHARS = 40
# Bounds on an error's size: a body with a million bad items must not become a huge response.
_MAX_DETAILS = 100
_MAX_MESSAGE_PROBLEMS = 10


@dataclass(frozen=True)
class _Problem:
    field: str
    expected: str
    got: str
    text: str  # the sentence for the error message


class _Problems:
    """Collects problems; counts all, keeps the first _MAX_DETAILS."""

    def __init__(self) -> None:
        self.kept: list[_Problem] = []
        self.count = 0

    def add(self, field: str, expected: str, got: str, text: str | None = None) -> None:
        self.count += 1
        if len(self.kept) < _MAX_DETAILS:
            text = text or f"{field}: expected {expected}, got {got}"
            self.kept.append(_Problem(field, expected, got, text))


def validate_arguments(sig: Signature, arguments: object) -> dict[str, Any]:
    """``arguments`` (the parsed request body) as the function declares them, if they fit
    ``sig``; else one InvalidArguments that lists every problem.

    JSON does not tell 2 from 2.0, so integers given for ``float`` arguments become floats:
    a function that builds a Spark ``double`` column from them must get floats.
    """
    if not isinstance(arguments, dict):
        raise InvalidArguments(
            f"the request body must be a JSON object of arguments, got {_json_type(arguments)}",
            [{"field": "(body)", "expected": "object", "got": _describe_value(arguments)}],
        )
    problems = _Problems()
    by_name = {p.name: p for p in sig.params}
    for key, value in arguments.items():
        param = by_name.get(key)
        if param is None:
            _unknown(sig, str(key), problems)
        else:
            _check(param.type, value, str(key), problems)
    for p in sig.params:
        if p.required and p.name not in arguments:
            expected = _describe_type(p.type)
            problems.add(p.name, expected, "nothing", f"{p.name}: missing ({expected})")
    if problems.count:
        raise _invalid(problems)
    return {k: _as_declared(by_name[k].type, v) for k, v in arguments.items()}


def _as_declared(t: ArgType, value: Any) -> Any:
    """``value`` (already checked against ``t``) with integers made floats where ``t`` says so,
    at any depth (an object's fields too)."""
    if t.kind == "float":
        return float(value)
    if t.kind == "object" and isinstance(value, dict):
        fields = {f.name: f.type for f in t.fields}
        return {key: _as_declared(fields[key], item) for key, item in value.items()}
    if value is None or t.of is None or t.kind not in ("list", "dict", "optional"):
        return value
    if t.kind == "optional":
        return _as_declared(t.of, value)
    if t.kind == "list":
        return [_as_declared(t.of, item) for item in value]
    return {key: _as_declared(t.of, item) for key, item in value.items()}


def _unknown(sig: Signature, key: str, problems: _Problems) -> None:
    names = ", ".join(p.name for p in sig.params)
    expected = f"one of: {names}" if names else "no arguments"
    problems.add(key, expected, key, f"{key}: unknown argument (expected {expected})")


def _invalid(problems: _Problems) -> InvalidArguments:
    texts = [p.text for p in problems.kept[:_MAX_MESSAGE_PROBLEMS]]
    if problems.count > len(texts):
        texts.append(f"and {problems.count - len(texts)} more")
    noun = "invalid argument" if problems.count == 1 else f"{problems.count} invalid arguments"
    details = [{"field": p.field, "expected": p.expected, "got": p.got} for p in problems.kept]
    return InvalidArguments(f"{noun}: " + "; ".join(texts), details)


def _check(
    t: ArgType, value: Any, path: str, problems: _Problems, label: str | None = None
) -> None:
    """Add a problem for each place where ``value`` does not fit ``t``. ``label`` is what to call
    the expected type if the value itself does not fit (an Optional says "... or null")."""
    if t.kind == "any":
        return
    if t.kind == "optional":
        if value is not None:
            assert t.of is not None
            _check(t.of, value, path, problems, label or _describe_type(t))
        return
    if not _fits(t, value):
        expected = label or _describe_type(t)
        if t.kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            expected = "finite " + expected  # only NaN, infinities and huge integers fail here
        problems.add(path, expected, _describe_value(value))
        return
    _check_inside(t, value, path, problems)


def _check_inside(t: ArgType, value: Any, path: str, problems: _Problems) -> None:
    """The items, values or fields of ``value``, which has the shape of ``t``."""
    if t.kind == "object":
        _check_fields(t, value, path, problems)
        return
    item_type = t.of
    if item_type is None or item_type.kind == "any":
        return
    if t.kind == "list":
        for i, item in enumerate(value):
            _check(item_type, item, f"{path}[{i}]", problems)
    else:
        for key, item in value.items():
            _check(item_type, item, _key_path(path, str(key)), problems)


def _check_fields(t: ArgType, value: dict[str, Any], path: str, problems: _Problems) -> None:
    for key, item in value.items():
        field = t.field(str(key))
        where = _key_path(path, str(key))
        if field is None:
            names = ", ".join(f.name for f in t.fields) or "no fields"
            problems.add(where, f"one of: {names}", str(key),
                         f"{where}: unknown field of {t.name} (expected one of: {names})")
        else:
            _check(field.type, item, where, problems)
    for f in t.fields:
        if f.required and f.name not in value:
            expected = _describe_type(f.type)
            where = _key_path(path, f.name)
            problems.add(where, expected, "nothing", f"{where}: missing ({expected})")


_DECIMAL = re.compile(DECIMAL_PATTERN)
_PARSERS = {"datetime": datetime.datetime.fromisoformat, "date": datetime.date.fromisoformat}


def _fits(t: ArgType, value: Any) -> bool:
    """Does ``value`` have the JSON shape of ``t`` (items and fields unchecked)?"""
    kind = t.kind
    if kind in ("enum", "datetime", "date", "decimal"):
        return _fits_value(t, value)
    if kind == "int":
        # bool is an int in Python but not in JSON; 1.5 and 2.0 are numbers, not integers.
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        if isinstance(value, float):
            return math.isfinite(value)  # json.loads lets NaN and Infinity through
        return isinstance(value, int) and not isinstance(value, bool) and _fits_double(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)  # a dict or an object


def _fits_value(t: ArgType, value: Any) -> bool:
    """Is ``value`` one of an enum's values, an ISO date(-time), a decimal?"""
    if t.kind == "enum":
        return any(type(v) is type(value) and v == value for v in t.values)
    if t.kind == "decimal":
        if isinstance(value, str):
            return _DECIMAL.fullmatch(value) is not None
        return _fits(ArgType("float"), value)
    # The worker makes the value with the same function (workers/arguments.py).
    try:
        _PARSERS[t.kind](value)
    except (TypeError, ValueError):
        return False
    return True


_MAX_ENUM_SHOWN = 10
_DESCRIPTIONS = {
    "datetime": "ISO 8601 date-time string",
    "date": "ISO 8601 date string",
    "decimal": "decimal (number or numeric string)",
}


def _fits_double(value: int) -> bool:
    """An integer sent for a float must become one (10**400 cannot)."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _key_path(path: str, key: str) -> str:
    # `weights.AAPL`, but `weights["BRK.B"]` when the key would make the dotted path ambiguous.
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"


def _describe_type(t: ArgType) -> str:
    if t.kind in JSON_SCALARS:
        return JSON_SCALARS[t.kind]
    if t.kind == "any":
        return "any value"
    if t.kind in _DESCRIPTIONS:
        return _DESCRIPTIONS[t.kind]
    if t.kind == "object":
        return f"{t.name} object"
    if t.kind == "enum":
        shown = ", ".join(json.dumps(v) for v in t.values[:_MAX_ENUM_SHOWN])
        more = ", ..." if len(t.values) > _MAX_ENUM_SHOWN else ""
        return f"one of {shown}{more}"
    assert t.of is not None
    inner = _describe_type(t.of)
    if t.kind == "optional":
        return f"{inner} or null"
    if t.of.kind == "optional":
        inner = f"({inner})"
    if t.kind == "list":
        return "array" if t.of.kind == "any" else f"array of {inner}"
    return "object" if t.of.kind == "any" else f"object with {inner} values"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe_value(value: object) -> str:
    """What came, briefly: ``string "abc"``, ``number 1.5``, ``array of 3``, ``object``."""
    kind = _json_type(value)
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, str):
        shown = json.dumps(value[:_MAX_SHOWN_CHARS], ensure_ascii=False)
        return f'string {shown[:-1]}…"' if len(value) > _MAX_SHOWN_CHARS else f"string {shown}"
    if isinstance(value, float):
        return f"number {json.dumps(value)}"  # NaN and Infinity spelt as json.loads reads them
    if isinstance(value, int):
        return f"number {_short_int(value)}"
    if isinstance(value, list):
        return f"array of {len(value)}"
    return kind


def _short_int(value: int) -> str:
    try:
        text = str(value)
    except ValueError:  # more digits than Python will print
        return "(very large)"
    return text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS] + "…"
