"""Authentication and roles: API keys (store and CLI), JWTs, the 401/403 answers, event streams
with ``?access_token=``, revoked and function-limited keys, the submitter recorded on each job,
and the per-submitter rate of submits (429 with Retry-After).

Real PostgreSQL and SQLite (``db_url`` runs each storage test on both), real Redis; tokens are
signed with RSA keys the tests generate. The role x route table is tests/test_auth_routes.py.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from sparkgate.cli import _warn_if_no_keys, main
from sparkgate.gateway import auth
from sparkgate.gateway.app import create_app
from sparkgate.gateway.mqtt import submit_request
from sparkgate.gateway.ratelimit import KEY_PREFIX
from sparkgate.jobs import tables as t
from sparkgate.jobs.errors import BadRequest, Conflict, NotFound
from sparkgate.jobs.keys import LAST_USED_RESOLUTION_MS, KeyStore, parse_token
from tests.api_responses import error_of, json_of
from tests.conftest import REDIS_TEST_URL, free_port, function_source
from tests.server_process import running_server

API = "/v2/api"
ISSUER = "https://login.example.test/"
AUDIENCE = "sparkgate-tests"

# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def stranger() -> rsa.RSAPrivateKey:
    """A key the gateway does not know."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def make_jwt(key: Any, *, roles: Any = ("admin",), sub: str | None = "alice",
             iss: str = ISSUER, aud: str | None = AUDIENCE, exp_in: int | None = 300,
             kid: str | None = None, algorithm: str = "RS256", **extra: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": iss, "iat": now, **extra}
    if sub is not None:
        claims["sub"] = sub
    if aud is not None:
        claims["aud"] = aud
    if exp_in is not None:
        claims["exp"] = now + exp_in
    if roles is not None:
        claims["roles"] = list(roles) if isinstance(roles, tuple) else roles
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


@pytest.fixture
def auth_settings(settings, tmp_path: Path, signer):
    pem = tmp_path / "jwt.pem"
    pem.write_bytes(public_pem(signer))
    return dataclasses.replace(settings, auth_enabled=True, jwt_issuer=ISSUER,
                               jwt_audience=AUDIENCE, jwt_public_key_file=pem)


@pytest.fixture
def keys(engine) -> KeyStore:
    return KeyStore(engine)


@pytest.fixture
async def client(aiohttp_client, auth_settings, redis_url):
    return await aiohttp_client(create_app(auth_settings, redis_url))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(keys: KeyStore) -> str:
    return keys.create("admin", "admin").token


async def deploy_echo(client, token: str, name: str = "echo") -> None:
    if (await client.get(f"{API}/artifacts/echo.py/sha", headers=bearer(token))).status == 404:
        form = aiohttp.FormData()
        form.add_field("file", function_source("echo.py"), filename="echo.py")
        uploaded = await client.post(f"{API}/artifacts", data=form, headers=bearer(token))
        assert uploaded.status == 200, await uploaded.text()
    await json_of(await client.post(f"{API}/functions", headers=bearer(token), json={
        "name": name, "path": "echo.py", "className": "echo"}))


async def run(client, token: str | None, function: str = "echo", **kw: Any):
    headers = kw.pop("headers", {})
    if token is not None:
        headers.update(bearer(token))
    return await client.post(f"{API}/functions/{function}/jobs", json={"value": 1},
                             headers=headers, **kw)


async def job_of(client, token: str, job_id: str) -> dict[str, Any]:
    return await json_of(await client.get(f"{API}/jobs/{job_id}", headers=bearer(token)))


async def unauthenticated(response) -> dict[str, Any]:
    error = await error_of(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="sparkgate"')
    return error


# ---------------------------------------------------------------------------------------------
# API keys: the store


def test_a_key_is_shown_once_and_only_its_hash_is_kept(keys: KeyStore, engine):
    created = keys.create("ci", "submit", ["echo", "pi"])
    assert re.fullmatch(r"sgk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", created.token)
    prefix, secret = parse_token(created.token)
    assert created.key.prefix == prefix and created.key.functions == ("echo", "pi")
    with engine.connect() as conn:
        row = conn.execute(select(t.api_keys)).mappings().one()
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in row.values())  # nowhere in clear
    assert keys.lookup(created.token) == created.key
    # One character off, another key's prefix, no prefix at all: no key.
    last = "A" if created.token[-1] != "A" else "B"
    assert keys.lookup(created.token[:-1] + last) is None
    assert keys.lookup(f"sgk_{'0' * 8}_{secret}") is None
    assert keys.lookup(secret) is None and keys.lookup("") is None
    assert "secret" not in json.dumps(created.key.to_dict())


