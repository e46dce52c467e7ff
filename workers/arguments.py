"""A job's arguments made the Python values its function declares, in the worker, just before
the call: the JSON the gateway checked (``validate_arguments``) becomes dataclasses, TypedDicts
(dicts), pydantic models, Enum members, datetimes, dates, Decimals and floats, at any depth.

The classes are the ones the signature was read from (jobs/signatures/classes.py): in a
single-file artifact the function's own module's, in a package artifact those of the module
each type names (``ArgType.module``), which the worker imported with the function.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import inspect
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from sparkgate.jobs.signatures.model import ArgType, Signature


class ArgumentNotAccepted(ValueError):
    """An argument that fits the schema was refused when made its Python value: a
    dataclass's ``__post_init__`` or a pydantic model's validators raised. The message names the
    argument and says what the class said; there is no traceback of sparkgate's to show."""


# Where a worker finds the artifact's classes: by ArgType.module, None being the function's
# own module (a single-file artifact's).
Namespaces = Mapping[str | None, Mapping[str, Any]]


def python_arguments(signature: Signature, arguments: dict[str, Any], fn: Callable[..., Any],
                     modules: Mapping[str, ModuleType]) -> dict[str, Any]:
    """``arguments`` (JSON values, as the gateway checked them) as ``fn`` declares them;
    ``modules``: the package artifact's modules that define its classes, by name."""
    namespaces: Namespaces = {None: inspect.unwrap(fn).__globals__,
                              **{name: vars(module) for name, module in modules.items()}}
    types = {p.name: p.type for p in signature.params}
    return {name: _as_python(types[name], value, namespaces, name)
            if name in types and _builds(types[name]) else value
            for name, value in arguments.items()}


@functools.cache
def _builds(t: ArgType) -> bool:
    """Whether a ``t`` holds anything but JSON values: the gateway made the floats floats
    already (``validate_arguments``), so a list of a million numbers is not copied again."""
    if t.kind in ("object", "datetime", "date", "decimal") or (t.kind == "enum" and t.name):
        return True
    return t.of is not None and _builds(t.of)


def _as_python(t: ArgType, value: Any, namespaces: Namespaces, path: str) -> Any:
    if value is None:
        return None
    converter = _CONVERTERS.get(t.kind)
    if converter is not None:
        return converter(value)
    if t.kind == "optional":
        assert t.of is not None
        return _as_python(t.of, value, namespaces, path)
    if t.kind == "list" and t.of is not None:
        return [_as_python(t.of, v, namespaces, f"{path}[{i}]") for i, v in enumerate(value)]
    if t.kind == "dict" and t.of is not None:
        return {k: _as_python(t.of, v, namespaces, f"{path}.{k}") for k, v in value.items()}
    if t.kind == "enum" and t.name is not None:
        return _build(namespaces, t, path, lambda cls: cls(value))
    if t.kind == "object":
        return _object(t, value, namespaces, path)
    return value  # int, str, bool, any, a Literal's value


def _object(t: ArgType, value: dict[str, Any], namespaces: Namespaces, path: str) -> Any:
    if t.model == "pydantic":  # pydantic converts its fields itself, validators included
        return _build(namespaces, t, path, lambda cls: cls.model_validate(value))
    types = {f.name: f.type for f in t.fields}
    fields = {k: _as_python(types[k], v, namespaces, f"{path}.{k}") for k, v in value.items()}
    if t.model == "typeddict":
        return fields
    return _build(namespaces, t, path, lambda cls: cls(**fields))


def _build(namespaces: Namespaces, t: ArgType, path: str,
           make: Callable[[Any], Any]) -> Any:
    cls = namespaces.get(t.module, {}).get(t.name or "")
    if not isinstance(cls, type):
        where = "the module" if t.module is None else f"module {t.module}"
        raise ArgumentNotAccepted(f"argument {path}: {where} has no class {t.name} any more, "
                                  "which its source declares")
    try:
        return make(cls)
    except Exception as exc:
        text = str(exc).strip()
        raise ArgumentNotAccepted(
            f"argument {path}: {t.name} refused it: {type(exc).__name__}: {text}") from None


def _decimal(value: Any) -> decimal.Decimal:
    # str() first: Decimal(0.1) is 0.1000000000000000055...; Decimal("0.1") is what was sent.
    return decimal.Decimal(str(value))


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "float": float,
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "decimal": _decimal,
}
