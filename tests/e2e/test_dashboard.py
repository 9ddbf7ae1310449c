"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
translation server and callback receiver on free ports.

One server (one worker slot, so a queue forms) and one browser serve the module; each test
makes its own clients. Waiting is Playwright's auto-waiting ``expect``; job durations are
pinned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.servers import create_job, get
from tests.receiver_support import WRONG_SECRET, event_body, signed_headers
from tests.support import ADMIN, Service, launch_chromium, start_receiver, start_server

pytestmark = pytest.mark.timeout(120)
LIVE = 5_000  # ms: a change must show well within this (the page asks every 500 ms)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture(scope="module")
def services(workdir: Path) -> Iterator[tuple[Service, Service]]:
    tmp = workdir
    with start_server(tmp, "--workers", "1", "--seed", "17", "--error-rate", "0") as server:
        with start_receiver(tmp) as receiver:
            yield server, receiver


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], errors  # no script error on any page


def tenant(server: Service, name: str) -> dict[str, Any]:
    resp = requests.post(
        f"{server.url}/v1/clients",
        json={"name": name},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=5,
    )
    assert resp.status_code == 201
    body: dict[str, Any] = resp.json()
    body["auth"] = {"Authorization": f"Bearer {body['api_key']}"}
    return body


def sign_in(page: Page, server: Service, token: str) -> None:
    page.goto(f"{server.url}/")
    page.get_by_label("API key or admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def row(page: Page, job_id: str) -> Any:
    return page.locator(f'tr[data-job-row="{job_id}"]')


def test_a_client_key_shows_that_clients_jobs_only(
    page: Page, services: tuple[Service, Service]
) -> None:
    server, _ = services
    acme, globex = tenant(server, "acme"), tenant(server, "globex")
    mine = create_job(server.url, acme["auth"], simulate={"duration_s": 0.1})["id"]
    theirs = create_job(server.url, globex["auth"], simulate={"duration_s": 0.1})["id"]
    sign_in(page, server, acme["api_key"])
    expect(row(page, mine)).to_be_visible(timeout=LIVE)
    expect(page.locator("#who")).to_contain_text("acme")
    expect(page.locator("#clients-section")).to_be_hidden()
    expect(page.locator("#filter-client-label")).to_be_hidden()
    assert theirs not in page.content() and "globex" not in page.content()
    # the key stays in this tab's session storage, and a reload keeps the session
    assert page.evaluate("sessionStorage.getItem('vt.dashboard.token')") == acme["api_key"]
    page.reload()
    expect(row(page, mine)).to_be_visible(timeout=LIVE)


def test_a_job_goes_from_queued_to_processing_to_completed_without_a_reload(
    page: Page, services: tuple[Service, Service]
) -> None:
    server, _ = services
    acme = tenant(server, "acme")
    sign_in(page, server, acme["api_key"])
    expect(page.locator("#stat-queue")).to_have_text("0", timeout=LIVE)
    page.evaluate("window.notReloaded = true")
    blocker = create_job(server.url, acme["auth"], simulate={"duration_s": 3})["id"]
    job = create_job(server.url, acme["auth"], simulate={"duration_s": 3})["id"]
    target = row(page, job)
    expect(target.locator(".badge")).to_have_text("Queued", timeout=LIVE)
    expect(target).to_contain_text("#1 in queue")
    expect(page.locator("#stat-queue")).to_have_text("1")
    expect(page.locator("#stat-slots")).to_have_text("1 / 1")
    expect(row(page, blocker).locator(".badge")).to_have_text("Processing")
    expect(target.locator(".badge")).to_have_text("Processing", timeout=LIVE + 3_000)
    expect(page.locator("#list-completed").locator(f'tr[data-job-row="{blocker}"]')).to_be_visible()
    done = page.locator("#list-completed").locator(f'tr[data-job-row="{job}"]')
    expect(done.locator(".badge")).to_have_text("Completed", timeout=LIVE + 3_000)
    expect(done).to_contain_text(f"https://cdn.vt.local/{job}/es.mp4")
    expect(done.locator(".pct")).to_have_text("100 %")
    assert page.evaluate("window.notReloaded") is True


def test_cancel_a_job_from_the_page(page: Page, services: tuple[Service, Service]) -> None:
    server, _ = services
    acme = tenant(server, "acme")
    job = create_job(server.url, acme["auth"], simulate={"duration_s": 60})["id"]
    sign_in(page, server, acme["api_key"])
    row(page, job).get_by_role("button", name=f"Cancel {job}").click()
    cancelled = page.locator("#list-failed").locator(f'tr[data-job-row="{job}"]')
    expect(cancelled.locator(".badge")).to_have_text("Cancelled", timeout=LIVE)
    expect(page.locator("#notice")).to_contain_text(f"Job {job} cancelled")
    assert get(f"{server.url}/v1/jobs/{job}", acme["auth"]).json()["status"] == "cancelled"


def test_redeliver_a_webhook_and_see_the_new_attempt(
    page: Page, services: tuple[Service, Service]
) -> None:
    server, receiver = services
    acme = tenant(server, "acme")
    callback = f"{receiver.url}/webhooks"
    job = create_job(server.url, acme["auth"], callback_url=callback, simulate={"duration_s": 0.1})
    sign_in(page, server, acme["api_key"])
    done = page.locator("#list-completed").locator(f'tr[data-job-row="{job["id"]}"]')
    expect(done.locator(".hook")).to_have_text("delivered (1 attempt)", timeout=LIVE)
    done.get_by_role("button", name="Webhooks").click()
    panel = page.locator(f'[data-detail="{job["id"]}"]')
    attempts = panel.locator("table.attempts tbody tr")
    expect(attempts).to_have_count(1, timeout=LIVE)
    expect(attempts.first).to_contain_text("HTTP 204")
    expect(attempts.first).to_contain_text("delivered")
    expect(attempts.first).to_contain_text(re.compile(r"\d+\.\d ms"))
    panel.get_by_role("button", name="Redeliver webhook").click()
    expect(attempts).to_have_count(2, timeout=LIVE)
    expect(attempts.nth(1)).to_contain_text("HTTP 204")
    expect(page.locator("#notice")).to_contain_text("queued again")
    # the header's webhook figure counts this client's deliveries
    expect(page.locator("#stat-hooks")).to_have_text("100.0 %")


def test_the_admin_view_lists_every_client_and_filters_by_client(
    page: Page, services: tuple[Service, Service]
) -> None:
    server, _ = services
    acme, globex = tenant(server, "acme"), tenant(server, "globex")
    a = create_job(server.url, acme["auth"], simulate={"duration_s": 0.1})["id"]
    b = create_job(server.url, globex["auth"], simulate={"duration_s": 0.1})["id"]
    sign_in(page, server, ADMIN)
    expect(page.locator("#who")).to_contain_text("admin")
    clients = page.locator("#clients li")
    expect(clients.filter(has_text=acme["id"])).to_contain_text("acme", timeout=LIVE)
    expect(clients.filter(has_text=globex["id"])).to_contain_text("globex")
    expect(row(page, a)).to_be_visible()
    expect(row(page, b)).to_contain_text("globex")
    page.get_by_label("Client", exact=True).select_option(globex["id"])
    expect(row(page, a)).to_have_count(0, timeout=LIVE)
    expect(row(page, b)).to_be_visible()
    page.get_by_label("Status", exact=True).select_option("cancelled")
    expect(row(page, b)).to_have_count(0, timeout=LIVE)


def test_a_wrong_key_shows_an_error_not_a_blank_page(
    page: Page, services: tuple[Service, Service]
) -> None:
    server, _ = services
    sign_in(page, server, "vt_not_a_key")
    error = page.get_by_role("alert").filter(has_text="not accepted")
    expect(error).to_be_visible(timeout=LIVE)
    expect(error).to_contain_text("invalid_api_key")
    expect(page.locator("#board")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('vt.dashboard.token')") is None
    # a stored key that stopped being valid signs out with the reason
    page.evaluate("sessionStorage.setItem('vt.dashboard.token', 'vt_revoked')")
    page.reload()
    expect(page.locator("#signin-error")).to_contain_text("invalid_api_key", timeout=LIVE)


def test_keyboard_alone_signs_in_and_opens_a_jobs_webhooks(
    page: Page, services: tuple[Service, Service]
) -> None:
    server, _ = services
    acme = tenant(server, "acme")
    job = create_job(server.url, acme["auth"], simulate={"duration_s": 60})["id"]
    page.goto(f"{server.url}/")
    expect(page.locator("#token")).to_be_focused()
    page.keyboard.type(acme["api_key"])
    page.keyboard.press("Enter")
    toggle = row(page, job).get_by_role("button", name="Webhooks")
    expect(toggle).to_be_visible(timeout=LIVE)
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true", timeout=LIVE)
    expect(toggle).to_be_focused()  # focus survives the re-render
    expect(page.locator(f'[data-detail="{job}"]')).to_contain_text("no callback URL")
    row(page, job).get_by_role("button", name=f"Cancel {job}").click()


def test_a_hidden_tab_asks_every_30_s_and_a_visible_one_at_once(
    page: Page, services: tuple[Service, Service]
) -> None:
    server, _ = services
    acme = tenant(server, "acme")
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.clock.install()
    sign_in(page, server, acme["api_key"])
    expect(page.locator("#stat-queue")).to_have_text("0", timeout=LIVE)

    def board_requests_after_a_marker() -> int:
        # requests are reported in order: once the marker is seen, every earlier one is too
        with page.expect_request(lambda r: r.url.endswith("/healthz")):
            page.evaluate("fetch('/healthz')")
        return sum("/v1/dashboard" in url for url in seen)

    page.evaluate(  # what the browser does when the tab goes to the background
        "window.shown = 'hidden';"
        "Object.defineProperty(document, 'visibilityState', {get: () => window.shown});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    before = board_requests_after_a_marker()
    page.clock.run_for(29_000)
    assert board_requests_after_a_marker() == before  # nothing for 29 s
    with page.expect_request(lambda r: "/v1/dashboard" in r.url):
        page.clock.run_for(2_000)  # then one request at 30 s
    page.evaluate("window.shown = 'visible'; document.dispatchEvent(new Event('visibilitychange'))")
    with page.expect_request(lambda r: "/v1/dashboard" in r.url):
        page.clock.run_for(10)  # visible again: asked at once


def test_the_receiver_page_shows_events_and_rejections_with_their_reason(
    page: Page, services: tuple[Service, Service], workdir: Path
) -> None:
    server, receiver = services
    acme = tenant(server, "acme")
    callback = f"{receiver.url}/webhooks"
    job = create_job(server.url, acme["auth"], callback_url=callback, simulate={"duration_s": 0.1})
    forged = event_body("job_forged")
    resp = requests.post(
        callback, data=forged, headers=signed_headers(forged, secret=WRONG_SECRET), timeout=5
    )
    assert resp.status_code == 401
    page.goto(f"{receiver.url}/")
    page.get_by_label("Feed token").fill("not-the-feed-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("invalid_feed_token", timeout=LIVE)
    token = json.loads((workdir / "local.json").read_text())["receiver_token"]
    page.get_by_label("Feed token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    verified = page.locator("tr.verified").filter(has_text=job["id"])
    expect(verified).to_contain_text("job.completed", timeout=LIVE)
    rejected = page.locator("tr.rejected").filter(has_text="invalid_signature")
    expect(rejected).to_contain_text("no v1 signature matches an accepted secret")
    expect(rejected).to_contain_text("HTTP 401")
    # one line per receipt: no cell wraps, at a desktop's width and at a phone's
    for width in (1366, 390):
        page.set_viewport_size({"width": width, "height": 800})
        heights = page.eval_on_selector_all(
            "#rows tr.verified td",
            "cells => cells.map(c => c.getBoundingClientRect().height"
            " / parseFloat(getComputedStyle(c).lineHeight))",
        )
        assert heights and max(heights) < 2.5, heights  # padding included, under two lines
    page.get_by_label("Job id").fill(job["id"])
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr.rejected")).to_have_count(0, timeout=LIVE)
    expect(page.locator("#rows tr")).to_have_count(1)
    # live: an event arriving later shows without a reload
    page.get_by_role("button", name="Clear").click()
    later = create_job(
        server.url, acme["auth"], callback_url=callback, simulate={"duration_s": 0.1}
    )
    expect(page.locator("tr.verified").filter(has_text=later["id"])).to_be_visible(timeout=LIVE)


def test_at_a_phones_width_jobs_are_cards_with_nothing_off_screen(
    browser: Browser, services: tuple[Service, Service]
) -> None:
    server, _ = services
    acme = tenant(server, "acme")
    job = create_job(server.url, acme["auth"], simulate={"duration_s": 60})["id"]
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, server, acme["api_key"])
        card = row(page, job)
        expect(card).to_be_visible(timeout=LIVE)
        expect(card.locator("td[data-label='Status']")).to_contain_text(
            re.compile("Processing|Queued")
        )
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than the screen"
        cancel = card.get_by_role("button", name=f"Cancel {job}")
        box = cancel.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        cancel.click()
        expect(page.locator("#list-failed").locator(f'tr[data-job-row="{job}"]')).to_be_visible(
            timeout=LIVE
        )
    finally:
        context.close()
