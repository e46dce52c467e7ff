"""Every route of the real app against every role: each declared rule is enforced.

The routes come from ``app.router`` of ``create_app(...)``, not from a list kept here (that each
is declared, with its rule, is tests/test_routing.py's); ``test_every_role_against_every_route``
sends a request to each route as each identity (API keys and JWTs of each role, a submit key
limited to one function, and nobody) and checks the answer: allowed -> neither 401 nor 403; a
role too weak -> 403; no credentials -> 401.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkgate.gateway.app import ENDPOINTS, create_app
from sparkgate.gateway.routing import PUBLIC, Rule, declaration
from sparkgate.jobs.keys import RANK, KeyStore

ISSUER = "https://login.example.test/"
# Values for the routes' variables: names and ids that exist nowhere, and a dashboard file.
PATH_VALUES = {"name": "no-such-thing", "id": "00000000-0000-7000-8000-000000000000",
               "path": "index.html", "sha": "0" * 64}


def app_routes(app) -> list[tuple[str, str]]:
    return sorted({(route.method, resource.canonical)
                   for resource in app.router.resources() for route in resource})


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def auth_settings(settings, tmp_path: Path, signer):
    pem = tmp_path / "jwt.pem"
    pem.write_bytes(signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return dataclasses.replace(settings, auth_enabled=True, jwt_issuer=ISSUER,
                               jwt_public_key_file=pem)


@dataclasses.dataclass(frozen=True)
class Who:
    label: str
    token: str | None
    role: str | None
    limited: bool = False


@pytest.fixture
def identities(engine, signer) -> list[Who]:
    keys = KeyStore(engine)
    people = [Who("nobody", None, None)]
    for role in RANK:
        people.append(Who(f"key:{role}", keys.create(f"k-{role}", role).token, role))
        token = jwt.encode({"iss": ISSUER, "sub": f"j-{role}", "roles": [role],
                            "exp": int(time.time()) + 600}, signer, algorithm="RS256")
        people.append(Who(f"jwt:{role}", token, role))
    people.append(Who("key:submit limited to one function",
                      keys.create("k-limited", "submit", ["only-this"]).token, "submit",
                      limited=True))
    return people


def rule_of(app, method: str, path: str) -> Rule:
    route = declaration(app, method, path)
    assert route is not None, f"{method} {path} is not declared"
    return route.rule


def test_rules_name_known_roles_and_scopes():
    for route in ENDPOINTS:
        rule = route.rule
        assert route.method in {"GET", "POST", "PUT", "DELETE"}
        assert rule.role == PUBLIC or rule.role in RANK
        assert rule.function in (None, "path")
        assert not rule.token_in_query or (route.method == "GET" and rule.role != PUBLIC)


def policy(method: str, path: str) -> str:
    """The access policy in words of its own (docs/security.md), independent of the declared
    rules, so a wrong rule is caught too, not only a missing one."""
    method = "GET" if method == "HEAD" else method
    if path in ("/", "/health", "/v2/api/openapi.json") or re.match(r"/(ui|docs)(/|$)", path):
        return PUBLIC
    if (method, path) in {("POST", "/v2/api/functions/{name}/jobs"),
                          ("DELETE", "/v2/api/jobs/{id}")}:
        return "submit"
    # Code is the admin's, and so are a model's bytes; and webhooks, which send jobs' data to
    # URLs of their maker's choosing, with their deliveries.
    if method == "GET" and path not in ("/v2/api/artifacts/{name}",
                                        "/v2/api/models/{name}/versions/{sha}",
                                        "/v2/api/jobs/{id}/deliveries") \
            and not path.startswith("/v2/api/webhooks"):
        return "read"
    return "admin"


def test_the_rules_follow_the_policy(auth_settings, redis_url):
    app = create_app(auth_settings, redis_url)
    differ = [f"{method} {path}: rule {rule_of(app, method, path).role}, policy "
              f"{policy(method, path)}" for method, path in app_routes(app)
              if rule_of(app, method, path).role != policy(method, path)]
    assert not differ, differ


def expected(who: Who, method: str, path: str) -> str:
    role = policy(method, path)
    if role == PUBLIC:
        return "allowed"
    if who.token is None:
        return "401"
    if RANK[who.role] < RANK[role]:
        return "403"
    # A limited key names functions other than PATH_VALUES' name.
    if who.limited and method == "POST" and path == "/v2/api/functions/{name}/jobs":
        return "403"
    return "allowed"


def outcome(status: int) -> str:
    return str(status) if status in (401, 403) else "allowed"


async def test_every_role_against_every_route(aiohttp_client, auth_settings, redis_url,
                                              identities):
    app = create_app(auth_settings, redis_url)
    routes = app_routes(app)
    client = await aiohttp_client(app)
    wrong: list[str] = []
    for method, path in routes:
        rule = rule_of(app, method, path)
        url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
        for who in identities:
            headers = {} if who.token is None else {"Authorization": f"Bearer {who.token}"}
            # Streams (SSE, a WebSocket refused for want of an upgrade) answer with their
            # status at once; leaving the block closes the connection.
            async with client.request(method, url, headers=headers) as response:
                got = outcome(response.status)
            want = expected(who, method, path)
            if got != want:
                wrong.append(f"{method} {path} as {who.label}: got {response.status}, "
                             f"expected {want} (rule: {rule.role}, policy: "
                             f"{policy(method, path)})")
    assert not wrong, "\n".join(wrong)


async def test_with_auth_off_every_ruled_route_is_open(aiohttp_client, settings, redis_url):
    """Off: everyone acts as admin, so nothing answers 401 or 403."""
    app = create_app(settings, redis_url)
    client = await aiohttp_client(app)
    for method, path in app_routes(app):
        url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
        async with client.request(method, url) as response:
            assert response.status not in (401, 403), f"{method} {path}: {response.status}"


async def test_a_route_without_a_rule_is_refused_to_admins_too(aiohttp_client, settings,
                                                               redis_url):
    from aiohttp import web

    app = create_app(settings, redis_url)  # auth off: even the anonymous admin is refused

    async def secret(request: web.Request) -> web.Response:
        return web.json_response({"leaked": True})

    app.router.add_get("/v2/api/unruled", secret)
    client = await aiohttp_client(app)
    response = await client.get("/v2/api/unruled")
    assert response.status == 403
    body = await response.json()
    assert body["error"]["code"] == "forbidden"
    assert "has no access rule" in body["error"]["message"]