def test_a_revoked_key_is_found_but_inactive(keys: KeyStore):
    created = keys.create("old", "read")
    revoked = keys.revoke("old")
    assert revoked.revoked_at is not None and not revoked.active
    assert keys.lookup(created.token).active is False
    assert keys.revoke("old").revoked_at == revoked.revoked_at  # again: unchanged
    assert keys.count_active() == 0
    with pytest.raises(NotFound):
        keys.revoke("never-made")


@pytest.mark.parametrize(("name", "role", "functions", "field"), [
    ("", "read", None, "name"),
    ("has space", "read", None, "name"),
    ("ok", "superuser", None, "role"),
    ("ok", "admin", ["pi"], "functions"),
    ("ok", "read", ["pi"], "functions"),
    ("ok", "submit", [], "functions"),
    ("ok", "submit", [""], "functions"),
])
def test_bad_keys_are_refused_naming_the_field(keys: KeyStore, name, role, functions, field):
    with pytest.raises(BadRequest) as refused:
        keys.create(name, role, functions)
    assert refused.value.message.startswith(f"{field}: expected")
    assert keys.list_keys() == []


def test_names_are_unique_even_after_revocation(keys: KeyStore):
    keys.create("ci", "read")
    keys.revoke("ci")
    with pytest.raises(Conflict):
        keys.create("ci", "admin")


def test_last_use_is_written_at_most_once_a_minute(keys: KeyStore):
    created = keys.create("ci", "read")
    keys.touch(keys.lookup(created.token))
    first = keys.get("ci").last_used_at
    assert first is not None
    keys.touch(keys.lookup(created.token))
    assert keys.get("ci").last_used_at == first
    # A minute later (as the row says), it is written again.
    with keys.engine.begin() as conn:
        conn.execute(t.api_keys.update().values(last_used_at=first - LAST_USED_RESOLUTION_MS))
    keys.touch(keys.lookup(created.token))
    assert keys.get("ci").last_used_at >= first


# ---------------------------------------------------------------------------------------------
# API keys: the command line


def cli(db_url: str, *args: str):
    env = {"SPARKGATE_DATABASE_URL": db_url, "SPARKGATE_CONFIG": ""}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_keys_from_the_command_line(db_url: str, keys: KeyStore):
    made = cli(db_url, "keys", "create", "--name", "ci", "--role", "submit",
               "--function", "pi", "--function", "echo")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert keys.lookup(token).name == "ci"
    assert "shown only now" in made.stderr
    assert cli(db_url, "keys", "create", "--name", "ops", "--role", "admin").exit_code == 0

    listed = cli(db_url, "keys", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PREFIX", "ROLE", "FUNCTIONS", "CREATED", "REVOKED",
                                "LAST", "USED"]
    ci = next(line for line in lines if line.startswith("ci "))
    prefix, secret = parse_token(token)
    assert f"sgk_{prefix}_" in ci and " submit " in ci and " pi,echo " in ci
    assert secret not in listed.output
    assert " * " in next(line for line in lines if line.startswith("ops "))  # any function

    revoked = cli(db_url, "keys", "revoke", "ci")
    assert revoked.exit_code == 0 and "key 'ci' revoked at" in revoked.stdout
    as_json = json.loads(cli(db_url, "keys", "list", "--json").stdout)
    by_name = {k["name"]: k for k in as_json}
    assert by_name["ci"]["revokedAt"] is not None and by_name["ops"]["revokedAt"] is None
    assert by_name["ci"]["functions"] == ["pi", "echo"] and by_name["ops"]["functions"] is None
    assert secret not in json.dumps(as_json)


def test_the_command_line_names_what_is_wrong(db_url: str):
    assert cli(db_url, "keys", "create", "--name", "ci", "--role", "read").exit_code == 0
    again = cli(db_url, "keys", "create", "--name", "ci", "--role", "read")
    assert again.exit_code == 1 and "a key named 'ci' already exists" in again.output
    limited = cli(db_url, "keys", "create", "--name", "x", "--role", "admin", "--function", "pi")
    assert limited.exit_code == 1 and "only submit keys can be limited" in limited.output
    role = cli(db_url, "keys", "create", "--name", "y", "--role", "root")
    assert role.exit_code == 2 and "'root' is not one of" in role.output
    unknown = cli(db_url, "keys", "revoke", "nobody")
    assert unknown.exit_code == 1 and "no API key named 'nobody'" in unknown.output
    assert "Traceback" not in unknown.output


