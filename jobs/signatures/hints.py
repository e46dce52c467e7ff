"""Type hints and default values, read from their ``ast`` as the JSON types and values they
stand for.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator
from typing import Any

from sparkgate.jobs.signatures.model import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    STR,
    ArgType,
    dict_of,
    list_of,
    optional,
)


class UnsupportedHint(Exception):
    """A hint that cannot describe a JSON value; turned into InvalidArtifact by the caller."""


# Hints are matched by their last dotted component: `typing.List`, `t.List` and `List` alike.
SCALAR_HINTS = {"int": INT, "float": FLOAT, "str": STR, "bool": BOOL, "Any": ANY, "object": ANY}
_LIST_HINTS = frozenset({"list", "List", "Sequence"})
_DICT_HINTS = frozenset({"dict", "Dict", "Mapping"})


def parse_hint(node: ast.expr) -> ArgType:
    node = unstring(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union(list(_flatten_or(node)))
    if isinstance(node, ast.Subscript):
        return _parse_generic(node)
    name = last_name(node)
    if name in SCALAR_HINTS:
        return SCALAR_HINTS[name]
    if name in _LIST_HINTS:
        return list_of(ANY)
    if name in _DICT_HINTS:
        return dict_of(ANY)
    raise UnsupportedHint


def _parse_generic(node: ast.Subscript) -> ArgType:
    base = last_name(node.value)
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base in _LIST_HINTS and len(items) == 1:
        return list_of(parse_hint(items[0]))
    if base in _DICT_HINTS and len(items) == 2:
        if parse_hint(items[0]) != STR:
            raise UnsupportedHint  # JSON object keys are strings
        return dict_of(parse_hint(items[1]))
    if base == "Optional" and len(items) == 1:
        return optional(parse_hint(items[0]))
    if base == "Union":
        return _union(items)
    raise UnsupportedHint


def _flatten_or(node: ast.expr) -> Iterator[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        yield from _flatten_or(node.left)
        yield from _flatten_or(node.right)
    else:
        yield node


def _union(members: list[ast.expr]) -> ArgType:
    """Only ``X`` with ``None`` is a union JSON can tell apart; ``int | str`` is refused."""
    unstrung = [unstring(m) for m in members]
    others = [m for m in unstrung if not (isinstance(m, ast.Constant) and m.value is None)]
    if len(others) != 1:
        raise UnsupportedHint
    inner = parse_hint(others[0])
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
