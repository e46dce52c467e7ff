"""Who may do what: one rule per route, enforced by one middleware.

Each route's rule (the role it needs) is part of its one declaration, on its handler
(gateway/routing.py). A route on the router without a declaration is refused to everyone,
admins included, and tests/test_routing.py fails for it: a new endpoint cannot ship
unprotected by accident.

Roles, weakest first (each may call the routes of the ones before it):

- ``read``: the GETs that show jobs, functions, contexts, workers, statistics, events; it sees
  every owner's jobs (operators, dashboards).
- ``submit``: also run functions and cancel jobs, but it sees, follows and cancels only the
  jobs it submitted (another owner's job is "not found"); a key may be limited to some
  functions (runs of others are refused).
- ``admin``: everything, including code (artifacts), functions, contexts and workers, every
  owner's jobs, and Spark settings that look secret (redacted for everyone else).

Which jobs a role sees is jobs/keys.py's ``SEES_ALL_JOBS``; the handlers apply it through
``Identity`` (``visible``, ``owner_scope``). docs/security.md, "Tenancy", has the table.

Credentials: ``Authorization: Bearer <token>``, an API key (``sgk_...``, see jobs/keys.py)
or, when ``jwt_issuer`` is set, a JWT (gateway/jwt_tokens.py); or the same token as the user
name of Basic credentials, for clients that take credentials only in a URL (mist-cli).
Browsers cannot set headers on a WebSocket or an EventSource, so the event routes alone also
take ``?access_token=``; the access log never shows it (``redact_access_tokens``).

Requests without credentials from a peer in one of ``trusted_networks`` act with that
network's role (read or submit, never admin): clients that cannot send credentials at all.

With ``auth_enabled`` off every request acts as admin, submitting as ``anonymous`` and seeing
everything; the rules still apply to routes (an undeclared one is refused all the same).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from sparkgate.gateway.blocking import blocking
from sparkgate.gateway.jwt_tokens import JwtVerifier
from sparkgate.gateway.redaction import Redaction
from sparkgate.gateway.resources import SETTINGS, STORE
from sparkgate.gateway.routing import PUBLIC, Handler, Rule, route_of
from sparkgate.jobs.errors import Forbidden, Unauthenticated
from sparkgate.jobs.keys import (
    CANCELS_ALL_JOBS,
    RANK,
    SEES_ALL_JOBS,
    SEES_SECRETS,
    TOKEN_START,
    ApiKey,
    KeyStore,
    secret_hash,
)
from sparkgate.jobs.settings import Settings
from sparkgate.jobs.store import Job, job_not_found

log = logging.getLogger("sparkgate.auth")

#: A key found valid is trusted this long per gateway before it is looked up again: a revoked
#: key stops working within this time everywhere. It saves a database read per request.
KEY_CACHE_S = 2.0
KEY_CACHE_SIZE = 4096
QUERY_TOKEN = "access_token"


@dataclass(frozen=True)
class Identity:
    # Recorded on the jobs it submits: "key:<name>", "jwt:<subject>" or "anonymous".
    submitter: str
    # The strongest role held; None: authenticated, but holding no sparkgate role (a JWT
    # without one).
    role: str | None
    # A submit key's allowed functions; None: any.
    functions: frozenset[str] | None = None
    # Every role held, when more than ``role``: a JWT may list several, and what each lets
    # its holder see adds up (read + submit: submits, and sees every job).
    roles: frozenset[str] = frozenset()
    # A trusted network's client: its address (each one has its own limits).
    address: str | None = None

    def has(self, role: str) -> bool:
        return self.role is not None and RANK[self.role] >= RANK[role]

    @property
    def client(self) -> str:
        """Whose limits a request counts against (submits per second, open streams): the
        key's or token's holder; a trusted network's clients each on their own."""
        return self.submitter if self.address is None else f"{self.submitter}@{self.address}"

    def may_run(self, function: str) -> bool:
        return self.functions is None or function in self.functions

    @property
    def owner_scope(self) -> str | None:
        """The submitter whose jobs alone this identity sees; None: every owner's."""
        return None if self._holds(SEES_ALL_JOBS) else self.submitter

    @property
    def sees_secrets(self) -> bool:
        return self._holds(SEES_SECRETS)

    def sees(self, job: Job) -> bool:
        return self.owner_scope is None or job.submitter == self.submitter

    def cancels(self, job: Job) -> bool:
        return self._holds(CANCELS_ALL_JOBS) or job.submitter == self.submitter

    def _holds(self, any_of: frozenset[str]) -> bool:
        return self.role in any_of or not self.roles.isdisjoint(any_of)


