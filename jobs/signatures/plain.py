"""Functions written as a plain def: the Spark handle from the first parameter's type hint, the
arguments from the other parameters' hints and literal defaults.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from sparkgate.jobs.errors import InvalidArtifact
from sparkgate.jobs.signatures.hints import (
    UnsupportedHint,
    last_name,
    literal,
    parse_hint,
    unstring,
)
from sparkgate.jobs.signatures.model import ANY, Param, Signature, optional


@dataclass(frozen=True)
class Where:
    """Which function of which file is being read, so every error can say so."""

    filename: str
    function: str

    def error(self, message: str, line: int | None = None) -> InvalidArtifact:
        details: dict[str, Any] = {"file": self.filename, "function": self.function}
        if line is not None:
            details["line"] = line
        return InvalidArtifact(f"{self.function} in {self.filename}: {message}", details)


_SUPPORTED_HINTS = (
    "int, float, str, bool, Any, list, list[X], dict, dict[str, X], Optional[X] or X | None"
)
_HANDLE_ANNOTATIONS = {
    "SparkSession": "session",
    "SparkContext": "context",
    "SQLContext": "sql_context",
}


def plain_signature(fn: ast.FunctionDef, where: Where) -> Signature:
    """What ``fn``'s def declares: its hints (none means SparkSession, or any value) and its
    literal defaults."""
    handle = _handle_from_annotation(first_param(fn, where), where)
    return Signature(handle, def_params(fn, where, typed=True), mist=False)


def positional_params(fn: ast.FunctionDef) -> list[ast.arg]:
    return [*fn.args.posonlyargs, *fn.args.args]


def first_param(fn: ast.FunctionDef, where: Where) -> ast.arg:
    params = positional_params(fn)
    if not params:
        raise where.error(
            "has no positional parameter: its first parameter receives the Spark handle "
            "(SparkSession, SparkContext or SQLContext)",
            fn.lineno,
        )
    return params[0]


def _handle_from_annotation(param: ast.arg, where: Where) -> str:
    if param.annotation is None:
        return "session"
    try:
        name = last_name(unstring(param.annotation))
    except UnsupportedHint:
        name = None
    if name in _HANDLE_ANNOTATIONS:
        return _HANDLE_ANNOTATIONS[name]
    raise where.error(
        f"first parameter {param.arg!r} receives the Spark handle, so its hint "
        f"{ast.unparse(param.annotation)!r} must be SparkSession, SparkContext or SQLContext "
        "(or left out, meaning SparkSession)",
        param.lineno,
    )


def def_params(fn: ast.FunctionDef, where: Where, typed: bool) -> tuple[Param, ...]:
    """The parameters after the first, from the def itself; ``typed=False`` reads no hints."""
    _refuse_varargs(fn, where)
    positional = positional_params(fn)
    if len(fn.args.posonlyargs) > 1:
        bad = fn.args.posonlyargs[1]
        raise where.error(
            f"parameter {bad.arg!r} is positional-only: arguments are passed by name from a JSON "
            "object, so only the Spark handle may come before '/'",
            bad.lineno,
        )
    # Defaults belong to the last positional parameters, and to keyword-only ones one by one.
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(fn.args.defaults))
    defaults += fn.args.defaults
    pairs = list(zip(positional, defaults, strict=True))[1:]
    pairs += zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True)
    return tuple(_def_param(arg, default, where, typed) for arg, default in pairs)


def _refuse_varargs(fn: ast.FunctionDef, where: Where) -> None:
    for star, node in (("*", fn.args.vararg), ("**", fn.args.kwarg)):
        if node is not None:
            raise where.error(
                f"'{star}{node.arg}' cannot be used: arguments come by name from a JSON object "
                "and must each be declared so they can be checked; name each parameter",
                node.lineno,
            )


def _def_param(arg: ast.arg, default: ast.expr | None, where: Where, typed: bool) -> Param:
    arg_type = ANY
    if typed and arg.annotation is not None:
        try:
            arg_type = parse_hint(arg.annotation)
        except UnsupportedHint:
            raise where.error(
                f"parameter {arg.arg!r} has type hint {ast.unparse(arg.annotation)!r}, which "
                f"cannot be taken from JSON; supported: {_SUPPORTED_HINTS}",
                arg.lineno,
            ) from None
    if default is None:
        return Param(arg.arg, arg_type, required=True)
    known, value = literal(default)
    if known and value is None:
        # `x: int = None` is how much code spells Optional[int].
        arg_type = optional(arg_type)
    return Param(arg.arg, arg_type, required=False, default=value, has_default=known)
