"""Reading what a request carries (JSON body, query parameters) into checked values; every
problem is a 400 that names the field, says what was expected and shows what came.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import orjson
from aiohttp import web

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.browsers import from_browser
from sparkgate.gateway.content_coding import body_decoder
from sparkgate.jobs.booleans import parse_bool
from sparkgate.jobs.durations import parse_duration
from sparkgate.jobs.errors import BadRequest, PayloadTooLarge

# Far deeper than any real arguments; keeps every later step (storage, rendering) safe from
# recursion limits.
MAX_JSON_DEPTH = 64
_TOO_DEEP = object()


# Bodies larger than this are parsed off the event loop; smaller ones (nearly all) parse in
# less time than the hop to a thread would take.
LARGE_JSON_BYTES = 64 * 1024
# Integers longer than this are refused (Python's own limit for turning text into an int).
MAX_INT_DIGITS = 4300
# Clients label JSON loosely (curl -d says application/x-www-form-urlencoded, some say
# text/plain, a bare request says nothing), so those are read as JSON; these labels say the
# body is something else, and reading it as JSON would only give a confusing parse error.
_NOT_JSON_TYPES = ("multipart/", "image/", "audio/", "video/", "font/")
_NOT_JSON_SUBTYPES = ("xml", "zip", "gzip", "pdf", "x-python")


async def json_body(request: web.Request, default: Any = None, limit: int | None = None) -> Any:
    """The parsed JSON body; ``default`` when the body is empty."""
    _check_json_content_type(request)
    raw = await _read_body(request, limit)
    if not raw.strip():
        if default is None:
            raise BadRequest("request body: expected a JSON document, got an empty body")
        return default
    # Megabytes of JSON take a quarter of a second to parse (and as long to check): on the loop
    # that would stall every other request, so big bodies are parsed on a blocking thread.
    if len(raw) > LARGE_JSON_BYTES:
        return await blocking(_parse_json, raw)
    return _parse_json(raw)


def _parse_json(raw: bytes) -> Any:
    try:
        value = _loads(raw)
    except _NotFinite as exc:
        raise BadRequest(
            f"request body: expected JSON, got {exc}: JSON has no NaN or infinite numbers",
            {"got": str(exc)},
        ) from None
    except _TooLong as exc:
        raise BadRequest(
            f"request body: expected integers of at most {MAX_INT_DIGITS:,} digits, got one of "
            f"{exc.digits:,} digits", {"expected": f"at most {MAX_INT_DIGITS} digits",
                                       "got": f"{exc.digits} digits"},
        ) from None
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"request body: expected UTF-8 JSON, got bytes that are not UTF-8 (byte "
            f"{exc.start}: {raw[exc.start:exc.start + 1]!r})", {"expected": "UTF-8",
                                                                "position": exc.start},
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"request body: expected JSON, got a parse error at line {exc.lineno} column "
            f"{exc.colno}: {exc.msg}",
            {"line": exc.lineno, "column": exc.colno},
        ) from None
    except RecursionError:
        value = _TOO_DEEP  # reported below, with the limit
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise BadRequest(f"request body: expected JSON, got a value that cannot be read: {exc}"
                         ) from None
    if value is _TOO_DEEP or (_may_nest_deeper(raw, MAX_JSON_DEPTH) and _depth_exceeds(
            value, MAX_JSON_DEPTH)):
        raise BadRequest(f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels",
                         {"limit": MAX_JSON_DEPTH})
    _refuse_lone_surrogates(raw, value)
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _refuse_lone_surrogates(raw: bytes, value: Any) -> None:
    """JSON can escape half of a UTF-16 pair alone ("\\ud800"), which is no character: no UTF-8
    text (PostgreSQL, logs, the JVM) can hold it, so storing or passing it on failed later with
    a 500. Only a body that escapes a surrogate at all is walked."""
    if not _SURROGATE_ESCAPE.search(raw):
        return
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                stack.extend(((key, where), (child, f"{where}.{key}".lstrip("."))))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str) and not item.isascii() and _has_lone_surrogate(item):
            raise BadRequest(
                f"request body: {where or 'the document'}: expected text, got a lone UTF-16 "
                f"surrogate ({item!r}), which is not a character",
                {"field": where or None, "expected": "Unicode text"})


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_json_content_type(request: web.Request) -> None:
    # A page may make a browser send the loose labels to any site without asking it first; only
    # application/json needs the site's consent (CORS), so that is all browsers may send.
    if from_browser(request) and not _labelled_json(request):
        raise BadRequest(
            f"request body: a browser must send JSON as Content-Type: application/json, got "
            f"{request.headers.get('Content-Type', 'no Content-Type')}",
            {"field": "Content-Type", "expected": "application/json",
             "got": request.headers.get("Content-Type")})
    if "Content-Type" not in request.headers:
        return
    kind = request.content_type.lower()
    subtype = kind.partition("/")[2]
    if kind.startswith(_NOT_JSON_TYPES) or subtype.endswith(_NOT_JSON_SUBTYPES):
        raise BadRequest(
            f"request body: expected JSON (Content-Type: application/json), got Content-Type "
            f"{request.content_type}", {"field": "Content-Type", "expected": "application/json",
                                        "got": request.content_type},
        )


def _labelled_json(request: web.Request) -> bool:
    kind = request.content_type.lower()
    return "Content-Type" in request.headers and (kind == "application/json"
                                                  or kind.endswith("+json"))


async def _read_body(request: web.Request, limit: int | None) -> bytes:
    """The body, decoded, refused as soon as it is known to be over ``limit`` (by its
    Content-Length, or while it is read: a compressed body is counted as it is decompressed)."""
    decoder = body_decoder(request)
    limit = request.client_max_size if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        piece = decoder.feed(chunk, limit - size)
        size += len(piece)
        if size > limit:
            raise _too_large(size, limit, at_least=True)
        chunks.append(piece)
    decoder.finish()
    return b"".join(chunks)


def _too_large(size: int, limit: int, at_least: bool = False) -> PayloadTooLarge:
    more = "at least " if at_least else ""
    return PayloadTooLarge(f"request body is {more}{size} bytes; the limit is {limit}",
                           {"limit": limit})


# A number that could overflow a double (an exponent of three digits, or hundreds of digits in
# a row), have more than MAX_INT_DIGITS digits, or be an integer beyond 64 bits (19 digits),
# which orjson would read as a float. Only a body holding one needs each number checked as it
# is read: the checks are Python calls, and make reading a body of numbers several times
# slower than the C parser alone.
_RISKY_NUMBER = re.compile(rb"[eE][-+]?[0-9]{3}|[0-9]{19}")


def _loads(raw: bytes) -> Any:
    risky = _RISKY_NUMBER.search(raw) is not None
    if not risky:
        # orjson reads strict JSON only, and several times faster (its time is GIL held):
        # anything else it refuses is read again below, for the json module's answer.
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(raw)
    text = raw.decode("utf-8-sig")
    if risky:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    return json.loads(text, parse_constant=_reject_constant)


def _may_nest_deeper(raw: bytes, limit: int) -> bool:
    """False when the body has too few brackets to nest anything deeper than ``limit`` (what
    is inside n brackets is at depth n + 1): no walk."""
    return raw.count(b"[") + raw.count(b"{") >= limit


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iteratively (a recursive walk is what deep input is meant to break). Only containers
    are pushed: a list of a million numbers is one step, not a million."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit or (depth == limit and children):
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class _NotFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json module reads NaN and Infinity, which JSON does not have; nothing
    # downstream (PostgreSQL, browsers, other clients) can take them back.
    raise _NotFinite(name)


class _TooLong(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _bounded_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise _TooLong(digits)
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotFinite(f"{text[:40]} (too large for a double)")
    return value


def json_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{what}: expected a JSON object, got {json_type(body)}")
    return body


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.strip():
        return False  # "?force=" is no force
    try:
        return parse_bool(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}: expected true or false, got {raw!r}",
                         {"field": name, "expected": "true or false", "got": raw}) from None


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # int() would also take "1_0", " 7 " and other scripts' digits; the document says [0-9].
    value = int(raw) if _INTEGER.fullmatch(raw) else None
    if value is None or not low <= value <= high:
        raise BadRequest(
            f"query parameter {name}: expected an integer from {low} to {high}, got {raw!r}",
            {"field": name, "expected": f"integer {low}..{high}", "got": raw},
        )
    return value


def query_duration_ms(request: web.Request, name: str) -> int | None:
    """Milliseconds, or None when absent or ``Inf``."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        seconds = parse_duration(raw, f"query parameter {name}")
    except ValueError as exc:
        raise BadRequest(str(exc), {"field": name, "expected": "a duration like 10s",
                                    "got": raw}) from None
    return None if seconds is None else round(seconds * 1000)


def query_str(request: web.Request, name: str, max_length: int = 255) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise BadRequest(f"query parameter {name}: expected at most {max_length} characters, "
                         f"got {len(raw)}", {"field": name})
    if any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        raise BadRequest(f"query parameter {name}: expected text without control characters, "
                         f"got {raw!r}", {"field": name, "got": raw})
    return raw


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")


def checked_name(value: Any, field: str) -> str:
    """A name for a function, context or artifact: safe in a URL path and as a file name."""
    # fullmatch: with match, $ also matches before a final newline ("abc\n" passed).
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise BadRequest(
            f"{field}: expected a name of letters, digits, '_', '.', '-' (starting with a letter "
            f"or digit, no '..', at most 255 characters), got {value!r}",
            {"field": field, "expected": "name", "got": value if isinstance(value, str) else
             json_type(value)},
        )
    return value
