"""Web pages cannot drive the gateway (docs/security.md, "Browsers"): requests a browser marks
as coming from another site may not change anything, a Host the gateway is not configured for
(DNS rebinding) is answered 421, and the dashboard, curl, mist-cli and scripts keep working.

The requests carry what Chromium sends (Origin, Sec-Fetch-Site, Host); one test drives a real
Chromium against a real `sparkgate serve`.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
import requests

from sparkgate.jobs.keys import KeyStore
from tests.api_responses import error_of, json_of
from tests.browser import chromium
from tests.conftest import free_port, function_source
from tests.server_process import running_server, wait_until
from tests.test_hostile_input import Footprint

API = "/v2/api"
EVIL = "https://evil.example"
CROSS_SITE = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}


def own(client, site: str = "same-origin") -> dict[str, str]:
    """The headers of a request the dashboard (served by this gateway) makes."""
    origin = str(client.make_url("")).rstrip("/")
    return {"Origin": origin, "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "cors"}


def upload_form(name: str = "echo.py") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", function_source("echo.py"), filename=name)
    return form


async def deploy_echo(client) -> None:
    assert (await client.post(f"{API}/artifacts", data=upload_form())).status == 200
    await json_of(await client.post(f"{API}/functions", json={
        "name": "echo", "path": "echo.py", "className": "echo"}))


@pytest.fixture
def footprint(engine, tmp_path: Path) -> Footprint:
    return Footprint(engine, tmp_path)


# ---------------------------------------------------------------------------------------------
# Cross-site requests that change state


async def test_a_page_of_another_site_cannot_upload_code(client, footprint):
    """multipart/form-data is a "simple" request: a browser sends it without a preflight."""
    response = await client.post(f"{API}/artifacts", data=upload_form("evil.py"),
                                 headers=CROSS_SITE)
    error = await error_of(response, 403, "cross_site_request")
    assert error["message"].startswith(
        f"refused a cross-site request: a page of {EVIL} may not make this browser POST "
        f"{API}/artifacts; if that site is yours, add its origin to allowed_origins")
    assert error["details"] == {"origin": EVIL, "setting": "allowed_origins"}
    footprint.unchanged()


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded",
                                          "application/json"])
async def test_a_page_of_another_site_cannot_create_or_run_functions(client, engine, tmp_path,
                                                                     content_type):
    await deploy_echo(client)
    footprint = Footprint(engine, tmp_path)
    headers = {**CROSS_SITE, "Content-Type": content_type}
    for path, body in ((f"{API}/functions/echo/jobs", {"value": 1}),
                       (f"{API}/functions", {"name": "f2", "path": "echo.py",
                                             "className": "echo"}),
                       (f"{API}/contexts", {"name": "evil"})):
        response = await client.post(path, data=json.dumps(body), headers=headers)
        await error_of(response, 403, "cross_site_request")
    footprint.unchanged()


async def test_a_page_of_another_site_cannot_cancel_replace_or_delete(client, store):
    await deploy_echo(client)
    job = await json_of(await client.post(f"{API}/functions/echo/jobs", json={"value": 1}))
    for method, path in (("DELETE", f"{API}/jobs/{job['id']}"),
                         ("DELETE", f"{API}/functions/echo"),
                         ("DELETE", f"{API}/artifacts/echo.py"),
                         ("PUT", f"{API}/contexts/default")):
        response = await client.request(method, path, headers=CROSS_SITE, json={
            "name": "default", "maxJobs": 9})
        await error_of(response, 403, "cross_site_request")
    assert store.get_job(job["id"]).status.value == "queued"
    assert (await client.get(f"{API}/functions/echo")).status == 200
    assert (await json_of(await client.get(f"{API}/contexts/default")))["maxJobs"] != 9


@pytest.mark.parametrize("headers", [
    {"Origin": "null"},  # a sandboxed frame or a file:// page
    {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},  # another local server
    {"Origin": "http://127.0.0.1"},  # this host, but another port: another origin
    {"Sec-Fetch-Site": "cross-site"},  # a browser that left Origin out
    {"Sec-Fetch-Site": "same-site"},
], ids=["null", "localhost-3000", "other-port", "fetch-site-only", "same-site-only"])
async def test_every_other_origin_is_another_site(client, footprint, headers):
    response = await client.post(f"{API}/contexts", json={"name": "evil"}, headers=headers)
    error = await error_of(response, 403, "cross_site_request")
    assert error["details"]["setting"] == "allowed_origins"
    footprint.unchanged()


async def test_with_authentication_on_a_replayed_key_is_refused_cross_site(make_client, engine,
                                                                           tmp_path):
    """A key the browser holds (the dashboard's) must not serve another site's page."""
    client = await make_client(auth_enabled=True)
    token = KeyStore(engine).create("ops", "admin").token
    footprint = Footprint(engine, tmp_path)
    headers = {**CROSS_SITE, "Authorization": f"Bearer {token}"}
    response = await client.post(f"{API}/contexts", json={"name": "evil"}, headers=headers)
    await error_of(response, 403, "cross_site_request")
    footprint.unchanged()
    mine = {**own(client), "Authorization": f"Bearer {token}"}
    await json_of(await client.post(f"{API}/contexts", json={"name": "mine"}, headers=mine))


# ---------------------------------------------------------------------------------------------
# Who keeps working


async def test_the_dashboard_same_origin_requests_work(client):
    """What gateway/static/ui's fetch() sends: Origin of the gateway, JSON labelled as such."""
    response = await client.post(f"{API}/artifacts", data=upload_form(), headers=own(client))
    assert response.status == 200, await response.text()
    await json_of(await client.post(f"{API}/functions", headers=own(client), json={
        "name": "echo", "path": "echo.py", "className": "echo"}))
    job = await json_of(await client.post(f"{API}/functions/echo/jobs", json={"value": 1},
                                          headers=own(client)))
    await json_of(await client.delete(f"{API}/jobs/{job['id']}", headers=own(client)))
    # A URL typed in the address bar or a bookmark: Sec-Fetch-Site none.
    assert (await client.get("/ui/", headers={"Sec-Fetch-Site": "none"})).status == 200


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", None])
async def test_a_browser_must_label_json_as_json(client, footprint, content_type):
    """Even from the gateway's own pages: only application/json needs a site's consent."""
    headers = own(client) | ({} if content_type is None else {"Content-Type": content_type})
    response = await client.post(f"{API}/contexts", data=b'{"name": "labelled"}',
                                 headers=headers, skip_auto_headers=["Content-Type"])
    error = await error_of(response, 400, "bad_request")
    assert error["message"].startswith("request body: a browser must send JSON as "
                                       "Content-Type: application/json")
    footprint.unchanged()


async def test_non_browser_clients_are_not_concerned(client):
    """curl -d (form-urlencoded), requests' json= (mist-cli), a bare body: no Origin."""
    await deploy_echo(client)
    for headers in ({"Content-Type": "application/x-www-form-urlencoded"},
                    {"Content-Type": "application/json"}, {}):
        response = await client.post(f"{API}/functions/echo/jobs", data=b'{"value": 2}',
                                     headers=headers, skip_auto_headers=["Content-Type"])
        await json_of(response)


# ---------------------------------------------------------------------------------------------
# Host names (DNS rebinding)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:2004", "127.0.0.1.nip.io",
                                  "192.168.1.10:2004", "[::2]:2004"])
