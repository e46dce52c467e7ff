"""The API reference page (``/docs``) in a real headless Chromium (Debian's, driven by
Playwright) against a real ``sparkgate serve``, with every request that is not for the gateway
refused: the page must work offline. It lists every operation of the served OpenAPI document,
grouped by tag, with parameters, bodies, responses and schemas, and its "Try it" forms call
the API.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser import SCREENSHOTS, chromium, collect_problems
from tests.server_process import Server, running_server

pytestmark = pytest.mark.slow

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """Authentication on: the page and the document are public, the API is not."""
    workdir = tmp_path_factory.mktemp("docs-page")
    with running_server(workdir, {"SPARKGATE_START_WORKERS": "false",
                                  "SPARKGATE_AUTH_ENABLED": "true"},
                        wait_for_worker=False) as server:
        yield server


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    return server.create_key("docs", "admin")


def save_key(page: Page, token: str) -> None:
    page.locator("#key-button").click()
    page.locator("#key-input").fill(token)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#key-dialog")).not_to_be_visible()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1360, "height": 900})
    elsewhere: list[str] = []

    def offline(route: Route) -> None:
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = collect_problems(page)
    yield page
    context.close()
    assert not elsewhere, f"the page reached beyond the gateway: {elsewhere}"
    assert not problems, problems


def open_docs(page: Page, hash_part: str = "") -> None:
    page.goto(f"/docs{hash_part}")
    expect(page.locator("body[data-ready='true']")).to_be_attached()


def served_document(server: Server) -> dict:
    response = requests.get(server.api("/openapi.json"), timeout=10)
    assert response.status_code == 200
    return response.json()


def test_the_page_lists_every_operation_of_the_served_document(page: Page, server: Server):
    document = served_document(server)
    open_docs(page)
    shown = page.locator("section.operation")
    operations = {(method.upper(), path, op["operationId"])
                  for path, item in document["paths"].items()
                  for method, op in item.items() if not (method == "head" and "get" in item)}
    expect(shown).to_have_count(len(operations))
    listed = {tuple(card) for card in page.eval_on_selector_all(
        "section.operation",
        "cards => cards.map(c => [c.dataset.method, c.dataset.path, c.dataset.operationId])")}
    assert listed == operations
    # HEAD twins are named on their GET, not lost.
    heads = {op["operationId"] for item in document["paths"].values()
             for method, op in item.items() if method == "head"}
    assert set(page.eval_on_selector_all("[data-head]", "els => els.map(e => e.dataset.head)")
               ) == heads
    # Grouped by tag, in the document's order of tags.
    tags = [tag["name"] for tag in document["tags"]]
    assert page.eval_on_selector_all("section.tag-section[data-tag]",
                                     "els => els.map(e => e.dataset.tag)") == tags
    for item in document["paths"].values():
        for method, op in item.items():
            if method == "head":
                continue
            card = page.locator(f"section.operation[data-operation-id='{op['operationId']}']")
            role = op.get("x-sparkgate-role")
            expect(card.locator("p.security")).to_contain_text(
                f"role {role}" if role else "Public")
            assert card.locator("xpath=ancestor::section[@data-tag]").get_attribute(
                "data-tag") == op["tags"][0]
            statuses = card.locator("table.responses tr[data-status]")
            expect(statuses).to_have_count(len(op["responses"]))
            for parameter in op.get("parameters", []):
                name = parameter.get("name") or parameter["$ref"].rsplit("/", 1)[1]
                name = document["components"]["parameters"].get(name, {}).get("name", name)
                expect(card.locator(f"table.params tr[data-param='{name}']")).to_have_count(1)
            if "requestBody" in op:
                expect(card.locator(".body")).not_to_have_count(0)
    schemas = set(page.eval_on_selector_all("[data-schema]",
                                            "els => els.map(e => e.dataset.schema)"))
    assert schemas == set(document["components"]["schemas"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "docs.png"), full_page=False)


def test_the_submit_operation_shows_its_parameters_body_and_responses(page: Page):
    open_docs(page, "#op-runFunction")
    card = page.locator("section.operation[data-operation-id='runFunction']")
    expect(card).to_be_in_viewport()
    for name in ("name", "force", "wait", "context", "externalId", "startTimeout",
                 "performTimeout"):
        expect(card.locator(f"tr[data-param='{name}']")).to_have_count(1)
    for status in ("200", "202", "400", "404", "413", "429", "503"):
        expect(card.locator(f"tr[data-status='{status}']")).to_have_count(1)
    expect(card.locator("tr[data-status='202']")).to_contain_text("Location")
    expect(card.locator(".body")).to_contain_text("application/json")
    upload = page.locator("section.operation[data-operation-id='uploadArtifact'] .body")
    expect(upload).to_contain_text("multipart/form-data")
    page.screenshot(path=str(SCREENSHOTS / "docs-run-function.png"), full_page=False)


def test_try_it_calls_the_api_and_shows_the_answer(page: Page, token: str):
    open_docs(page)
    status = page.locator("section.operation[data-operation-id='status']")
    expect(status.locator("p.security")).to_contain_text("role read")
    status.locator("details.try > summary").click()
    status.get_by_role("button", name="Send").click()
    expect(status.locator(".try-result [data-status='401']")).to_be_visible()
    expect(status.locator(".try-result pre")).to_contain_text("unauthenticated")
    save_key(page, token)
    status.get_by_role("button", name="Send").click()
    expect(status.locator(".try-result [data-status='200']")).to_be_visible()
    expect(status.locator(".try-result pre")).to_contain_text('"mistVersion"')

    one = page.locator("section.operation[data-operation-id='getFunction']")
    one.locator("details.try > summary").click()
    one.locator("input[name='name']").fill("no-such-function")
    one.get_by_role("button", name="Send").click()
    expect(one.locator(".try-result [data-status='404']")).to_be_visible()
    expect(one.locator(".try-result pre")).to_contain_text("no-such-function")

    context = page.locator("section.operation[data-operation-id='saveContext']")
    context.locator("details.try > summary").click()
    context.locator("textarea").fill('{"name": "docs-try", "maxJobs": 0}')
    context.get_by_role("button", name="Send").click()
    expect(context.locator(".try-result [data-status='400']")).to_be_visible()
    expect(context.locator(".try-result pre")).to_contain_text("invalid_arguments")


def test_the_filter_narrows_the_operations(page: Page):
    open_docs(page)
    page.locator("#filter").fill("/v2/api/artifacts")
    visible = page.locator("section.operation:visible")
    # list, download, sha, info, upload, delete (HEADs folded)
    expect(visible).to_have_count(6)
    assert all("/v2/api/artifacts" in (p or "") for p in page.eval_on_selector_all(
        "section.operation:not([hidden])", "els => els.map(e => e.dataset.path)"))
    page.locator("#filter").fill("")
    expect(page.locator("section.operation[hidden]")).to_have_count(0)
