"""The classes that an argument may be typed with, read from their ``ast``: dataclasses,
``TypedDict``s and pydantic models (a JSON object of named fields), and ``Enum``s (one of their
members' values). Nothing is imported: the gateway reads them as it reads the function's hints
(docs/functions.md, "Type hints").

A class is recognised by what it is declared with, matched by the last dotted name as hints are:
``@dataclass`` (also ``@dataclasses.dataclass(...)``, pydantic's), a base ``TypedDict``,
``BaseModel`` or ``Enum``/``IntEnum``/``StrEnum``, or a base that is such a class of the file.

It is a top-level class of the function's own module or, in a package artifact, one that module
imports from another module of the archive (``from .models import Order``, ``from . import
models`` then ``models.Order``, ``import mypkg.models as m`` then ``m.Order``), followed from
import to import; a class's own field hints are read in its own module.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sparkgate.jobs.signatures.hints import (
    UnsupportedHint,
    last_name,
    literal,
    parse_hint,
    unstring,
)
from sparkgate.jobs.signatures.imports import imported_from, imported_module
from sparkgate.jobs.signatures.model import ArgType, Field, enum_of

_ENUM_BASES = frozenset({"Enum", "IntEnum", "StrEnum"})
# Annotations in a class body that are not fields a caller sends.
_NOT_FIELDS = frozenset({"ClassVar", "KW_ONLY"})


class Archive(Protocol):
    """The modules of a package artifact (reading.py)."""

    def classes(self, module: str) -> ModuleClasses | None:
        """The classes of dotted ``module``, one object per module and inspection; None when
        the archive has no file of it."""


@dataclass(frozen=True)
class InArchive:
    """Where a module of a package artifact is: its dotted name (``is_package``: it is a
    package's ``__init__.py``, which relative imports start from), among the archive's others."""

    archive: Archive
    module: str
    is_package: bool


# A class found: the module that defines it, and its definition there.
_Found = tuple["ModuleClasses", ast.ClassDef]


class ModuleClasses:
    """The classes one module's hints may name, each read once, when a hint first names it.
    ``where``: the module's place in a package artifact; None for a single file, whose imports
    are not followed (nothing but the file is there to read)."""

    def __init__(self, tree: ast.Module, where: InArchive | None = None) -> None:
        self._tree = tree
        self._where = where
        self._defs = {s.name: s for s in tree.body if isinstance(s, ast.ClassDef)}
        self._read: dict[str, ArgType] = {}
        self._reading: list[str] = []

    def resolve(self, name: str) -> ArgType | None:
        """The type of the class a hint's (dotted) ``name`` stands for, or None."""
        found = self._find(name.split("."), frozenset())
        return None if found is None else found[0]._type_of(found[1])

    def _type_of(self, node: ast.ClassDef) -> ArgType:
        name = node.name
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

    def _find(self, parts: Sequence[str], followed: frozenset[tuple[str, str]]) -> _Found | None:
        """The class that ``parts`` (a dotted name) stands for in this module. ``followed``:
        the (module, name) pairs already gone through, so that imports in a circle end."""
        first, rest = parts[0], parts[1:]
        node = self._defs.get(first)
        if node is not None:
            return None if rest else (self, node)
        if self._where is None:
            return None
        archive = self._where.archive
        module = imported_module(self._tree, first)
        if module is not None:
            return _in_module(archive, module, rest, followed)
        origin = imported_from(self._tree, first, self._where.module, self._where.is_package)
        if origin is None:
            return None
        return _member(archive, origin[0], [origin[1], *rest], followed)

    def _class_type(self, node: ast.ClassDef) -> ArgType:
        kind = self.kind_of(node)
        if kind == "enum":
            return _enum(node, self._module)
        if kind is None:
            raise UnsupportedHint(
                f"class {node.name} is not a dataclass, TypedDict, pydantic BaseModel or Enum")
        return ArgType("object", name=node.name, model=kind, fields=self._fields(node, kind),
                       module=self._module)

    @property
    def _module(self) -> str | None:
        """The module a worker imports this module's classes from; None in a single-file
        artifact, whose classes it finds in the function's own globals."""
        return None if self._where is None else self._where.module

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
            parent = self._base(node, base)
            if parent is not None:
                inherited = self.kind_of(parent)
                if inherited is not None:
                    return inherited
        return None

    def _base(self, node: ast.ClassDef, base: ast.expr) -> ast.ClassDef | None:
        """The class of this module that ``base`` names, if it is defined above ``node``: a
        base must exist when its subclass is made (which also keeps bases from going round)."""
        parent = self._defs.get(base.id) if isinstance(base, ast.Name) else None
        return parent if parent is not None and parent.lineno < node.lineno else None

    def _fields(self, node: ast.ClassDef, kind: str) -> tuple[Field, ...]:
        """The fields of the file's bases of the same kind first, then the class's own, a
        redeclared one replacing the base's in place (as dataclasses and pydantic do)."""
        fields: dict[str, Field] = {}
        for base in node.bases:
            parent = self._base(node, base)
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


def _member(archive: Archive, module: str, parts: Sequence[str],
            followed: frozenset[tuple[str, str]]) -> _Found | None:
    """``parts`` looked up in ``module``: a name it binds, else its submodule (as
    ``from module import name`` does)."""
    key = (module, parts[0])
    owner = archive.classes(module)
    found = None
    if owner is not None and key not in followed:
        found = owner._find(parts, followed | {key})
    if found is None:
        found = _in_module(archive, f"{module}.{parts[0]}", parts[1:], followed | {key})
    return found


def _in_module(archive: Archive, module: str, parts: Sequence[str],
               followed: frozenset[tuple[str, str]]) -> _Found | None:
    """``parts`` as attributes of ``module``; none left: the name is the module, not a class."""
    return _member(archive, module, parts, followed) if parts else None


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


def _enum(node: ast.ClassDef, module: str | None) -> ArgType:
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
    return enum_of(values, node.name, module)
