"""The signature of a user function: the Spark handle it takes (if any) and its arguments'
types and defaults, and the views published of it (Mist's ``execute`` map, JSON Schema).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KINDS = frozenset({"int", "float", "str", "bool", "any", "list", "dict", "optional",
                   "object", "enum", "datetime", "date", "decimal"})
_CONTAINER_KINDS = frozenset({"list", "dict", "optional"})
# How a worker builds an "object" argument from its JSON object (workers/arguments.py).
MODELS = frozenset({"dataclass", "typeddict", "pydantic"})
# "streaming_context": a Mist-era @on_streaming_context function's StreamingContext (DStreams).
HANDLES = frozenset({"session", "context", "sql_context", "streaming_context"})


@dataclass(frozen=True)
class Field:
    """One field of an "object" argument (a dataclass, TypedDict or pydantic model)."""

    name: str
    type: ArgType
    required: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.to_dict(), "required": self.required}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Field:
        return cls(d["name"], ArgType.from_dict(d["type"]), d["required"])


@dataclass(frozen=True)
class ArgType:
    """The type of one argument: a scalar kind, a container of ``of``, an object or an enum.

    ``of`` is the item type of a list, the value type of a dict (keys are always strings, as in
    JSON) and the inner type of an optional; it is None for every other kind.

    ``object``: a class of the artifact, sent as a JSON object: ``name`` the class, ``model``
    how a worker builds it (one of MODELS), ``fields`` its fields. ``enum``: one of ``values``
    (JSON scalars); ``name`` is the Enum class whose member the function receives, None for a
    ``Literal``. ``module``: the dotted module of a package artifact that defines the class
    ``name``, which a worker imports it from; None in a single-file artifact, whose classes are
    the function's own module's. ``datetime``, ``date``: ISO 8601 strings; ``decimal``: a
    number or a numeric string (exact).
    """

    kind: str
    of: ArgType | None = None
    name: str | None = None
    model: str | None = None
    fields: tuple[Field, ...] = ()
    values: tuple[Any, ...] = ()
    module: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "values", tuple(self.values))
        if self.kind not in KINDS:
            raise ValueError(f"unknown argument kind {self.kind!r}")
        if (self.kind in _CONTAINER_KINDS) != (self.of is not None):
            raise ValueError(f"kind {self.kind!r}: 'of' must be set exactly for list/dict/optional")
        if (self.kind == "object") != (self.model is not None) or (
                self.model is not None and (self.model not in MODELS or self.name is None)):
            raise ValueError(f"kind {self.kind!r}: an object (only) has a model and a name")
        if (self.kind == "enum") != bool(self.values):
            raise ValueError(f"kind {self.kind!r}: an enum (only) has values")
        if self.fields and self.kind != "object":
            raise ValueError(f"kind {self.kind!r}: only an object has fields")
        if self.module is not None and self.name is None:
            raise ValueError(f"kind {self.kind!r}: only a class (a name) has a module")

    def to_dict(self) -> dict[str, Any]:
        # Only the keys a kind uses: the types stored before objects and enums read the same.
        out: dict[str, Any] = {"kind": self.kind}
        if self.of is not None:
            out["of"] = self.of.to_dict()
        if self.name is not None:
            out["name"] = self.name
        if self.module is not None:
            out["module"] = self.module
        if self.model is not None:
            out["model"] = self.model
            out["fields"] = [f.to_dict() for f in self.fields]
        if self.values:
            out["values"] = list(self.values)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArgType:
        of = d.get("of")
        return cls(d["kind"], None if of is None else cls.from_dict(of), name=d.get("name"),
                   model=d.get("model"),
                   fields=tuple(Field.from_dict(f) for f in d.get("fields", ())),
                   values=tuple(d.get("values", ())), module=d.get("module"))

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


INT = ArgType("int")
FLOAT = ArgType("float")
STR = ArgType("str")
BOOL = ArgType("bool")
ANY = ArgType("any")
DATETIME = ArgType("datetime")
DATE = ArgType("date")
DECIMAL = ArgType("decimal")


def list_of(item: ArgType) -> ArgType:
    return ArgType("list", item)


def dict_of(value: ArgType) -> ArgType:
    return ArgType("dict", value)


def enum_of(values: list[Any], name: str | None = None, module: str | None = None) -> ArgType:
    """One of ``values`` (distinct, in order: ``True`` and ``1`` are two); ``name``: the Enum
    class whose members they are the values of, None for a ``Literal``; ``module``: where that
    class is (see ArgType)."""
    kept: list[Any] = []
    for value in values:
        if not any(type(k) is type(value) and k == value for k in kept):
            kept.append(value)
    return ArgType("enum", name=name, values=tuple(kept), module=module)


def optional(inner: ArgType) -> ArgType:
    """Optional of ``inner``; never Optional of Optional (``Optional[X] | None`` is one level)."""
    return inner if inner.kind == "optional" else ArgType("optional", inner)


@dataclass(frozen=True)
class Param:
    """One argument. ``default`` is a JSON value and means something only if ``has_default``.

    A parameter can be not required and still have no known default: its default in the source is
    an expression (``10**6``, a call) that Python evaluates in the worker.
    """

    name: str
    type: ArgType
    required: bool
    default: Any = None
    has_default: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.to_dict(),
            "required": self.required,
            "has_default": self.has_default,
            "default": self.default,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Param:
        return cls(
            name=d["name"],
            type=ArgType.from_dict(d["type"]),
            required=d["required"],
            default=d.get("default"),
            has_default=d.get("has_default", False),
        )


@dataclass(frozen=True)
class Signature:
    """What the gateway knows of a function: which Spark handle it takes and its arguments.

    ``handle`` is None for a plain function, which takes no Spark handle and so runs on any
    engine; a Spark function runs only where Spark is. ``mist`` marks functions written with
    the ``mistpy`` decorators, which need every argument passed (see ``call_kwargs``).
    ``streaming`` marks functions declared to leave a stream running (``-> StreamingQuery``, or
    ``@on_streaming_context``): their jobs get no performTimeout but their own (docs/streaming.md).
    """

    handle: str | None
    params: tuple[Param, ...]
    mist: bool = False
    streaming: bool = False

    def __post_init__(self) -> None:
        # Callers (and from_dict) may hand in a list; a tuple keeps the dataclass truly frozen.
        object.__setattr__(self, "params", tuple(self.params))
        if self.handle is not None and self.handle not in HANDLES:
            raise ValueError(f"unknown Spark handle {self.handle!r}")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate argument names in {names}")

    @property
    def needs_spark(self) -> bool:
        return self.handle is not None

    def class_modules(self) -> frozenset[str]:
        """The modules of a package artifact that define the classes its arguments are typed
        with (at any depth): a worker imports them with the function, to build those
        arguments."""
        return frozenset(m for p in self.params for m in _class_modules(p.type))

    def to_mist_execute(self) -> dict[str, Any]:
        """Mist's ``FunctionInfo.execute``: ``{argName: Type}``, in declaration order."""
        out: dict[str, Any] = {}
        for p in self.params:
            # Mist shows every argument that may be left out as MOption.
            t = p.type if p.required else optional(p.type)
            out[p.name] = _mist_type(t)
        return out

    def to_json_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of the arguments object a job is submitted with."""
        properties: dict[str, Any] = {}
        for p in self.params:
            schema = _json_schema(p.type)
            if p.has_default:
                schema["default"] = p.default
            properties[p.name] = schema
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }

    def to_dict(self) -> dict[str, Any]:
        stored = {
            "handle": self.handle,
            "mist": self.mist,
            "params": [p.to_dict() for p in self.params],
        }
        # Only when set: what was stored before streaming functions reads the same.
        return {**stored, "streaming": True} if self.streaming else stored

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        # A plain function is stored with "handle": null; one stored before plain functions
        # existed names its handle, so it still reads as the Spark function it was.
        return cls(
            handle=d["handle"],
            params=tuple(Param.from_dict(p) for p in d["params"]),
            mist=d.get("mist", False),
            streaming=d.get("streaming", False),
        )

    def call_kwargs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments to call the function with, after ``validate_arguments``.

        mistpy's ``with_args`` wrapper applies only its last ``arg`` decorator, so defaults that
        Mist-era functions declared in ``arg(..., default=...)``/``opt_arg`` are not filled in by
        mistpy itself: we pass them. Plain functions get exactly what was sent, and Python
        applies the defaults written in the def.
        """
        kwargs = dict(arguments)
        if self.mist:
            for p in self.params:
                if p.name not in kwargs and p.has_default:
                    # A copy: the function may mutate a list default, and the signature is shared.
                    kwargs[p.name] = copy.deepcopy(p.default)
        return kwargs