def test_keys_can_be_made_before_the_first_start(tmp_path: Path):
    """The embedded SQLite is migrated as serve does it, so a key can come first."""
    env = {"SPARKGATE_DATA_DIR": str(tmp_path / "data"), "SPARKGATE_CONFIG": ""}
    made = CliRunner().invoke(main, ["keys", "create", "--name", "me", "--role", "admin"],
                              env=env)
    assert made.exit_code == 0, made.output
    assert (tmp_path / "data" / "sparkgate.db").exists()


# ---------------------------------------------------------------------------------------------
# 401 and 403


async def test_no_or_bad_credentials_are_401_with_the_scheme(client, keys: KeyStore):
    missing = await unauthenticated(await client.get(f"{API}/jobs"))
    assert "Authorization: Bearer" in missing["message"]
    response = await client.get(f"{API}/jobs")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="sparkgate"'

    digest = await client.get(f"{API}/jobs", headers={"Authorization": "Digest x=1"})
    assert "expected 'Bearer <token>'" in (await unauthenticated(digest))["message"]
    assert 'error="invalid_token"' in digest.headers["WWW-Authenticate"]
    garbled = await client.get(f"{API}/jobs", headers={"Authorization": "Basic %%%"})
    assert "not base64" in (await unauthenticated(garbled))["message"]
    # Basic user:pw: "user" is taken for a token, and is none.
    await unauthenticated(await client.get(f"{API}/jobs",
                                           headers={"Authorization": "Basic dXNlcjpwdw=="}))

    made = keys.create("ci", "read")
    wrong = made.token[:-4] + ("AAAA" if not made.token.endswith("AAAA") else "BBBB")
    message = (await unauthenticated(await client.get(f"{API}/jobs", headers=bearer(wrong))))
    assert "not valid" in message["message"] and wrong not in json.dumps(message)
    # Not a key, and not a JWT either.
    await unauthenticated(await client.get(f"{API}/jobs", headers=bearer("hunter2")))


async def test_a_key_as_basic_credentials_is_a_key(client, keys: KeyStore):
    """What clients that take credentials only in a URL send (mist-cli: --host KEY@gateway)."""
    token = keys.create("mist", "read").token
    for credentials in (f"{token}:", f":{token}"):
        encoded = base64.b64encode(credentials.encode()).decode()
        response = await client.get(f"{API}/jobs", headers={"Authorization": f"Basic {encoded}"})
        assert response.status == 200, await response.text()
    anonymous = base64.b64encode(b":").decode()
    error = await unauthenticated(await client.get(
        f"{API}/jobs", headers={"Authorization": f"Basic {anonymous}"}))
    assert "without a token" in error["message"]


async def test_a_revoked_key_is_refused(client, keys: KeyStore):
    made = keys.create("gone", "admin")
    keys.revoke("gone")
    error = await unauthenticated(await client.get(f"{API}/jobs", headers=bearer(made.token)))
    assert "'gone' has been revoked" in error["message"]


async def test_a_key_revoked_while_in_use_stops_within_the_cache_time(client, keys: KeyStore):
    made = keys.create("busy", "read")
    await json_of(await client.get(f"{API}/jobs", headers=bearer(made.token)))
    keys.revoke("busy")
    deadline = time.monotonic() + auth.KEY_CACHE_S + 2
    while (await client.get(f"{API}/jobs", headers=bearer(made.token))).status == 200:
        assert time.monotonic() < deadline, "a revoked key still works"
        await asyncio.sleep(0.1)
    await unauthenticated(await client.get(f"{API}/jobs", headers=bearer(made.token)))


async def test_use_is_recorded_on_the_key(client, keys: KeyStore):
    made = keys.create("ci", "read")
    assert keys.get("ci").last_used_at is None
    await json_of(await client.get(f"{API}/jobs", headers=bearer(made.token)))
    assert keys.get("ci").last_used_at is not None


