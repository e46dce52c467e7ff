"""The machinery of the wire models: dataclasses whose fields each say how they travel.

A field declared with ``wire(...)`` carries its JSON name (Mist's camelCase), the JSON Schema
of its value as rendered, how the value is shown (``show``: seconds as ``"10s"``) and, for a
field a request may set, how it is read (``reads``: the schema of what a request may send and
the function that reads it). From that one declaration come the rendering (``to_json``), the
reading of request bodies (``read_present``, ``read_each``) and the OpenAPI component schemas
(``schema_of``, ``settable``).

A model is a view built for one response, as ``X.of(domain object)``: plain (not frozen)
dataclasses with slots, since a listing builds a thousand and a frozen one's ``__init__``
costs twice as much.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, TypeVar

from sparkgate.gateway.params import json_type
from sparkgate.gateway.wire.schema import Schema, obj
from sparkgate.jobs.errors import BadRequest, InvalidArguments

Model = TypeVar("Model")


class Absent(Enum):
    """A field left out of the JSON, which is not the same as a field that is null."""

    ABSENT = "absent"


ABSENT = Absent.ABSENT


@dataclass(frozen=True)
class Reading:
    """How a request sets a field: the JSON Schema of what it may send, and ``read``, which
    turns that into the field's value. Read by ``read_present``, it raises ``ValueError``
    saying what it expected; by ``read_each``, its own ``BadRequest``."""

    schema: Schema
    read: Callable[[Any], Any]


@dataclass(frozen=True)
class Wire:
    """One field's declaration, as ``wire()`` takes it."""

    name: str
    schema: Schema
    show: Callable[[Any], Any] | None
    reads: Reading | None
    optional: bool


_WIRE = "sparkgate.wire"


def wire(name: str, schema: Schema | type | None = None, *, reads: Reading | None = None,
         show: Callable[[Any], Any] | None = None, optional: bool = False,
         description: str | None = None) -> Any:
    """A field named ``name`` on the wire. ``schema``: of the rendered value, or a nested
    model (rendered with ``to_json``); left out, the schema of what a request may send.
    ``optional``: the field may be left out; it is, while its value is ``ABSENT``."""
    if isinstance(schema, type):
        schema, show = schema_of(schema), to_json
    elif schema is None:
        if reads is None:
            raise TypeError(f"{name}: a schema or a reading")
        schema = reads.schema
    if description:
        schema = {**schema, "description": description}
    spec = Wire(name, schema, show, reads, optional)
    if optional:
        return field(default=ABSENT, metadata={_WIRE: spec})
    return field(metadata={_WIRE: spec})


def wire_fields(model: type) -> tuple[tuple[str, Wire], ...]:
    """(attribute, its wire declaration) of each field of ``model``, in declaration order."""
    return tuple((f.name, f.metadata[_WIRE]) for f in fields(model) if _WIRE in f.metadata)


# Per model: (attribute, JSON name, show) of each field. Rendering a listing's thousand rows
# asks for them a thousand times.
_RENDERING: dict[type, tuple[tuple[str, str, Callable[[Any], Any] | None], ...]] = {}


def to_json(value: Any) -> dict[str, Any]:
    """A model as Mist's JSON, its fields in declaration order, ``ABSENT`` ones left out."""
    model = type(value)
    rendering = _RENDERING.get(model)
    if rendering is None:
        rendering = _RENDERING[model] = tuple((attribute, spec.name, spec.show)
                                              for attribute, spec in wire_fields(model))
    rendered: dict[str, Any] = {}
    for attribute, name, show in rendering:
        item = getattr(value, attribute)
        if item is not ABSENT:
            rendered[name] = item if show is None else show(item)
    return rendered


def schema_of(model: type, description: str | None = None) -> Schema:
    """The JSON Schema of a model as rendered: closed; every field required but optional ones."""
    specs = [spec for _, spec in wire_fields(model)]
    return obj({s.name: s.schema for s in specs if not s.optional},
               {s.name: s.schema for s in specs if s.optional}, description=description)


def settable(model: type) -> dict[str, Schema]:
    """The properties a request may set on a model: what each field it reads accepts."""
    return {s.name: s.reads.schema for _, s in wire_fields(model) if s.reads is not None}


def read_present(model: type, body: Mapping[str, Any], what: str,
                 ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of ``model`` that ``body`` sets, read, by attribute. Every problem is
    reported at once, in the body's order: a 400 naming each field, what it expects and what
    came."""
    readers = {s.name: (attribute, s.reads.read) for attribute, s in wire_fields(model)
               if s.reads is not None}
    problems: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for name, raw in body.items():
        if name in ignore:
            continue
        if name not in readers:
            problems.append({"field": name, "expected": "one of " + ", ".join(readers),
                             "got": "unknown field"})
            continue
        attribute, read = readers[name]
        try:
            values[attribute] = read(raw)
        except (TypeError, ValueError) as exc:
            problems.append({"field": name, "expected": str(exc), "got": _show(raw)})
    if problems:
        names = ", ".join(p["field"] for p in problems)
        raise InvalidArguments(f"{what}: invalid field(s) {names}", problems)
    return values


def read_each(model: type[Model], body: Mapping[str, Any], what: str) -> Model:
    """A model read from ``body`` field by field, in declaration order, each reader given
    ``ABSENT`` for a field left out. The first problem is the 400: Mist's clients are told one
    at a time, each reader raising its own ``BadRequest``."""
    specs = wire_fields(model)
    unknown = sorted(set(body) - {s.name for _, s in specs})
    if unknown:
        raise BadRequest(f"{what}: unknown field(s) {', '.join(unknown)}; expected "
                         f"{', '.join(sorted(s.name for _, s in specs))}", {"fields": unknown})
    return model(**{attribute: s.reads.read(body.get(s.name, ABSENT))
                    for attribute, s in specs if s.reads is not None})


def _show(raw: Any) -> str:
    return f"{json_type(raw)} {repr(raw)[:40]}"
