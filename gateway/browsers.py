"""What web pages may make a browser ask of the gateway.

A browser lets any page it shows send some requests to any address without asking the server
first: a form post or a ``fetch`` with a "simple" body (``text/plain``,
``application/x-www-form-urlencoded``, ``multipart/form-data``) and a WebSocket. Against a
gateway on 127.0.0.1 with authentication off, such a page could upload code and run it. And a
page whose own host name is made to resolve to 127.0.0.1 (DNS rebinding) is "same-origin"
with whatever listens there, so it may read every answer. Hence:

- **Host**: only the gateway's own names are answered (the loopback names, ``host`` when it
  names one, and ``allowed_hosts``); others get 421.
- **Origin, Sec-Fetch-Site**: a request that changes something (any method but GET, HEAD and
  OPTIONS) or opens a WebSocket is refused with 403 when the browser says it comes from
  another origin, unless that origin is in ``allowed_origins``. Every browser in use marks
  such requests so; curl, mist-cli and other programs send neither header and are not
  concerned. (JSON routes also take only ``application/json`` from browsers: gateway/params.py.)
- **CORS**: pages of ``allowed_origins`` may call the API (preflights answered here; answers
  carry ``Access-Control-Allow-Origin``). Credentials are the Authorization header, never
  cookies, so no ``Allow-Credentials``.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web

from sparkgate.jobs.errors import CrossSiteRequest, MisdirectedRequest
from sparkgate.jobs.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# What a browser sends when the user, not a page, started the request (typed URL, bookmark).
_OWN_SITE = frozenset({"same-origin", "none"})
# Answered whatever the Host: probes (container runtimes, load balancers) use the address they
# know, and the answer holds nothing a rebinding page could use.
ANY_HOST_PATHS = frozenset({"/health"})
CORS_METHODS = "GET, HEAD, POST, PUT, DELETE"
CORS_EXPOSED = "Location, Retry-After, WWW-Authenticate, X-Artifact-Sha1"
PREFLIGHT_MAX_AGE_S = 600


@dataclass(frozen=True)
class BrowserPolicy:
    names: frozenset[str]
    domains: tuple[str, ...]
    any_host: bool
    origins: frozenset[str]

    @classmethod
    def for_settings(cls, settings: Settings) -> BrowserPolicy:
        allowed = (*_own_names(settings.host), *settings.allowed_hosts)
        names = {host_name(h) for h in allowed if h != "*" and not h.startswith(".")}
        return cls(names=frozenset(names),
                   domains=tuple(h.lower().rstrip(".") for h in allowed if h.startswith(".")),
                   any_host="*" in allowed,
                   origins=frozenset(o.lower() for o in settings.allowed_origins))

    def answers(self, host_header: str) -> bool:
        name = host_name(host_header)
        return (self.any_host or name in self.names
                or any(name.endswith(d) or name == d[1:] for d in self.domains))

    def trusts(self, origin: str) -> bool:
        return origin.lower() in self.origins


def _own_names(host: str) -> tuple[str, ...]:
    """Loopback names always (no other site can be reached by them), and the listen address
    when it names one host rather than all of them."""
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        wildcard = host == ""
    return LOOPBACK_NAMES if wildcard else (*LOOPBACK_NAMES, host)


def host_name(host_header: str) -> str:
    """The name in a Host header: no port, no IPv6 brackets, lower case, no final dot."""
    text = host_header.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    name, colon, port = text.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        text = name
    return text.rstrip(".")


def from_browser(request: web.Request) -> bool:
    """A request a web browser sent: they mark every request a page makes with one of these."""
    return hdrs.ORIGIN in request.headers or "Sec-Fetch-Site" in request.headers


def browser_middleware(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    policy = BrowserPolicy.for_settings(settings)

    @web.middleware
    async def browsers(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)
        if host is not None and request.path not in ANY_HOST_PATHS \
                and not policy.answers(host):
            raise _misdirected(host)
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and policy.trusts(origin) and _is_preflight(request):
            return _preflight(request, origin)
        if request.method not in SAFE_METHODS or _is_websocket(request):
            _check_same_origin(request, origin, policy)
        return await handler(request)

    return browsers


def cors_headers(settings: Settings) -> Callable[[web.Request, web.StreamResponse],
                                                 Awaitable[None]]:
    """An on_response_prepare hook: error answers and event streams get the headers too."""
    policy = BrowserPolicy.for_settings(settings)

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and policy.trusts(origin):
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = CORS_EXPOSED
            response.headers.add(hdrs.VARY, hdrs.ORIGIN)

    return add


def _check_same_origin(request: web.Request, origin: str | None, policy: BrowserPolicy) -> None:
    if origin is not None:
        if _is_own(origin, request.headers.get(hdrs.HOST)) or policy.trusts(origin):
            return
        raise _cross_site(request, f"a page of {origin}", {"origin": origin})
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in _OWN_SITE:
        raise _cross_site(request, f"a {site} page", {"secFetchSite": site})


def _is_own(origin: str, host_header: str | None) -> bool:
    """Origin names this gateway as the browser reached it (its Host), default port or not."""
    if host_header is None:
        return False
    try:
        parts = urllib.parse.urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    default = {"http": 80, "https": 443}.get(parts.scheme)
    netloc = parts.netloc.lower()
    if port is not None and port == default:
        netloc = netloc.rpartition(":")[0]
    return parts.scheme in ("http", "https") and netloc == host_header.strip().lower()


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def _is_preflight(request: web.Request) -> bool:
    return (request.method == "OPTIONS"
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers)


def _preflight(request: web.Request, origin: str) -> web.Response:
    headers = {
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: CORS_METHODS,
        hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_S),
    }
    asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS)
    if asked:  # any header: the origin is trusted, and credentials come as a header anyway
        headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = asked
    return web.Response(status=204, headers=headers)


def _cross_site(request: web.Request, who: str, details: dict[str, str]) -> CrossSiteRequest:
    return CrossSiteRequest(
        f"refused a cross-site request: {who} may not make this browser "
        f"{'open a WebSocket on' if _is_websocket(request) else request.method} "
        f"{request.path}; if that site is yours, add its origin to allowed_origins "
        "(SPARKGATE_ALLOWED_ORIGINS)",
        {**details, "setting": "allowed_origins"})


def _misdirected(host: str) -> MisdirectedRequest:
    return MisdirectedRequest(
        f"this gateway does not answer to the name {host_name(host)!r} (Host: {host}); if it "
        "is a name of this gateway, add it to allowed_hosts (SPARKGATE_ALLOWED_HOSTS)",
        {"host": host, "setting": "allowed_hosts"})