async def test_a_trusted_network_acts_with_its_role_without_credentials(
        aiohttp_client, auth_settings, redis_url, keys: KeyStore, admin: str):
    """settings.trusted_networks: the test client's address is 127.0.0.1."""
    trusting = dataclasses.replace(auth_settings, trusted_networks={
        "127.0.0.0/8": "submit", "0.0.0.0/0": "read"})
    client = await aiohttp_client(create_app(trusting, redis_url))
    await deploy_echo(client, admin)
    job_id = (await json_of(await run(client, None)))["id"]
    assert (await job_of(client, admin, job_id))["submitter"] == "network:127.0.0.0/8"
    # A submit role: the network's own jobs only, and never code or contexts.
    own = await json_of(await client.get(f"{API}/jobs"))
    assert [j["jobId"] for j in own] == [job_id]
    admins_job = (await json_of(await run(client, admin)))["id"]
    await error_of(await client.get(f"{API}/jobs/{admins_job}"), 404, "not_found")
    refused = await error_of(await client.post(f"{API}/contexts", json={"name": "c"}),
                             403, "forbidden")
    assert refused["details"]["submitter"] == "network:127.0.0.0/8"
    # Credentials, when sent, decide: a bad key is refused from a trusted address too.
    await unauthenticated(await client.get(f"{API}/jobs", headers=bearer("sgk_mistyped")))

    elsewhere = dataclasses.replace(auth_settings, trusted_networks={"10.0.0.0/8": "submit"})
    other = await aiohttp_client(create_app(elsewhere, redis_url))
    await unauthenticated(await other.get(f"{API}/jobs"))


def test_the_most_specific_trusted_network_decides():
    networks = auth.TrustedNetworks({"10.0.0.0/8": "read", "10.1.0.0/16": "submit",
                                     "fd00::/8": "read"})
    assert networks.identity("10.1.2.3") == auth.Identity("network:10.1.0.0/16", "submit",
                                                         address="10.1.2.3")
    assert networks.identity("10.2.0.1") == auth.Identity("network:10.0.0.0/8", "read",
                                                         address="10.2.0.1")
    # A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6 addresses.
    assert networks.identity("::ffff:10.1.0.9") == auth.Identity(
        "network:10.1.0.0/16", "submit", address="::ffff:10.1.0.9")
    assert networks.identity("fd12::1") == auth.Identity("network:fd00::/8", "read",
                                                        address="fd12::1")
    # One submitter for the jobs, but each client has its own submit rate and stream limit.
    assert networks.identity("10.1.2.3").client == "network:10.1.0.0/16@10.1.2.3"
    assert auth.Identity("key:ci", "submit").client == "key:ci"
    assert networks.identity("192.168.0.1") is None
    assert networks.identity("") is None