ANONYMOUS = Identity("anonymous", "admin")
#: On public routes while authentication is on: nobody in particular.
NOBODY = Identity("anonymous", None)
IDENTITY = web.RequestKey("identity", Identity)


def identity(request: web.Request) -> Identity:
    return request[IDENTITY]


def redaction_for(request: web.Request) -> Redaction:
    """How the caller sees Spark settings: as they are, or with secret-looking ones redacted."""
    return Redaction(request[IDENTITY].sees_secrets,
                     request.app[SETTINGS].secret_spark_conf_keys)


def visible(request: web.Request, job: Job) -> Job:
    """The job, if the caller may see it; otherwise the very answer a job that does not exist
    gets, so that an id reveals nothing of another owner's jobs."""
    if not request[IDENTITY].sees(job):
        raise job_not_found(job.id)
    return job


def require_cancel(request: web.Request, job: Job) -> None:
    """Forbidden unless the caller may cancel ``job`` (which it can see)."""
    who = request[IDENTITY]
    if not who.cancels(job):
        raise Forbidden(f"{who.submitter} may cancel only its own jobs: job {job.id} was "
                        f"submitted by {job.submitter or 'an unrecorded submitter'}",
                        {"submitter": who.submitter, "jobId": job.id})


def require_function(request: web.Request, function: str) -> None:
    """Forbidden unless the caller may run ``function``."""
    who = request[IDENTITY]
    if not who.may_run(function):
        raise Forbidden(
            f"{who.submitter} may run only {', '.join(sorted(who.functions or ()))}: "
            f"not {function!r}",
            {"submitter": who.submitter, "function": function,
             "allowed": sorted(who.functions or ())})


class Authenticator:
    """Turns a request's credentials into an Identity; keeps valid keys for KEY_CACHE_S."""

    def __init__(self, settings: Settings, cache_s: float = KEY_CACHE_S) -> None:
        self.enabled = settings.auth_enabled
        self.jwt = JwtVerifier.from_settings(settings) if settings.auth_enabled else None
        self.cache_s = cache_s
        self.networks = TrustedNetworks(settings.trusted_networks)
        self._keys: OrderedDict[str, tuple[float, ApiKey]] = OrderedDict()

    async def authenticate(self, request: web.Request, rule: Rule) -> Identity:
        if not _has_credentials(request):
            trusted = self.networks.identity(request.remote)
            if trusted is not None:
                return trusted
        token = bearer_token(request, rule)
        if token.startswith(TOKEN_START):
            key = await self._key(request, token)
            if key is None:
                raise _unauthenticated("the API key is not valid (unknown, or mistyped)")
            if not key.active:
                raise _unauthenticated(f"the API key {key.name!r} has been revoked")
            return Identity(key.submitter, key.role,
                            None if key.functions is None else frozenset(key.functions))
        if self.jwt is None:
            raise _unauthenticated(f"expected an API key ({TOKEN_START}...); JWTs are not "
                                   "accepted here (jwt_issuer is not set)")
        claims = self.jwt.verify(token)
        return Identity(f"jwt:{claims.subject}", claims.roles[-1] if claims.roles else None,
                        roles=frozenset(claims.roles))

    async def _key(self, request: web.Request, token: str) -> ApiKey | None:
        digest = secret_hash(token)
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await blocking(_look_up, KeyStore(request.app[STORE].engine), token)
        self._keys.pop(digest, None)
        if key is not None and key.active and self.cache_s > 0:
            self._keys[digest] = (now + self.cache_s, key)
            while len(self._keys) > KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
        return key


class TrustedNetworks:
    """The identity of a credential-less request by its peer address: the most specific
    listed network holding the address decides (settings.trusted_networks)."""

    def __init__(self, networks: dict[str, str]) -> None:
        parsed = [(ipaddress.ip_network(n), role) for n, role in networks.items()]
        self._networks = sorted(parsed, key=lambda item: -item[0].prefixlen)

    def identity(self, peer: str | None) -> Identity | None:
        if not self._networks or not peer:
            return None
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # a Unix socket's peer
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener's IPv4 client
        for network, role in self._networks:
            if address.version == network.version and address in network:
                return Identity(f"network:{network}", role, address=peer)
        return None