async def test_a_foreign_host_is_misdirected(client, host):
    response = await client.get(f"{API}/jobs", headers={"Host": host})
    error = await error_of(response, 421, "misdirected_request")
    assert error["details"] == {"host": host, "setting": "allowed_hosts"}
    assert f"(Host: {host}); if it is a name of this gateway, add it to allowed_hosts" \
        in error["message"]
    # Probes use whatever address they know; /health says only "ok".
    assert (await client.get("/health", headers={"Host": host})).status == 200


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:2004", "127.0.0.1:1", "[::1]:2004",
                                  "localhost.", "[::1]"])
async def test_loopback_names_are_answered_with_any_port(client, host):
    await json_of(await client.get(f"{API}/jobs", headers={"Host": host}))


async def test_allowed_hosts_adds_names_and_domains(make_client):
    client = await make_client(allowed_hosts=("gw.example.com", ".corp.example"))
    for host in ("gw.example.com:443", "corp.example", "a.b.corp.example", "localhost:2004"):
        await json_of(await client.get(f"{API}/jobs", headers={"Host": host}))
    for host in ("example.com", "evilcorp.example", "gw.example.com.evil.example"):
        await error_of(await client.get(f"{API}/jobs", headers={"Host": host}), 421,
                       "misdirected_request")
    anything = await make_client(allowed_hosts=("*",))
    await json_of(await anything.get(f"{API}/jobs", headers={"Host": "evil.example"}))


async def test_the_listen_address_is_a_name_of_the_gateway(make_client):
    client = await make_client(host="10.1.2.3")
    await json_of(await client.get(f"{API}/jobs", headers={"Host": "10.1.2.3:2004"}))
    wildcard = await make_client(host="0.0.0.0")
    await error_of(await wildcard.get(f"{API}/jobs", headers={"Host": "0.0.0.0:2004"}), 421,
                   "misdirected_request")


# ---------------------------------------------------------------------------------------------
# WebSockets (cross-site WebSocket hijacking)