async def mist_cli(port: int, *args: str, host: str = "127.0.0.1") -> tuple[int, str, str]:
    """mist-cli against a test server in this loop (so it runs in a subprocess, awaited)."""
    process = await asyncio.create_subprocess_exec(
        "mist-cli", "--host", host, "--port", str(port), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_mist_cli_without_credentials_gets_an_error_not_a_crash(client, admin: str):
    """mist-cli parses its list answers whatever the status: the 401 it gets is plain text,
    which it reports as an error (exit 2) instead of dying on the error object."""
    for listing in ("functions", "jobs", "workers", "contexts"):
        code, out, err = await mist_cli(client.server.port, "list", listing)
        assert code == 2 and "Traceback" not in err and err.startswith("Error:"), (out, err)
    # A key that is refused (mistyped, revoked) is no crash either.
    code, out, err = await mist_cli(client.server.port, "list", "functions",
                                    host="sgk_mistyped:@127.0.0.1")
    assert code == 2 and "Traceback" not in err and err.startswith("Error:"), (out, err)
    requests = {"User-Agent": "python-requests/2.32.3", "Accept": "*/*"}
    plain = await client.get(f"{API}/functions", headers=requests)
    assert plain.status == 401 and plain.content_type == "text/plain"
    assert (await plain.text()).startswith("unauthenticated: authentication required")
    assert plain.headers["WWW-Authenticate"] == 'Bearer realm="sparkgate"'
    refused = await client.get(f"{API}/functions", headers={**requests, **bearer("sgk_mistyped")})
    assert refused.status == 401 and refused.content_type == "text/plain"
    assert refused.headers["WWW-Authenticate"].endswith('error="invalid_token"')
    # Every other client, answers that are no list, and a requests script that asks for
    # JSON keep the error object.
    await unauthenticated(await client.get(f"{API}/functions"))
    await unauthenticated(await client.get(f"{API}/functions/echo", headers=requests))
    await unauthenticated(await client.get(
        f"{API}/functions", headers={**requests, "Accept": "application/json"}))


async def test_mist_cli_from_a_trusted_network(aiohttp_client, auth_settings, redis_url,
                                               admin: str):
    trusting = dataclasses.replace(auth_settings, trusted_networks={"127.0.0.1/32": "read"})
    client = await aiohttp_client(create_app(trusting, redis_url))
    await deploy_echo(client, admin)
    code, out, err = await mist_cli(client.server.port, "list", "functions")
    assert code == 0, (out, err)
    assert "echo" in out


async def test_roles_read_submit_admin(client, keys: KeyStore, admin: str):
    await deploy_echo(client, admin)
    read = keys.create("reader", "read").token
    submit = keys.create("runner", "submit").token

    await json_of(await client.get(f"{API}/jobs", headers=bearer(read)))
    refused = await error_of(await run(client, read), 403, "forbidden")
    assert refused["message"] == ("key:reader has role read; POST /v2/api/functions/{name}/jobs "
                                  "needs submit or stronger")
    assert refused["details"] == {"submitter": "key:reader", "role": "read",
                                  "required": "submit"}

    job_id = (await json_of(await run(client, submit)))["id"]
    assert (await job_of(client, read, job_id))["submitter"] == "key:runner"
    await error_of(await client.post(f"{API}/contexts", json={"name": "c"},
                                      headers=bearer(submit)), 403, "forbidden")
    await json_of(await client.delete(f"{API}/jobs/{job_id}", headers=bearer(submit)))

    await json_of(await client.post(f"{API}/contexts", json={"name": "c"},
                                     headers=bearer(admin)))
    admins_job = (await json_of(await run(client, admin)))["id"]
    assert (await job_of(client, admin, admins_job))["submitter"] == "key:admin"


async def test_a_limited_submit_key_runs_only_its_functions(client, keys: KeyStore, admin: str):
    await deploy_echo(client, admin, "echo")
    await deploy_echo(client, admin, "other")
    limited = keys.create("limited", "submit", ["echo"]).token

    own = (await json_of(await run(client, limited, "echo")))["id"]
    refused = await error_of(await run(client, limited, "other"), 403, "forbidden")
    assert refused["message"] == "key:limited may run only echo: not 'other'"
    # Refused before anything else: a function that does not exist is no different.
    await error_of(await run(client, limited, "nosuch"), 403, "forbidden")

    # Another owner's job is not its to see, let alone cancel (tests/test_tenancy.py).
    others = (await json_of(await run(client, admin, "other")))["id"]
    await error_of(await client.delete(f"{API}/jobs/{others}", headers=bearer(limited)),
                   404, "not_found")
    assert (await job_of(client, admin, others))["status"] == "queued"
    cancelled = await json_of(await client.delete(f"{API}/jobs/{own}", headers=bearer(limited)))
    assert cancelled["status"] == "cancelled"


async def test_public_routes_need_nothing_and_status_needs_a_role(client, admin: str):
    assert (await client.get("/health")).status == 200
    assert (await client.get("/")).status == 200
    assert (await client.get("/ui/")).status == 200
    assert (await client.get("/ui/app.js")).status == 200
    # A bad key on a public route does not matter: it is not looked at.
    assert (await client.get("/health", headers=bearer("sgk_nope"))).status == 200
    await unauthenticated(await client.get(f"{API}/status"))
    await json_of(await client.get(f"{API}/status", headers=bearer(admin)))


async def test_unknown_routes_are_404_not_401(client):
    await error_of(await client.get(f"{API}/nothing-here"), 404, "not_found")


# ---------------------------------------------------------------------------------------------
# JWT


async def test_a_jwt_with_roles_acts_as_its_strongest(client, signer, admin: str):
    await deploy_echo(client, admin)
    reader = make_jwt(signer, roles=["read"], sub="rita")
    await json_of(await client.get(f"{API}/jobs", headers=bearer(reader)))
    await error_of(await run(client, reader), 403, "forbidden")

    several = make_jwt(signer, roles=["read", "submit", "unknown-role"], sub="sam")
    job_id = (await json_of(await run(client, several)))["id"]
    assert (await job_of(client, reader, job_id))["submitter"] == "jwt:sam"
    await error_of(await client.post(f"{API}/contexts", json={"name": "x"},
                                     headers=bearer(several)), 403, "forbidden")

    both = make_jwt(signer, roles="read admin")  # a space-separated string works too
    await json_of(await client.post(f"{API}/contexts", json={"name": "x"},
                                    headers=bearer(both)))


@pytest.mark.parametrize(("claims", "reason"), [
    ({"exp_in": -120}, "it has expired (exp)"),
    ({"exp_in": None}, "it has no 'exp' claim"),
    ({"nbf": int(time.time()) + 3600}, "it is not valid yet (nbf)"),
    ({"iss": "https://evil.example/"}, f"its issuer (iss) is not {ISSUER!r}"),
    ({"aud": "another-service"}, f"its audience (aud) does not include {AUDIENCE!r}"),
    ({"aud": None}, "it has no 'aud' claim"),
    ({"sub": None}, "it has no 'sub' claim naming who it is for"),
])
async def test_a_bad_jwt_is_refused_saying_why(client, signer, claims, reason):
    if "nbf" in claims:  # relative to now, not to when the module was collected
        claims = {"nbf": int(time.time()) + 3600}
    token = make_jwt(signer, **claims)
    error = await unauthenticated(await client.get(f"{API}/jobs", headers=bearer(token)))
    assert error["message"] == f"bearer token refused: {reason}"


async def test_a_jwt_signed_by_another_key_is_refused(client, signer, stranger):
    forged = make_jwt(stranger, roles=["admin"])
    error = await unauthenticated(await client.get(f"{API}/jobs", headers=bearer(forged)))
    assert "signature does not match" in error["message"]
    # The public key used as an HMAC secret (the classic confusion): refused. Made by hand,
    # since PyJWT itself will not sign with a PEM key as an HMAC secret.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "roles": ["admin"],
                           "exp": int(time.time()) + 60}).encode())
    mac = hmac.new(public_pem(signer), f"{head}.{body}".encode(), hashlib.sha256).digest()
    error = await unauthenticated(await client.get(
        f"{API}/jobs", headers=bearer(f"{head}.{body}.{b64(mac)}")))
    assert "The specified alg value is not allowed" in error["message"]