def _class_modules(t: ArgType) -> Iterator[str]:
    if t.module is not None:
        yield t.module
    for inner in (t.of, *(f.type for f in t.fields)):
        if inner is not None:
            yield from _class_modules(inner)


_MIST_SCALARS = {"int": "MInt", "float": "MDouble", "str": "MString", "bool": "MBoolean"}


def _mist_type(t: ArgType) -> dict[str, Any]:
    if t.kind in _MIST_SCALARS:
        return {"type": _MIST_SCALARS[t.kind]}
    if t.kind in ("any", "decimal"):  # a decimal is a number or a numeric string
        return {"type": "MAny"}
    if t.kind in ("datetime", "date"):
        return {"type": "MString"}
    if t.kind == "object":  # Mist had no record type: a map of its fields
        return {"type": "MMap", "args": [{"type": "MString"}, {"type": "MAny"}]}
    if t.kind == "enum":
        kinds = {_value_kind(v) for v in t.values}
        return {"type": _MIST_SCALARS[kinds.pop()]} if len(kinds) == 1 else {"type": "MAny"}
    assert t.of is not None
    if t.kind == "list":
        return {"type": "MList", "args": [_mist_type(t.of)]}
    if t.kind == "dict":
        return {"type": "MMap", "args": [{"type": "MString"}, _mist_type(t.of)]}
    return {"type": "MOption", "args": [_mist_type(t.of)]}


