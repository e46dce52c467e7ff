"""Type hints and default values, read from their ``ast`` as the JSON types and values they
stand for.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator
from typing import Any, Protocol

from sparkgate.jobs.signatures.model import (
    ANY,
    BOOL,
    DATE,
    DATETIME,
    DECIMAL,
    FLOAT,
    INT,
    STR,
    ArgType,
    dict_of,
    enum_of,
    list_of,
    optional,
)


class UnsupportedHint(Exception):
    """A hint that cannot describe a JSON value; turned into InvalidArtifact by the caller.
    Its message, when it has one, says why (a class of the file that cannot be read)."""


class Classes(Protocol):
    """The classes a module's hints may name (classes.py): the type a class name, dotted or not
    (``Order``, ``models.Order``), stands for, or None when it names none of them."""

    def resolve(self, name: str) -> ArgType | None: ...


# Hints are matched by their last dotted component: `typing.List`, `t.List` and `List` alike.
SCALAR_HINTS = {"int": INT, "float": FLOAT, "str": STR, "bool": BOOL, "Any": ANY, "object": ANY}
# Sent as strings (decimals: or numbers); a worker makes them the Python values (arguments.py).
_VALUE_HINTS = {"datetime": DATETIME, "date": DATE, "Decimal": DECIMAL}
_LIST_HINTS = frozenset({"list", "List", "Sequence"})
_DICT_HINTS = frozenset({"dict", "Dict", "Mapping"})


def parse_hint(node: ast.expr, classes: Classes | None = None) -> ArgType:
    """The type ``node`` stands for; ``classes``: the classes a (dotted) name may be."""
    node = unstring(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union(list(_flatten_or(node)), classes)
    if isinstance(node, ast.Subscript):
        return _parse_generic(node, classes)
    dotted = dotted_name(node)
    if dotted is not None and classes is not None:
        own = classes.resolve(dotted)
        if own is not None:
            return own
    name = last_name(node)
    if name in SCALAR_HINTS:
        return SCALAR_HINTS[name]
    if name in _VALUE_HINTS:
        return _VALUE_HINTS[name]
    if name in _LIST_HINTS:
        return list_of(ANY)
    if name in _DICT_HINTS:
        return dict_of(ANY)
    raise UnsupportedHint


def _parse_generic(node: ast.Subscript, classes: Classes | None) -> ArgType:
    base = last_name(node.value)
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base in _LIST_HINTS and len(items) == 1:
        return list_of(parse_hint(items[0], classes))
    if base in _DICT_HINTS and len(items) == 2:
        if parse_hint(items[0], classes) != STR:
            raise UnsupportedHint  # JSON object keys are strings
        return dict_of(parse_hint(items[1], classes))
    if base == "Optional" and len(items) == 1:
        return optional(parse_hint(items[0], classes))
    if base == "Union":
        return _union(items, classes)
    if base == "Annotated" and items:  # Annotated[X, ...]: the metadata is for the function
        return parse_hint(items[0], classes)
    if base == "Literal":
        return _literal(items)
    raise UnsupportedHint


def _literal(items: list[ast.expr]) -> ArgType:
    """``Literal["a", "b"]``: one of those strings, integers or booleans; with None, or null."""
    values: list[Any] = []
    for item in items:
        known, value = literal(item)
        if not known or isinstance(value, float | list | dict):
            raise UnsupportedHint("Literal values must be strings, integers, booleans or None")
        values.append(value)
    kept = [v for v in values if v is not None]
    if not kept:
        raise UnsupportedHint
    of = enum_of(kept)
    return optional(of) if len(kept) < len(values) else of


def _flatten_or(node: ast.expr) -> Iterator[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        yield from _flatten_or(node.left)
        yield from _flatten_or(node.right)
    else:
        yield node


def _union(members: list[ast.expr], classes: Classes | None) -> ArgType:
    """Only ``X`` with ``None`` is a union JSON can tell apart; ``int | str`` is refused."""
    unstrung = [unstring(m) for m in members]
    others = [m for m in unstrung if not (isinstance(m, ast.Constant) and m.value is None)]
    if len(others) != 1:
        raise UnsupportedHint
    inner = parse_hint(others[0], classes)
    return optional(inner) if len(others) < len(unstrung) else inner


def unstring(node: ast.expr) -> ast.expr:
    """The expression inside a string annotation (``"list[int]"``), or the node itself."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return ast.parse(node.value.strip(), mode="eval").body
        except (SyntaxError, ValueError):
            raise UnsupportedHint from None
    return node


def last_name(node: ast.expr) -> str | None:
    """``c`` for ``c``, ``a.b.c``; None for anything that is not a (dotted) name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for ``a.b.c``, ``c`` for ``c``; None for anything that is not a (dotted) name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted_name(node.value)
        return None if owner is None else f"{owner}.{node.attr}"
    return None


def literal(node: ast.expr) -> tuple[bool, Any]:
    """(True, value) if ``node`` is a literal that is also a JSON value, else (False, None)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    return (True, value) if _is_json(value) else (False, None)


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False  # tuples, sets, bytes, complex: not what a JSON body can carry
