"""A job's arguments made the Python values its function declares, in the worker, just before
the call: the JSON the gateway checked (``validate_arguments``) becomes dataclasses, TypedDicts
(dicts), pydantic models, Enum members, datetimes, dates, Decimals and floats, at any depth.

The classes are the ones the signature was read from: the function's own module, where the
gateway found them in the source (jobs/signatures/classes.py).
"""

from __future__ import annotations

import datetime
import decimal
import functools
import inspect
from collections.abc import Callable
from typing import Any

from sparkgate.jobs.signatures.model import ArgType, Signature


class ArgumentNotAccepted(ValueError):
    """An argument that fits the schema was refused when made its Python value: a
    dataclass's ``__post_init__`` or a pydantic model's validators raised. The message names the
    argument and says what the class said; there is no traceback of sparkgate's to show."""


def python_arguments(signature: Signature, arguments: dict[str, Any],
                     fn: Callable[..., Any]) -> dict[str, Any]:
    """``arguments`` (JSON values, as the gateway checked them) as ``fn`` declares them."""
    namespace = inspect.unwrap(fn).__globals__
    types = {p.name: p.type for p in signature.params}
    return {name: _as_python(types[name], value, namespace, name)
            if name in types and _builds(types[name]) else value
            for name, value in arguments.items()}


@functools.cache
def _builds(t: ArgType) -> bool:
    """Whether a ``t`` holds anything but JSON values: the gateway made the floats floats
    already (``validate_arguments``), so a list of a million numbers is not copied again."""
    if t.kind in ("object", "datetime", "date", "decimal") or (t.kind == "enum" and t.name):
        return True
    return t.of is not None and _builds(t.of)


def _as_python(t: ArgType, value: Any, namespace: dict[str, Any], path: str) -> Any:
    if value is None:
        return None
    converter = _CONVERTERS.get(t.kind)
    if converter is not None:
        return converter(value)
    if t.kind == "optional":
        assert t.of is not None
        return _as_python(t.of, value, namespace, path)
    if t.kind == "list" and t.of is not None:
        return [_as_python(t.of, v, namespace, f"{path}[{i}]") for i, v in enumerate(value)]
    if t.kind == "dict" and t.of is not None:
        return {k: _as_python(t.of, v, namespace, f"{path}.{k}") for k, v in value.items()}
    if t.kind == "enum" and t.name is not None:
        return _build(namespace, t.name, path, lambda cls: cls(value))
    if t.kind == "object":
        return _object(t, value, namespace, path)
    return value  # int, str, bool, any, a Literal's value


def _object(t: ArgType, value: dict[str, Any], namespace: dict[str, Any], path: str) -> Any:
    assert t.name is not None
    if t.model == "pydantic":  # pydantic converts its fields itself, validators included
        return _build(namespace, t.name, path, lambda cls: cls.model_validate(value))
    types = {f.name: f.type for f in t.fields}
    fields = {k: _as_python(types[k], v, namespace, f"{path}.{k}") for k, v in value.items()}
    if t.model == "typeddict":
        return fields
    return _build(namespace, t.name, path, lambda cls: cls(**fields))


def _build(namespace: dict[str, Any], name: str, path: str,
           make: Callable[[Any], Any]) -> Any:
    cls = namespace.get(name)
    if not isinstance(cls, type):
        raise ArgumentNotAccepted(f"argument {path}: the module has no class {name} any more, "
                                  "which its source declares")
    try:
        return make(cls)
    except Exception as exc:
        text = str(exc).strip()
        raise ArgumentNotAccepted(
            f"argument {path}: {name} refused it: {type(exc).__name__}: {text}") from None


def _decimal(value: Any) -> decimal.Decimal:
    # str() first: Decimal(0.1) is 0.1000000000000000055...; Decimal("0.1") is what was sent.
    return decimal.Decimal(str(value))


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "float": float,
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "decimal": _decimal,
}
