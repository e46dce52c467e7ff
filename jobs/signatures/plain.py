"""Functions written as a plain def: whether the first parameter is a Spark handle (its type
hint, or its name when it has none), and the arguments from the other parameters' hints and
literal defaults.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from sparkgate.jobs.errors import InvalidArtifact
from sparkgate.jobs.signatures.hints import (
    Classes,
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
    "int, float, str, bool, Any, list, list[X], dict, dict[str, X], Optional[X] or X | None, "
    "Literal[...], datetime, date, Decimal, and a dataclass, TypedDict, pydantic BaseModel or "
    "Enum defined in the artifact: in the function's file, or imported there from another "
    "module of the same package artifact"
)
_HANDLE_ANNOTATIONS = {
    "SparkSession": "session",
    "SparkContext": "context",
    "SQLContext": "sql_context",
}
# An unannotated first parameter with one of these names receives the SparkSession. Before
# plain functions every first parameter was the handle, and these are the names the examples,
# the docs and Mist's users give it; any other unannotated first parameter is an argument.
HANDLE_NAMES = frozenset({"spark", "sc", "session"})


def plain_signature(fn: ast.FunctionDef, where: Where,
                    classes: Classes | None = None) -> Signature:
    """What ``fn``'s def declares: the Spark handle it takes, if any (see ``spark_handle``), and
    its arguments' hints and literal defaults; ``classes``: those its hints may name."""
    handle = spark_handle(fn)
    return Signature(handle, def_params(fn, where, typed=True, after_handle=handle is not None,
                                        classes=classes),
                     streaming=returns_stream(fn))


def returns_stream(fn: ast.FunctionDef) -> bool:
    """Whether ``fn`` is declared to return a running stream: ``-> StreamingQuery`` (matched by
    the last dotted name, quoted or not), which makes its jobs streaming jobs."""
    if fn.returns is None:
        return False
    try:
        return last_name(unstring(fn.returns)) == "StreamingQuery"
    except UnsupportedHint:
        return False


def spark_handle(fn: ast.FunctionDef) -> str | None:
    """The handle ``fn``'s first positional parameter takes: the one its hint names
    (SparkSession, SparkContext or SQLContext, matched by the last dotted name, quoted or not),
    or the SparkSession when it has no hint and one of ``HANDLE_NAMES``. None: a plain
    function, all of whose parameters are arguments."""
    params = positional_params(fn)
    if not params:
        return None
    first = params[0]
    if first.annotation is None:
        return "session" if first.arg in HANDLE_NAMES else None
    try:
        name = last_name(unstring(first.annotation))
    except UnsupportedHint:
        return None
    return _HANDLE_ANNOTATIONS.get(name or "")


def positional_params(fn: ast.FunctionDef) -> list[ast.arg]:
    return [*fn.args.posonlyargs, *fn.args.args]


def def_params(fn: ast.FunctionDef, where: Where, typed: bool, after_handle: bool,
               classes: Classes | None = None) -> tuple[Param, ...]:
    """The arguments, from the def itself: every parameter, or those after the first when
    ``after_handle`` (the first takes the Spark handle); ``typed=False`` reads no hints."""
    _refuse_varargs(fn, where)
    skipped = 1 if after_handle else 0
    positional = positional_params(fn)
    if len(fn.args.posonlyargs) > skipped:
        bad = fn.args.posonlyargs[skipped]
        raise where.error(
            f"parameter {bad.arg!r} is positional-only: arguments are passed by name from a JSON "
            "object, so only the Spark handle may come before '/'",
            bad.lineno,
        )
    # Defaults belong to the last positional parameters, and to keyword-only ones one by one.
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(fn.args.defaults))
    defaults += fn.args.defaults
    pairs = list(zip(positional, defaults, strict=True))[skipped:]
    pairs += zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True)
    # A first parameter whose hint is neither JSON nor a Spark handle may well be a Spark
    # handle misspelt: its error says how a handle is written.
    first = positional[0] if positional and not after_handle else None
    return tuple(_def_param(arg, default, where, typed, _HANDLE_NOTE if arg is first else "",
                            classes)
                 for arg, default in pairs)


def _refuse_varargs(fn: ast.FunctionDef, where: Where) -> None:
    for star, node in (("*", fn.args.vararg), ("**", fn.args.kwarg)):
        if node is not None:
            raise where.error(
                f"'{star}{node.arg}' cannot be used: arguments come by name from a JSON object "
                "and must each be declared so they can be checked; name each parameter",
                node.lineno,
            )


_HANDLE_NOTE = (
    "; if it is meant to receive Spark, its hint must be SparkSession, SparkContext or SQLContext"
)


def _def_param(arg: ast.arg, default: ast.expr | None, where: Where, typed: bool,
               note: str, classes: Classes | None) -> Param:
    arg_type = ANY
    if typed and arg.annotation is not None:
        try:
            arg_type = parse_hint(arg.annotation, classes)
        except UnsupportedHint as e:
            why = f" ({e})" if str(e) else ""
            raise where.error(
                f"parameter {arg.arg!r} has type hint {ast.unparse(arg.annotation)!r}, which "
                f"cannot be taken from JSON{why}; supported: {_SUPPORTED_HINTS}{note}",
                arg.lineno,
            ) from None
    if default is None:
        return Param(arg.arg, arg_type, required=True)
    known, value = literal(default)
    if known and value is None:
        # `x: int = None` is how much code spells Optional[int].
        arg_type = optional(arg_type)
    return Param(arg.arg, arg_type, required=False, default=value, has_default=known)
