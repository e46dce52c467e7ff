"""JSON Schema building blocks that the wire models and the OpenAPI document share.

Constraints are written as the gateway enforces them, no tighter and no looser: schemathesis
sends what the document calls invalid and expects a 4xx.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

#: Longest duration the gateway takes (jobs/durations.py: MAX_SECONDS), in seconds.
MAX_DURATION_S = 100 * 365 * 86400

# A name of a function, context or artifact (gateway/params.py: checked_name).
NAME = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, *,
        closed: bool = True, description: str | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})},
                      "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
TIME_MS: Schema = {"type": "integer", "description": "epoch milliseconds"}
ANY: Schema = {}
NAME_STRING: Schema = {"type": "string", "pattern": NAME}
_UNITS = ("ms", "s", "sec", "second", "seconds", "m", "min", "minute", "minutes", "h", "hour",
          "hours", "d", "day", "days")
_UNBOUNDED = ("inf", "infinite", "unbounded")


# What Python's str.strip() and re's \s take for whitespace, spelled out: a JSON Schema
# validator's \s (ECMA-262) leaves out \x1c-\x1f and \x85, so the two would disagree.
WS = ("[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029"
      "\\u202f\\u205f\\u3000]")


def any_case(word: str) -> str:
    """Case-insensitive words are spelled out: JSON Schema patterns have no flags."""
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)


# jobs/durations.py reads these.
DURATION_PATTERN = (rf"^{WS}*([0-9]+(\.[0-9]+)?{WS}*({'|'.join(any_case(u) for u in _UNITS)})?"
                    rf"|{'|'.join(any_case(w) for w in _UNBOUNDED)}){WS}*$")
DURATION_TEXT: Schema = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "description": "`500ms`, `10s`, `5min`, `1h`, `1d` (also `sec`, `m`, `minute(s)`, "
                   "`hour(s)`, `day(s)`), a bare number of seconds, or `Inf`; at most 100 years",
}
DURATION_VALUE: Schema = {
    "anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_DURATION_S}, DURATION_TEXT],
}