def _has_credentials(request: web.Request) -> bool:
    return "Authorization" in request.headers or QUERY_TOKEN in request.query


def _look_up(keys: KeyStore, token: str) -> ApiKey | None:
    key = keys.lookup(token)
    if key is not None and key.active:
        keys.touch(key)
    return key


def bearer_token(request: web.Request, rule: Rule) -> str:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "basic" and token.strip():
            return _basic_token(token.strip())
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated(f"Authorization: expected 'Bearer <token>', got a "
                                   f"{scheme or 'blank'!r} header")
        return token.strip()
    if QUERY_TOKEN in request.query:
        if not rule.token_in_query:
            raise _unauthenticated(f"{QUERY_TOKEN} in the query is accepted only by the event "
                                   "streams (WebSocket, SSE); send Authorization: Bearer <token>")
        token = request.query[QUERY_TOKEN].strip()
        if token:
            return token
    where = "Authorization: Bearer <token>"
    if rule.token_in_query:
        where += f" (or ?{QUERY_TOKEN}=<token> on this event stream)"
    raise _unauthenticated(f"authentication required: send {where} with an API key or a JWT",
                           reason="missing")


def _basic_token(encoded: str) -> str:
    """The token of Basic credentials: the user name, or the password if the name is empty.
    Clients that can put credentials only in a URL send them so: mist-cli, given
    ``--host '<token>:@gateway'``, and any URL like ``http://<token>:@gateway:2004``."""
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise _unauthenticated("Authorization: Basic credentials that are not base64 of "
                               "'user:password'") from None
    token = (user or password).strip()
    if not token:
        raise _unauthenticated("Authorization: Basic credentials without a token: put the API "
                               "key or JWT as the user name")
    return token


def _unauthenticated(message: str, reason: str = "invalid") -> Unauthenticated:
    return Unauthenticated(message, {"reason": reason})


def auth_middleware(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware, with its Authenticator built now: JWT key files are read at start."""
    authenticator = Authenticator(settings)
    redact_access_tokens()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.http_exception is not None:  # no such route (404/405): nothing to protect
            return await handler(request)
        route = route_of(request)
        if route is None:
            canonical = match.route.resource.canonical if match.route.resource else request.path
            log.error("refused %s %s: not declared (gateway/routing.py), so no access rule",
                      request.method, canonical)
            raise Forbidden(f"{request.method} {canonical} has no access rule, so it is "
                            "refused to everyone (routes are declared with one: "
                            "gateway/routing.py)",
                            {"method": request.method, "route": canonical})
        rule = route.rule
        if not authenticator.enabled:
            request[IDENTITY] = ANONYMOUS
        elif rule.role == PUBLIC:
            request[IDENTITY] = NOBODY
        else:
            who = await authenticator.authenticate(request, rule)
            request[IDENTITY] = who
            _check_role(who, rule, request.method, route.template)
            if rule.function == "path":
                require_function(request, match["name"])
        return await handler(request)

    return auth


def _check_role(who: Identity, rule: Rule, method: str, canonical: str) -> None:
    if who.has(rule.role):
        return
    held = f"role {who.role}" if who.role else "no sparkgate role (admin, submit or read)"
    raise Forbidden(f"{who.submitter} has {held}; {method} {canonical} needs {rule.role}"
                    f"{'' if rule.role == 'admin' else ' or stronger'}",
                    {"submitter": who.submitter, "role": who.role, "required": rule.role})


class _RedactTokens(logging.Filter):
    _pattern = re.compile(rf"({QUERY_TOKEN}=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        # aiohttp's line holds the request line (its message, formatted) and passes it again
        # as an ``extra`` field: a message without a token has none anywhere (nearly every
        # request), and is passed on without walking the record's every attribute.
        if QUERY_TOKEN not in str(record.msg) and not any(
                isinstance(a, str) and QUERY_TOKEN in a for a in record.args or ()):
            return True
        # The message, and the fields aiohttp passes as ``extra`` (first_request_line...),
        # which structured log formatters print.
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and QUERY_TOKEN in value:
                setattr(record, name, self._pattern.sub(r"\1***", value))
        if isinstance(record.args, tuple):
            record.args = tuple(self._pattern.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def redact_access_tokens() -> None:
    """aiohttp's access log prints each request line, query included: hide tokens there."""
    access = logging.getLogger("aiohttp.access")
    if not any(isinstance(f, _RedactTokens) for f in access.filters):
        access.addFilter(_RedactTokens())