JSON_SCALARS = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}


def _json_schema(t: ArgType) -> dict[str, Any]:
    if t.kind in JSON_SCALARS:
        return {"type": JSON_SCALARS[t.kind]}
    if t.kind == "any":
        return {}
    if t.kind in _SPECIAL_SCHEMAS:
        return copy.deepcopy(_SPECIAL_SCHEMAS[t.kind])
    if t.kind == "enum":
        return {"enum": list(t.values), **({"title": t.name} if t.name else {})}
    if t.kind == "object":
        return {
            "type": "object", "title": t.name,
            "properties": {f.name: _json_schema(f.type) for f in t.fields},
            "required": [f.name for f in t.fields if f.required],
            "additionalProperties": False,
        }
    assert t.of is not None
    if t.kind == "list":
        return {"type": "array", "items": _json_schema(t.of)}
    if t.kind == "dict":
        return {"type": "object", "additionalProperties": _json_schema(t.of)}
    return {"anyOf": [_json_schema(t.of), {"type": "null"}]}


def _value_kind(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float"}.get(type(value), "str")


# A decimal given as a string: what Python's Decimal reads, less its spellings that are not
# numbers (NaN, Infinity) or not JSON-like ("1_000", " 1 "). validation.py checks with it.
DECIMAL_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_SPECIAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "decimal": {"anyOf": [{"type": "number"},
                          {"type": "string", "pattern": DECIMAL_PATTERN}]},
}