async def test_a_jwt_without_roles_is_authenticated_but_may_do_nothing(client, signer):
    for roles in (None, [], ["superuser"]):
        token = make_jwt(signer, roles=roles, sub="nobody")
        error = await error_of(await client.get(f"{API}/jobs", headers=bearer(token)),
                               403, "forbidden")
        assert error["message"].startswith("jwt:nobody has no sparkgate role")
    assert (await client.get("/health", headers=bearer(token))).status == 200


async def test_keys_of_a_jwks_file_by_kid(aiohttp_client, settings, redis_url, tmp_path: Path,
                                          signer, stranger):
    jwks = {"keys": [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid,
         "alg": "RS256", "use": "sig"}
        for kid, key in (("one", signer), ("two", stranger))]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    nested = dataclasses.replace(settings, auth_enabled=True, jwt_issuer=ISSUER,
                                 jwt_audience=AUDIENCE, jwt_jwks_file=path,
                                 jwt_roles_claim="realm_access.roles")
    client = await aiohttp_client(create_app(nested, redis_url))
    for kid, key in (("one", signer), ("two", stranger)):
        token = make_jwt(key, kid=kid, roles=None, realm_access={"roles": ["read"]})
        await json_of(await client.get(f"{API}/jobs", headers=bearer(token)))
    swapped = make_jwt(signer, kid="two", roles=None, realm_access={"roles": ["read"]})
    await unauthenticated(await client.get(f"{API}/jobs", headers=bearer(swapped)))
    unknown = make_jwt(signer, kid="three", roles=None, realm_access={"roles": ["read"]})
    error = await unauthenticated(await client.get(f"{API}/jobs", headers=bearer(unknown)))
    assert "'three' is not in the JWKS file" in error["message"]


def test_unusable_jwt_settings_stop_the_start(settings, tmp_path: Path):
    from sparkgate.jobs.errors import ConfigError

    no_key = dataclasses.replace(settings, auth_enabled=True, jwt_issuer=ISSUER)
    with pytest.raises(ConfigError, match="jwt_public_key_file or jwt_jwks_file"):
        create_app(no_key, REDIS_TEST_URL)
    (tmp_path / "bad.pem").write_text("not a key")
    bad = dataclasses.replace(no_key, jwt_public_key_file=tmp_path / "bad.pem")
    with pytest.raises(ConfigError, match="expected a PEM public key"):
        create_app(bad, REDIS_TEST_URL)


async def test_without_jwt_settings_only_keys_are_accepted(aiohttp_client, settings, redis_url,
                                                         signer):
    keys_only = dataclasses.replace(settings, auth_enabled=True)
    client = await aiohttp_client(create_app(keys_only, redis_url))
    error = await unauthenticated(await client.get(f"{API}/jobs",
                                                   headers=bearer(make_jwt(signer))))
    assert "JWTs are not accepted here" in error["message"]


# ---------------------------------------------------------------------------------------------
# Event streams: the same roles, and ?access_token= for browsers


