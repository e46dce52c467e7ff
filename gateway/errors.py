"""Turn every failure into one JSON shape: ``{"error": {"code", "message", "details"}}``.

Domain errors carry their own status (and their headers: Retry-After for 429 and 503,
WWW-Authenticate for 401); aiohttp's (unknown route, wrong method, body too large)
are reshaped; a lost database or Redis is a 503 with Retry-After; anything else is a logged 500
that leaks no internals. One exception: a listing's error is plain text to Python's requests
when it does not ask for JSON, because mist-cli crashes on any JSON but the list it asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError

from sparkgate.gateway.log_throttle import LogThrottle
from sparkgate.gateway.routing import route_of
from sparkgate.jobs.errors import RetryLater, SparkgateError, Unauthenticated, Unavailable

log = logging.getLogger("sparkgate.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: aiohttp's limit on the request line and on each header line (its max_line_size and
#: max_field_size defaults, which the gateway keeps).
MAX_LINE_BYTES = 8190
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, details: object = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "details": details}},
        status=status, headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SparkgateError as exc:
        return _domain_error(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http(request, exc)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        _OUTAGES.log(logging.WARNING, "redis", "redis unavailable, answering 503: %s", exc)
        return _domain_error(request,
                             Unavailable("the job queue (Redis) is unavailable; retry shortly"))
    except DBAPIError as exc:
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            raise
        _OUTAGES.log(logging.WARNING, "database", "database unavailable, answering 503: %s", exc)
        return _domain_error(request, Unavailable("the database is unavailable; retry shortly"))


#: One warning per 10 s for each dependency that is down, with the 503s left out counted: an
#: outage under load is a few log lines, not one per request.
_OUTAGES = LogThrottle(log, every_s=10.0, burst=1)


def _domain_error(request: web.Request, exc: SparkgateError) -> web.Response:
    if _reads_any_answer_as_its_data(request):
        return web.Response(status=exc.http_status, text=f"{exc.code}: {exc.message}\n",
                            headers=_headers_for(exc))
    return error_response(exc.http_status, exc.code, exc.message, exc.details,
                          headers=_headers_for(exc))


def _reads_any_answer_as_its_data(request: web.Request) -> bool:
    """mist-cli (Python's requests, to which it gives no header) parses the answer to its list
    commands as the list it asked for, whatever the status: an error object (for missing or
    refused credentials, an outage, a rate limit) makes it die with a TypeError; a body that is
    not JSON makes it report an error and exit 2. A script on requests that wants the error
    object asks for JSON (``Accept: application/json``) and gets it."""
    if (not request.headers.get("User-Agent", "").startswith("python-requests/")
            or "json" in request.headers.get("Accept", "")):
        return False
    route = route_of(request)
    return route is not None and route.answers_a_list


def _from_http(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, "http_error")
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    if exc.status == 404:
        message = f"no such endpoint: {request.method} {request.path}"
    elif exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        message = (f"{request.method} is not allowed on {request.path}; "
                   f"allowed: {', '.join(allowed)}")
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return error_response(exc.status, code, message, None, headers)


def protocol_error(status: int, exc: BaseException | None, long_request_line: bool,
                   ) -> web.Response:
    """The answer to a request aiohttp's HTTP parser refused before any handler saw it (a line
    over its limit, a malformed header), in the common shape rather than aiohttp's plain text.
    ``long_request_line``: the request line was over the limit (else a header was)."""
    if isinstance(exc, LineTooLong):
        if long_request_line:
            return error_response(414, "uri_too_long", "the request line (method, path and "
                                  f"query) is longer than {MAX_LINE_BYTES} bytes; send long "
                                  "values in a JSON body", {"limit": MAX_LINE_BYTES})
        return error_response(431, "request_header_fields_too_large",
                              f"a request header is longer than {MAX_LINE_BYTES} bytes",
                              {"limit": MAX_LINE_BYTES})
    if isinstance(exc, BadHttpMessage) and status < 500:
        first = " ".join(str(exc.message).split())[:200]
        return error_response(status, "bad_request", f"malformed HTTP request: {first}")
    return error_response(500, "internal", "internal error; the gateway log has details")


def _headers_for(exc: SparkgateError) -> dict[str, str] | None:
    if isinstance(exc, RetryLater):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthenticated):
        # RFC 6750: the scheme to use; invalid_token when credentials came but were refused.
        invalid = isinstance(exc.details, dict) and exc.details.get("reason") == "invalid"
        return {"WWW-Authenticate": 'Bearer realm="sparkgate"'
                + (', error="invalid_token"' if invalid else "")}
    return None


@web.middleware
async def path_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Names and ids never hold control characters (PostgreSQL refuses NUL outright): such
    a path names nothing that can exist."""
    for value in request.match_info.values():
        if any(ord(c) < 0x20 or c == "\x7f" for c in value):
            return error_response(
                404, "not_found",
                f"{value!r} does not exist: names and ids hold no control characters",
                {"name": value})
    return await handler(request)


@web.middleware
async def unexpected_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: a bug becomes a logged 500 in the common shape, never a stack trace page."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the gateway log has details")
