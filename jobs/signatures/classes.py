"""The classes of a function's own file that an argument may be typed with, read from their
``ast``: dataclasses, ``TypedDict``s and pydantic models (a JSON object of named fields), and
``Enum``s (one of their members' values). Nothing is imported: the gateway reads them as it reads
the function's hints (docs/functions.md, "Type hints").

A class is recognised by what it is declared with, matched by the last dotted name as hints are:
``@dataclass`` (also ``@dataclasses.dataclass(...)``, pydantic's), a base ``TypedDict``,
``BaseModel`` or ``Enum``/``IntEnum``/``StrEnum``, or a base that is such a class of the file.
"""

from __future__ import annotations

import ast
from typing import Any

from sparkgate.jobs.signatures.hints import (
    UnsupportedHint,
    last_name,
    literal,
    parse_hint,
    unstring,
)
from sparkgate.jobs.signatures.model import ArgType, Field, enum_of

_ENUM_BASES = frozenset({"Enum", "IntEnum", "StrEnum"})
# Annotations in a class body that are not fields a caller sends.
_NOT_FIELDS = frozenset({"ClassVar", "KW_ONLY"})


class ModuleClasses:
    """The top-level classes of one module, each read once, when a hint first names it."""

    def __init__(self, tree: ast.Module) -> None:
        self._defs = {s.name: s for s in tree.body if isinstance(s, ast.ClassDef)}
        self._read: dict[str, ArgType] = {}
        self._reading: list[str] = []

    def resolve(self, name: str) -> ArgType | None:
        node = self._defs.get(name)
        if node is None:
            return None
        if name not in self._read:
            if name in self._reading:
                raise UnsupportedHint(f"class {name} contains itself; a recursive type "
                                      "cannot be checked")
            self._reading.append(name)
            try:
                self._read[name] = self._class_type(node)
            finally:
                self._reading.pop()
        return self._read[name]

    def _class_type(self, node: ast.ClassDef) -> ArgType:
        kind = self.kind_of(node)
        if kind == "enum":
            return _enum(node)
        if kind is None:
            raise UnsupportedHint(
                f"class {node.name} is not a dataclass, TypedDict, pydantic BaseModel or Enum")
        return ArgType("object", name=node.name, model=kind, fields=self._fields(node, kind))

    def kind_of(self, node: ast.ClassDef) -> str | None:
        """``dataclass``, ``typeddict``, ``pydantic``, ``enum``, or None for another class."""
        if any(last_name(d.func if isinstance(d, ast.Call) else d) == "dataclass"
               for d in node.decorator_list):
            return "dataclass"
        for base in node.bases:
            name = last_name(base)
            if name == "TypedDict":
                return "typeddict"
            if name == "BaseModel":
                return "pydantic"
            if name in _ENUM_BASES:
                return "enum"
            parent = self._defs.get(name or "") if isinstance(base, ast.Name) else None
            if parent is not None and parent is not node:
                inherited = self.kind_of(parent)
                if inherited is not None:
                    return inherited
        return None

    def _fields(self, node: ast.ClassDef, kind: str) -> tuple[Field, ...]:
        """The fields of the file's bases of the same kind first, then the class's own, a
        redeclared one replacing the base's in place (as dataclasses and pydantic do)."""
        fields: dict[str, Field] = {}
        for base in node.bases:
            parent = self._defs.get(base.id) if isinstance(base, ast.Name) else None
            if parent is not None and self.kind_of(parent) == kind:
                fields.update((f.name, f) for f in self._fields(parent, kind))
        total = _keyword(node, "total") is not False
        for stmt in node.body:
            field = self._field(stmt, kind, total, node.name)
            if field is not None:
                fields[field.name] = field
        return tuple(fields.values())

    def _field(self, stmt: ast.stmt, kind: str, total: bool, owner: str) -> Field | None:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            return None
        name = stmt.target.id
        annotation = unstring(stmt.annotation)
        wrapper = last_name(annotation.value if isinstance(annotation, ast.Subscript)
                            else annotation)
        if wrapper in _NOT_FIELDS or (kind == "pydantic" and name.startswith("_")):
            return None
        required = total if kind == "typeddict" else _required(stmt.value)
        if required is None:  # dataclasses.field(init=False): not an argument of the class
            return None
        if wrapper in ("Required", "NotRequired", "InitVar") and isinstance(
                annotation, ast.Subscript):
            required = wrapper != "NotRequired" if kind == "typeddict" else required
            annotation = annotation.slice
        try:
            return Field(name, parse_hint(annotation, self), required)
        except UnsupportedHint as e:
            why = f": {e}" if str(e) else ""
            raise UnsupportedHint(f"field {owner}.{name} has type hint "
                                  f"{ast.unparse(annotation)!r}, which cannot be taken from "
                                  f"JSON{why}") from None


def _required(value: ast.expr | None) -> bool | None:
    """Whether a dataclass or pydantic field without a default must be sent; None when it is no
    parameter of the class at all (``field(init=False)``)."""
    if value is None:
        return True
    if not (isinstance(value, ast.Call) and last_name(value.func) in ("field", "Field")):
        return False
    if _keyword(value, "init") is False:
        return None
    if any(k.arg in ("default", "default_factory") for k in value.keywords):
        return False
    # pydantic's Field(...) or Field() is required; Field(5) has a default.
    first = value.args[0] if value.args else None
    return first is None or (isinstance(first, ast.Constant) and first.value is Ellipsis)


def _keyword(node: ast.ClassDef | ast.Call, name: str) -> Any:
    """The literal value of keyword ``name`` (``total=False``, ``init=False``), else None."""
    for k in node.keywords:
        if k.arg == name:
            known, value = literal(k.value)
            return value if known else None
    return None


def _enum(node: ast.ClassDef) -> ArgType:
    """The values of the members, in order: literal values, or ``auto()`` as Python numbers it
    (a ``StrEnum``'s: the member's name in lower case)."""
    is_str = any(last_name(b) == "StrEnum" for b in node.bases)
    values: list[Any] = []
    for stmt in node.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):
            continue
        member = stmt.targets[0].id
        if member.startswith("_"):
            continue
        if isinstance(stmt.value, ast.Call) and last_name(stmt.value.func) == "auto":
            ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
            values.append(member.lower() if is_str else max(ints, default=0) + 1)
            continue
        known, value = literal(stmt.value)
        if not known or isinstance(value, list | dict) or value is None:
            raise UnsupportedHint(f"member {node.name}.{member}'s value is not a string or "
                                  "number written in the class")
        values.append(value)
    if not values:
        raise UnsupportedHint(f"Enum {node.name} has no members")
    return enum_of(values, node.name)
