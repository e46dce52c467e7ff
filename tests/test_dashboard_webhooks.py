"""The dashboard's webhooks (``#/webhooks``, ``#/webhooks/<id>`` and a job's deliveries on
``#/jobs/<id>``) in a real headless Chromium against a real ``sparkgate serve`` (the python
engine: no JVM) and real receivers: a subscription made in the form (a bad URL refused at its
field first), its secret shown once, the one that signs its deliveries; a delivery retried
(500, then 200) with each attempt on the webhook's page and the job's; delete; a key that is
not admin's sees a job without its deliveries, and no complaint.

Each page is saved as a screenshot under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.browser import UI_TIMEOUT_MS, checked_page, chromium, collect_problems
from tests.receiver import Received, receiving
from tests.server_process import Server, create_key, running_server
from tests.test_dashboard import head_status, open_ui, screenshot

pytestmark = pytest.mark.slow

ENV = {"SPARKGATE_CONTEXT_ENGINE": "python", "SPARKGATE_WEBHOOK_BACKOFF_S": "0.5"}
# Workers re-read the subscriptions at most once a second: a new one applies after that.
SUBSCRIPTIONS_SEEN_S = 1.2
NOWHERE = "http://127.0.0.1:9/hook"  # the discard port: nothing answers


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("dashboard-webhooks"), ENV) as server:
        server.deploy("plain.py", "add", "add")
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    try:
        with checked_page(browser, server.url) as page:
            yield page
    finally:
        for hook in server.get("/webhooks").json():  # no test's receiver outlives it
            server.delete(f"/webhooks/{hook['id']}")


def subscribe(server: Server, url: str, events: list[str]) -> dict:
    response = server.post("/webhooks", json={"url": url, "events": events})
    assert response.status_code == 200, response.text
    return response.json()


def run_add(server: Server, x: int) -> None:
    response = server.post("/functions/add/jobs", params={"force": "true"}, json={"x": x})
    assert response.status_code == 200 and response.json()["payload"] == x + 1, response.text


def signed_with(secret: str, received: Received) -> bool:
    headers = {name.lower(): value for name, value in received.headers.items()}
    stamp = headers["x-sparkgate-timestamp"].encode()
    mac = hmac.new(secret.encode(), stamp + b"." + received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v1={mac}", headers["x-sparkgate-signature"])


def webhook_row(page: Page, webhook_id: str):
    return page.locator(f'tr[data-webhook-id="{webhook_id}"]')


def test_a_webhook_made_in_the_form_shows_its_secret_once_and_is_listed(page: Page,
                                                                        server: Server):
    open_ui(page, "#/jobs")
    page.locator("#nav").get_by_role("link", name="Webhooks").click()
    expect(page.locator(".page-webhooks .empty")).to_contain_text("No webhooks yet.")
    page.get_by_role("link", name="New webhook").click()
    form = page.locator("form.webhook-form")
    form.locator("#webhook-event-failed").uncheck()
    form.locator("#webhook-event-cancelled").uncheck()
    expect(form.locator("#webhook-event-finished")).to_be_checked()
    form.locator("#webhook-function").select_option("add")

    # A URL the gateway refuses: its message at the URL field, and nothing saved.
    form.locator("#webhook-url").fill("ftp://example.com/hook")
    form.get_by_role("button", name="Create").click()
    url_error = form.locator('[data-error-for="url"]')
    expect(url_error).to_contain_text("expected an absolute http:// or https:// URL")
    expect(url_error).to_contain_text("'ftp://example.com/hook'")
    expect(form.locator("#webhook-url")).to_have_attribute("aria-invalid", "true")
    expect(form.locator('[data-error-for="events"]')).to_have_text("")
    assert server.get("/webhooks").json() == []
    screenshot(page, "webhook-form-error")

    with receiving() as receiver:
        form.locator("#webhook-url").fill(receiver.url)
        form.get_by_role("button", name="Create").click()
        expect(page).to_have_url(re.compile(r"#/webhooks\?highlight=[0-9a-f-]{36}$"))
        (stored,) = server.get("/webhooks").json()
        assert stored["url"] == receiver.url and stored["events"] == ["finished"]
        assert stored["function"] == "add" and stored["schedule"] is None
        assert page.url.endswith(stored["id"])

        # The secret the gateway made, shown this once, above the list.
        expect(page.locator("#new-secret")).to_contain_text("Copy it now: it is not shown again.")
        secret = page.locator("#webhook-secret").text_content()
        assert secret and len(secret) >= 16
        row = webhook_row(page, stored["id"])
        expect(row).to_have_class(re.compile(r"\bhighlight\b"))
        expect(row.get_by_role("link", name=receiver.url)).to_have_attribute(
            "href", f"#/webhooks/{stored['id']}")
        expect(row.locator('[data-cell="events"]')).to_have_text("finished")
        expect(row.locator('[data-cell="jobs"]')).to_have_text("function add")
        expect(row.locator('[data-cell="health"]')).to_have_text("no deliveries yet")
        screenshot(page, "webhooks-new-secret")
        page.reload()
        expect(row).to_be_visible()
        expect(page.locator("#new-secret")).to_have_count(0)

        # It is the secret that signs the deliveries; the list shows how they went.
        time.sleep(SUBSCRIPTIONS_SEEN_S)
        run_add(server, 1)
        (received,) = receiver.wait_for(1)
        assert signed_with(secret, received)
        expect(row.locator('[data-cell="health"]')).to_have_text("1 delivered")
        expect(row.locator('[data-cell="last-attempt"] .http-code')).to_have_text("200")
        screenshot(page, "webhooks")


def test_a_retried_delivery_shows_each_attempt_on_the_webhook_and_job_pages(page: Page,
                                                                           server: Server):
    with receiving([500]) as receiver:
        hook = subscribe(server, receiver.url, ["finished"])
        open_ui(page, f"#/webhooks/{hook['id']}")
        expect(page.locator('[data-fact="URL"]')).to_have_text(receiver.url)
        expect(page.locator("#deliveries")).to_contain_text("No deliveries yet")
        time.sleep(SUBSCRIPTIONS_SEEN_S)
        run_add(server, 1)
        first, second = receiver.wait_for(2)
        job_id = first.json["job"]["jobId"]
        assert second.json["job"]["jobId"] == job_id

        # The page re-reads on its own: delivered at the second attempt, 500 then 200.
        row = page.locator(f'#deliveries tr[data-job-id="{job_id}"]')
        expect(row.locator('[data-cell="status"]')).to_have_text("delivered")
        attempts = row.locator(".attempts li")
        expect(attempts).to_have_count(2)
        expect(attempts.nth(0).locator(".http-code")).to_have_text("500")
        expect(attempts.nth(1).locator(".http-code")).to_have_text("200")
    (delivery,) = server.get(f"/webhooks/{hook['id']}/deliveries").json()
    for shown, attempt in zip(attempts.all(), delivery["attempts"], strict=True):
        expect(shown.locator(".latency")).to_have_text(f"{attempt['latencyMs']} ms")
    expect(row.locator('[data-cell="next-attempt"]')).to_have_text("—")
    expect(row.locator('[data-cell="delivered"]')).not_to_have_text("—")
    expect(row.locator('[data-event="finished"]')).to_be_visible()
    expect(page.locator('[data-fact="Latest deliveries"]')).to_have_text("1 delivered")
    expect(page.locator('[data-fact="Last attempt"] .http-code')).to_have_text("200")
    screenshot(page, "webhook")

    # The job's page lists the same delivery, to the webhook.
    row.get_by_role("link", name=re.compile(job_id[-8:])).click()
    expect(page).to_have_url(re.compile(f"#/jobs/{job_id}$"))
    expect(head_status(page)).to_have_text("finished")
    on_job = page.locator(f'#deliveries tr[data-delivery-id="{delivery["id"]}"]')
    expect(on_job.locator('[data-cell="status"]')).to_have_text("delivered")
    expect(on_job.locator('[data-cell="to"]')).to_contain_text(receiver.url)
    expect(on_job.locator('[data-cell="to"] a')).to_have_attribute(
        "href", f"#/webhooks/{hook['id']}")
    expect(on_job.locator(".attempts .http-code")).to_have_text(["500", "200"])
    screenshot(page, "job-deliveries")


def test_a_job_without_deliveries_shows_none(page: Page, server: Server):
    run_add(server, 2)
    job_id = server.get("/jobs").json()[0]["jobId"]
    with page.expect_response(lambda r: r.url.split("?")[0].endswith(
            f"/jobs/{job_id}/deliveries")) as read:
        open_ui(page, f"#/jobs/{job_id}")
    assert read.value.status == 200 and read.value.json() == []
    expect(page.locator("#result")).to_have_text("3")
    expect(page.locator("#deliveries")).to_have_count(0)
    # It ran on the python engine: no Spark progress, which is not "never ran".
    expect(page.locator(".progress-detail")).to_have_text("The job ran no Spark code.")


def test_a_webhook_is_deleted_from_the_list_and_from_its_page(page: Page, server: Server):
    listed = subscribe(server, NOWHERE, ["failed"])
    own_page = subscribe(server, NOWHERE, ["started"])
    open_ui(page, "#/webhooks")
    row = webhook_row(page, listed["id"])
    delete = row.locator('button[data-action="delete"]')
    delete.click()
    expect(delete).to_have_text("Confirm delete")
    assert server.get(f"/webhooks/{listed['id']}").status_code == 200  # one click only asks
    delete.click()
    expect(row).to_have_count(0)
    assert server.get(f"/webhooks/{listed['id']}").status_code == 404

    webhook_row(page, own_page["id"]).get_by_role("link", name=NOWHERE).click()
    expect(page).to_have_url(re.compile(f"#/webhooks/{own_page['id']}$"))
    delete = page.locator('.page-head button[data-action="delete"]')
    delete.click()
    delete.click()
    expect(page).to_have_url(re.compile(r"#/webhooks$"))
    expect(page.locator(".page-webhooks .empty")).to_contain_text("No webhooks yet.")
    assert server.get(f"/webhooks/{own_page['id']}").status_code == 404


# A gateway with authentication on and no workers (the job waits in the queue), with the example
# functions: a key that may read jobs but not deliveries.


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory) -> Iterator[tuple[Server, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("dashboard-webhooks-auth")
    cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")},
               "SPARKGATE_DATA_DIR": str(workdir / "data")}
    tokens = {}
    for name, role in (("ops", "admin"), ("viewer", "read")):
        tokens[name] = create_key(cli_env, name, role, workdir)
    env = {"SPARKGATE_AUTH_ENABLED": "true", "SPARKGATE_START_WORKERS": "false"}
    with running_server(workdir, env, wait_for_worker=False) as server:
        yield server, tokens


def test_a_key_that_is_not_admin_s_sees_a_job_without_deliveries(browser: Browser,
                                                                  auth_server):
    server, tokens = auth_server
    made = requests.post(server.api("/functions/pi/jobs"), json={"samples": 10}, timeout=30,
                         headers={"Authorization": f"Bearer {tokens['ops']}"})
    assert made.status_code == 200, made.text
    job_id = made.json()["id"]
    context = browser.new_context(base_url=server.url, viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems = collect_problems(page)
    page.goto("/ui/#/jobs")
    page.locator("#key-input").fill(tokens["viewer"])
    with page.expect_response(lambda r: r.url.endswith(f"/jobs/{job_id}/deliveries")) as read:
        page.get_by_role("button", name="Save").click()
        page.goto(f"/ui/#/jobs/{job_id}")
    assert read.value.status == 403
    expect(head_status(page)).to_have_text("queued")
    expect(page.locator("#deliveries")).to_have_count(0)
    expect(page.locator(".notice-area")).to_be_empty()
    expect(page.locator("#banner")).to_be_hidden()
    context.close()
    assert not problems, problems