async def test_a_page_of_another_site_cannot_open_the_event_sockets(client):
    for path in (f"{API}/ws/all", f"{API}/ws/jobs/x"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(path, headers={"Origin": EVIL})
        assert refused.value.status == 403
    mine = await client.ws_connect(f"{API}/ws/all", headers=own(client))
    await mine.close()
    script = await client.ws_connect(f"{API}/ws/all")  # no Origin: not a browser
    await script.close()


# ---------------------------------------------------------------------------------------------
# allowed_origins: another site of yours (CORS)

APP = "http://localhost:3000"


async def test_an_allowed_origin_gets_cors_answers(make_client, engine, tmp_path):
    client = await make_client(allowed_origins=(APP,))
    preflight = await client.options(f"{API}/contexts", headers={
        "Origin": APP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type, authorization"
    headers = {"Origin": APP, "Sec-Fetch-Site": "same-site"}
    created = await client.post(f"{API}/contexts", json={"name": "app"}, headers=headers)
    await json_of(created)
    assert created.headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in created.headers["Vary"]
    refused = await client.post(f"{API}/contexts", json={"name": "a/b"}, headers=headers)
    await error_of(refused, 400, "bad_request")
    assert refused.headers["Access-Control-Allow-Origin"] == APP  # errors are readable too
    others = await client.options(f"{API}/contexts", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in others.headers
    footprint = Footprint(engine, tmp_path)
    await error_of(await client.post(f"{API}/contexts", json={"name": "evil"},
                                     headers=CROSS_SITE), 403, "cross_site_request")
    footprint.unchanged()


# ---------------------------------------------------------------------------------------------
# A real `sparkgate serve`, a real Chromium, curl and mist-cli


class _EvilPage(BaseHTTPRequestHandler):
    """What any page the developer opens could do: a form post, and fetch() calls that need
    no preflight."""

    target = ""

    def do_GET(self) -> None:
        api = f"{self.target}/v2/api"
        body = f"""<!doctype html><html><body>
<form id="f" method="post" enctype="text/plain" action="{api}/contexts" target="sink">
<input name='{{"name": "viaform", "x": "' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
window.results = {{}};
async function attempt(name, init, path) {{
  try {{ const r = await fetch("{api}" + path, {{mode: "no-cors", ...init}});
         window.results[name] = r.type; }}
  catch (e) {{ window.results[name] = "error: " + e.message; }}
}}
(async () => {{
  const code = new FormData();
  code.append("file", new Blob(["def evil(): return 1\\n"]), "evil.py");
  await attempt("upload", {{method: "POST", body: code}}, "/artifacts");
  await attempt("context", {{method: "POST", body: '{{"name": "viafetch"}}'}}, "/contexts");
  document.getElementById("f").submit();
  window.done = true;
}})();
</script></body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def evil_site(target: str) -> Iterator[str]:
    handler = type("Page", (_EvilPage,), {"target": target})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_real_browser_on_another_page_cannot_drive_a_default_serve(tmp_path):
    with running_server(tmp_path, {"SPARKGATE_START_WORKERS": "false"},
                        wait_for_worker=False) as server:
        contexts_before = {c["name"] for c in server.get("/contexts").json()}
        with evil_site(server.url) as page_url, chromium() as browser:
            page = browser.new_page()
            page.goto(page_url)
            wait_until(lambda: page.evaluate("window.done === true"), 30, "the page's attempts")
            page.wait_for_timeout(1000)  # the form post's navigation
        assert {c["name"] for c in server.get("/contexts").json()} == contexts_before
        assert "evil.py" not in server.get("/artifacts").json()
        log = server.log.read_text()
        assert log.count('"POST /v2/api/contexts HTTP/1.1" 403') == 2, log[-3000:]
        assert '"POST /v2/api/artifacts HTTP/1.1" 403' in log

        # DNS rebinding: the same page under a name that resolves to 127.0.0.1.
        rebound = requests.get(server.api("/jobs"), timeout=10, headers={
            "Host": f"evil.example:{server.port}", "Accept": "application/json"})
        assert rebound.status_code == 421
        assert rebound.json()["error"]["details"]["setting"] == "allowed_hosts"

        # curl -d, as the README and Mist's documentation write it (form-urlencoded).
        curl = subprocess.run(["curl", "-s", "-X", "POST", server.api("/contexts"),
                               "-d", '{"name": "by-curl"}'],
                              capture_output=True, text=True, timeout=30, check=True)
        assert json.loads(curl.stdout)["name"] == "by-curl", curl.stdout
        # mist-cli's calls: requests with json= and files=.
        assert server.post("/contexts", json={"name": "by-requests"}).status_code == 200
        with (Path(__file__).parent / "functions" / "echo.py").open("rb") as fh:
            assert server.post("/artifacts", files={"file": ("echo.py", fh)}).status_code == 200