async def test_event_streams_take_a_token_in_the_query(client, keys: KeyStore, caplog):
    token = keys.create("watcher", "read").token
    caplog.set_level(logging.INFO, logger="aiohttp.access")

    await unauthenticated(await client.get(f"{API}/events"))
    async with client.get(f"{API}/events", params={"access_token": token}) as sse:
        assert sse.status == 200 and sse.content_type == "text/event-stream"
        assert await sse.content.readline() == b": connected\n"
    async with client.get(f"{API}/events", headers=bearer(token)) as sse:
        assert sse.status == 200

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"{API}/ws/all")
    assert refused.value.status == 401
    ws = await client.ws_connect(f"{API}/ws/all", params={"access_token": token})
    assert not ws.closed
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as bad:
        await client.ws_connect(f"{API}/ws/all", params={"access_token": token + "x"})
    assert bad.value.status == 401

    # Elsewhere the query is not a place for credentials.
    error = await unauthenticated(await client.get(f"{API}/jobs",
                                                   params={"access_token": token}))
    assert "accepted only by the event streams" in error["message"]

    await asyncio.sleep(0.1)  # the access log line is written after the response
    logged = "\n".join(r.getMessage() + repr(vars(r)) for r in caplog.records)
    assert "access_token=***" in logged
    assert token not in logged and token not in caplog.text


async def test_a_job_socket_needs_read_too(client, keys: KeyStore, admin: str):
    await deploy_echo(client, admin)
    job_id = (await json_of(await run(client, admin)))["id"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"{API}/ws/jobs/{job_id}")
    assert refused.value.status == 401
    ws = await client.ws_connect(f"{API}/ws/jobs/{job_id}", params={"access_token": admin})
    await client.delete(f"{API}/jobs/{job_id}", headers=bearer(admin))
    message = await asyncio.wait_for(ws.receive_json(), 10)
    assert message["event"] == "cancelled" and message["id"] == job_id
    await ws.close()


# ---------------------------------------------------------------------------------------------
# The submitter, with authentication off, and from MQTT


@pytest.fixture
async def open_client(aiohttp_client, settings, redis_url):
    assert settings.auth_enabled is False  # the default
    return await aiohttp_client(create_app(settings, redis_url))


async def test_with_auth_off_everyone_is_an_anonymous_admin(open_client):
    await deploy_echo(open_client, "ignored")  # any bearer token is ignored
    job_id = (await json_of(await run(open_client, None)))["id"]
    details = await json_of(await open_client.get(f"{API}/jobs/{job_id}"))
    assert details["submitter"] == "anonymous"
    listed = await json_of(await open_client.get(f"{API}/jobs"))
    assert listed[0]["submitter"] == "anonymous"


async def test_the_idempotency_key_header_reaches_the_submission(open_client):
    await deploy_echo(open_client, "")
    headers = {"Idempotency-Key": "order-42"}
    first = (await json_of(await run(open_client, None, headers=dict(headers))))["id"]
    again = (await json_of(await run(open_client, None, headers=dict(headers))))["id"]
    other = (await json_of(await run(open_client, None)))["id"]
    assert first == again != other


def test_mqtt_jobs_are_submitted_by_mqtt():
    assert submit_request({"functionId": "pi", "parameters": {}}).submitter == "mqtt"


# ---------------------------------------------------------------------------------------------
# Submits per second


async def test_submits_over_the_rate_get_429_with_retry_after(aiohttp_client, settings,
                                                              redis_url, redis, keys: KeyStore):
    # A token every 4 s: the burst's submits cannot earn one back, even on a loaded machine.
    limited = dataclasses.replace(settings, auth_enabled=True, submits_per_second=0.25,
                                  submit_burst=2)
    client = await aiohttp_client(create_app(limited, redis_url))
    admin = keys.create("admin", "admin").token
    other = keys.create("other", "submit").token
    await deploy_echo(client, admin)
    for _ in range(2):  # the burst
        await json_of(await run(client, admin))
    response = await run(client, admin)
    error = await error_of(response, 429, "too_many_requests")
    assert response.headers["Retry-After"] == "4"  # one token every 4 s
    assert error["details"]["submitter"] == "key:admin"
    assert "0.25 submits per second" in error["message"]
    # Each submitter has its own bucket; reading is not limited.
    await json_of(await run(client, other))
    await json_of(await client.get(f"{API}/jobs", headers=bearer(admin)))
    assert redis.exists(KEY_PREFIX + "key:admin") and redis.ttl(KEY_PREFIX + "key:admin") > 0
    # The bucket refills: a token is back within the time Retry-After said.
    await asyncio.sleep(4.05)
    await json_of(await run(client, admin))


