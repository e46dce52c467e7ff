"""The signature of a user function: the Spark handle it takes (if any) and its arguments'
types and defaults, and the views published of it (Mist's ``execute`` map, JSON Schema).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

KINDS = frozenset({"int", "float", "str", "bool", "any", "list", "dict", "optional"})
_CONTAINER_KINDS = frozenset({"list", "dict", "optional"})
# "streaming_context": a Mist-era @on_streaming_context function's StreamingContext (DStreams).
HANDLES = frozenset({"session", "context", "sql_context", "streaming_context"})


@dataclass(frozen=True)
class ArgType:
    """The type of one argument: a scalar kind, or a container of ``of``.

    ``of`` is the item type of a list, the value type of a dict (keys are always strings, as in
    JSON) and the inner type of an optional; it is None for scalars and ``any``.
    """

    kind: str
    of: ArgType | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown argument kind {self.kind!r}")
        if (self.kind in _CONTAINER_KINDS) != (self.of is not None):
            raise ValueError(f"kind {self.kind!r}: 'of' must be set exactly for list/dict/optional")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.of is not None:
            out["of"] = self.of.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArgType:
        of = d.get("of")
        return cls(d["kind"], None if of is None else cls.from_dict(of))


INT = ArgType("int")
FLOAT = ArgType("float")
STR = ArgType("str")
BOOL = ArgType("bool")
ANY = ArgType("any")


def list_of(item: ArgType) -> ArgType:
    return ArgType("list", item)


def dict_of(value: ArgType) -> ArgType:
    return ArgType("dict", value)


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


_MIST_SCALARS = {"int": "MInt", "float": "MDouble", "str": "MString", "bool": "MBoolean"}


def _mist_type(t: ArgType) -> dict[str, Any]:
    if t.kind in _MIST_SCALARS:
        return {"type": _MIST_SCALARS[t.kind]}
    if t.kind == "any":
        return {"type": "MAny"}
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
    assert t.of is not None
    if t.kind == "list":
        return {"type": "array", "items": _json_schema(t.of)}
    if t.kind == "dict":
        return {"type": "object", "additionalProperties": _json_schema(t.of)}
    return {"anyOf": [_json_schema(t.of), {"type": "null"}]}