async def test_without_a_rate_no_bucket_is_kept(open_client, redis):
    await deploy_echo(open_client, "")
    for _ in range(3):
        await json_of(await run(open_client, None))
    assert not redis.keys(KEY_PREFIX + "*")


# ---------------------------------------------------------------------------------------------
# serve: what it says at start


def test_serve_warns_when_auth_is_on_but_nothing_can_authenticate(settings, keys: KeyStore,
                                                                   caplog):
    on = dataclasses.replace(settings, auth_enabled=True)
    _warn_if_no_keys(on)
    assert "sparkgate keys create --name admin --role admin" in caplog.text
    caplog.clear()
    keys.create("admin", "admin")
    _warn_if_no_keys(on)
    assert "keys create" not in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auth", "insecure"])
def test_serve_beyond_loopback(tmp_path: Path, redis_url: str, mode: str):
    """With auth on it listens on 0.0.0.0 (warning that no key exists yet); with auth off
    only with --insecure, and then says so loudly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    env["SPARKGATE_PROCESSES"] = "1"  # one gateway process, as the tests expect
    env.update({"SPARKGATE_DATA_DIR": str(tmp_path / "data"), "SPARKGATE_REDIS_URL": redis_url,
                "SPARKGATE_START_WORKERS": "false", "SPARKGATE_DEPLOY_EXAMPLES": "false",
                "SPARKGATE_PORT": str(free_port())})
    args = ["--host", "0.0.0.0"]
    if mode == "auth":
        env["SPARKGATE_AUTH_ENABLED"] = "true"
    else:
        args.append("--insecure")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from sparkgate.cli import main; main()", "serve", *args],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "sparkgate on http://0.0.0.0" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    text = log.read_text()
    if mode == "auth":
        assert "there is no API key and no JWT issuer" in text and "INSECURE" not in text
    else:
        assert "INSECURE: listening on 0.0.0.0 with authentication off" in text


@pytest.mark.slow
def test_mist_cli_with_the_key_in_its_host(tmp_path: Path, redis_url: str):
    """docs/security.md: mist-cli sends no credentials of its own, but puts its --host in the
    URL, whose user-info (`key:@host`: requests needs the colon) goes as Basic credentials."""
    with running_server(tmp_path, {"SPARKGATE_AUTH_ENABLED": "true",
                                   "SPARKGATE_START_WORKERS": "false",
                                   "SPARKGATE_REDIS_URL": redis_url},
                        wait_for_worker=False) as server:
        token = server.create_key("mist", "read")
        listed = subprocess.run(["mist-cli", "--host", f"{token}:@127.0.0.1",
                                 "--port", str(server.port), "list", "functions"],
                                capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "word_count" in listed.stdout and "pi" in listed.stdout


@pytest.mark.slow
def test_the_first_key_is_made_once_and_works(tmp_path: Path, redis_url: str):
    """serve --first-key (the Docker image's default): with auth on and no key, an admin key
    whose token is in the log; started again, no second one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    port = free_port()
    env.update({"SPARKGATE_DATA_DIR": str(tmp_path / "data"), "SPARKGATE_REDIS_URL": redis_url,
                "SPARKGATE_START_WORKERS": "false", "SPARKGATE_DEPLOY_EXAMPLES": "false",
                "SPARKGATE_AUTH_ENABLED": "true", "SPARKGATE_PROCESSES": "1",
                "SPARKGATE_PORT": str(port)})

    def start_and_stop(log: Path) -> str:
        with log.open("wb") as out:
            process = subprocess.Popen(["sparkgate", "serve", "--first-key"], env=env,
                                       cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "sparkgate on http://" not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            tokens = re.findall(r"^\s+(sgk_\S+)$", log.read_text(), re.MULTILINE)
            if tokens:
                answer = requests.get(f"http://127.0.0.1:{port}/v2/api/functions",
                                      headers={"Authorization": f"Bearer {tokens[0]}"},
                                      timeout=30)
                assert answer.status_code == 200, answer.text
            anonymous = requests.get(f"http://127.0.0.1:{port}/v2/api/functions", timeout=30)
            assert anonymous.status_code == 401
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        return log.read_text()

    first = start_and_stop(tmp_path / "first.log")
    assert "created the admin key 'admin-" in first and "no API key and no JWT" not in first
    assert len(re.findall(r"^\s+sgk_\S+$", first, re.MULTILINE)) == 1
    again = start_and_stop(tmp_path / "again.log")
    assert "created the admin key" not in again and "sgk_" not in again
