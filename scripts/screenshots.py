"""Screenshots of the dashboard and the receiver's page, and what an open dashboard costs.

``make screenshots`` (``python -m scripts.screenshots``) starts both services on free ports,
gives them a few clients and jobs with pinned durations, and drives Debian's chromium with
Playwright (as the browser tests do) to write PNGs of each page, at a desktop's and a phone's
width, to ``docs/screenshots/``. Then it measures, on the same services:

- how long a change takes to appear on the page: a job is created through the API (the time
  is taken just before the request), and the page's own MutationObserver notes when its row
  appears in the DOM (``performance.timeOrigin + performance.now()``, the same wall clock);
  changes come at seeded random gaps, so that they fall anywhere in the page's polling cycle;
- what an open dashboard costs the server: its requests per second while the tab is visible
  and while it is hidden (with nothing changing, so nearly every answer is a 304), and the
  server's own time per answer, from its ``/metrics``.

It writes the figures, the machine and the command into ``docs/dashboard.md``.
"""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Page, expect, sync_playwright

from scripts.common import ROOT, describe_machine, machine, parser, percentile
from tests.receiver_support import WRONG_SECRET, event_body, signed_headers
from tests.support import ADMIN, Service, launch_chromium, start_receiver, start_server

SHOTS = ROOT / "docs" / "screenshots"
DOC = ROOT / "docs" / "dashboard.md"
DESKTOP = {"width": 1440, "height": 960}
PHONE = {"width": 390, "height": 844}
SEED = 20261203
HIDE = (
    "window.shown = 'hidden';"
    "Object.defineProperty(document, 'visibilityState', {configurable: true,"
    " get: () => window.shown});"
    "document.dispatchEvent(new Event('visibilitychange'))"
)
WATCH = """() => {
  window.seen = {};
  new MutationObserver(() => {
    for (const row of document.querySelectorAll('tr[data-job-row]')) {
      const id = row.dataset.jobRow;
      if (!(id in window.seen)) window.seen[id] = performance.timeOrigin + performance.now();
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""


def tenant(server: Service, name: str) -> dict[str, Any]:
    """A new client of the server, with its auth header."""
    resp = requests.post(
        f"{server.url}/v1/clients",
        json={"name": name},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=5,
    )
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    body["auth"] = {"Authorization": f"Bearer {body['api_key']}"}
    return body


def create(server: Service, who: dict[str, Any], **body: Any) -> str:
    """POST /v1/jobs; the new job's id."""
    resp = requests.post(f"{server.url}/v1/jobs", json=body, headers=who["auth"], timeout=5)
    resp.raise_for_status()
    return str(resp.json()["id"])


def populate(server: Service, receiver: Service) -> dict[str, Any]:
    """Two clients with jobs in every state; one forged webhook at the receiver."""
    acme, globex = tenant(server, "Acme Studios"), tenant(server, "Globex Media")
    hook = f"{receiver.url}/webhooks"
    done = [
        create(server, acme, callback_url=hook, target_language=lang, priority=p,
               simulate={"duration_s": 0.2, "outcome": "completed"})
        for lang, p in (("es", 0), ("pt-BR", 2), ("de", 0))
    ]  # fmt: skip
    failed = create(server, acme, callback_url=hook, target_language="fr",
                    simulate={"duration_s": 0.2, "outcome": "error"})  # fmt: skip
    create(server, globex, callback_url=hook, target_language="ja",
           simulate={"duration_s": 0.2, "outcome": "completed"})  # fmt: skip
    cancelled = create(server, acme, target_language="it", simulate={"duration_s": 90})
    requests.post(f"{server.url}/v1/jobs/{cancelled}/cancel", headers=acme["auth"], timeout=5)
    forged = event_body("job_forged")
    requests.post(hook, data=forged, headers=signed_headers(forged, secret=WRONG_SECRET), timeout=5)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the short jobs end and their webhooks arrive
        ids = ",".join([*done, failed])
        jobs = requests.get(f"{server.url}/v1/jobs?ids={ids}", headers=acme["auth"], timeout=5)
        if all(j["status"] != "pending" for j in jobs.json()["jobs"]):
            break
        time.sleep(0.1)
    running = [
        create(server, acme, callback_url=hook, target_language=lang, priority=p,
               simulate={"duration_s": d, "outcome": "completed"})
        for lang, p, d in (("es", 0, 240), ("zh", 5, 200), ("ko", 0, 300), ("nl", 0, 300),
                           ("sv", 1, 300))
    ]  # fmt: skip
    create(server, globex, target_language="ar", simulate={"duration_s": 300})
    return {"acme": acme, "globex": globex, "done": done, "running": running}


def sign_in(page: Page, url: str, label: str, token: str) -> None:
    """Open a page and sign in."""
    page.goto(url)
    page.get_by_label(label).fill(token)
    page.get_by_role("button", name="Sign in").click()


def shoot(page: Page, name: str, *, full: bool = False) -> str:
    """One PNG in docs/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    return path.name


def screenshots(
    browser: Any, server: Service, receiver: Service, data: dict[str, Any]
) -> list[str]:
    """Every page at a desktop's and a phone's width."""
    token = json.loads((Path(server.log_path).parent / "local.json").read_text())["receiver_token"]
    written = []
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = browser.new_page(viewport=viewport, device_scale_factor=1)
        page.goto(f"{server.url}/")
        written.append(shoot(page, f"signin-{size}"))
        sign_in(page, f"{server.url}/", "API key or admin token", data["acme"]["api_key"])
        expect(page.locator("tr.job")).not_to_have_count(0)
        first_done = page.locator(f'tr[data-job-row="{data["done"][0]}"]')
        first_done.get_by_role("button", name="Webhooks").click()
        expect(page.locator("table.attempts")).to_be_visible()
        written.append(shoot(page, f"dashboard-{size}", full=size == "desktop"))
        page.get_by_role("button", name="Sign out").click()
        sign_in(page, f"{server.url}/", "API key or admin token", ADMIN)
        expect(page.locator("#clients li")).not_to_have_count(0)
        written.append(shoot(page, f"dashboard-admin-{size}", full=size == "desktop"))
        sign_in(page, f"{receiver.url}/", "Feed token", token)
        expect(page.locator("tr.rejected")).not_to_have_count(0)
        written.append(shoot(page, f"receiver-{size}"))
        page.close()
    return written


def change_latency(page: Page, server: Service, who: dict[str, Any], changes: int) -> list[float]:
    """Seconds from the API call that creates a job to its row in the page's DOM."""
    rng = random.Random(SEED)
    page.evaluate(WATCH)
    lags = []
    for _ in range(changes):
        time.sleep(rng.uniform(0.3, 1.3))  # anywhere in the page's polling cycle
        started = time.time()
        job = create(server, who, simulate={"duration_s": 600})
        seen = page.wait_for_function("(id) => window.seen[id]", arg=job, timeout=10_000)
        lags.append(seen.json_value() / 1000 - started)
    return lags


def requests_per_second(page: Page, seconds: float) -> dict[str, float]:
    """The page's requests to the dashboard's API during ``seconds``, per second."""
    seen: list[int] = []

    def note(response: Any) -> None:
        if "/v1/dashboard" in response.url:
            seen.append(response.status)

    page.on("response", note)
    page.wait_for_timeout(seconds * 1000)  # unlike a sleep, lets the page's events through
    page.remove_listener("response", note)
    return {
        "requests_per_s": round(len(seen) / seconds, 3),
        "not_modified_share": round(seen.count(304) / len(seen), 3) if seen else 0.0,
        "seconds": seconds,
    }


def server_time_ms(server: Service) -> float:
    """Mean server time per dashboard answer, from its /metrics (milliseconds)."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    route = 'route="/v1/dashboard"'
    total = count = 0.0
    for line in text.splitlines():
        if route in line and line.startswith("vt_http_request_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        if route in line and line.startswith("vt_http_request_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return round(total / count * 1000, 2) if count else 0.0


def measure(browser: Any, server: Service, quick: bool) -> dict[str, Any]:
    """Change-to-page latency, and the cost of an open page, visible and hidden."""
    page = browser.new_page(viewport=DESKTOP)
    who = tenant(server, "Measured")
    sign_in(page, f"{server.url}/", "API key or admin token", who["api_key"])
    expect(page.locator("#stat-queue")).to_have_text("0")
    lags = sorted(change_latency(page, server, who, 10 if quick else 20))
    expect(page.locator("#live-text")).to_contain_text("Live")
    visible = requests_per_second(page, 5 if quick else 20)
    page.evaluate(HIDE)
    hidden = requests_per_second(page, 31 if quick else 91)
    page.close()
    return {
        "changes": len(lags),
        "lag_ms": {
            "p50": round(percentile(lags, 50) * 1000, 1),
            "p99": round(percentile(lags, 99) * 1000, 1),
            "max": round(lags[-1] * 1000, 1),
        },
        "visible": visible,
        "hidden": hidden,
        "server_ms_per_answer": server_time_ms(server),
    }


def figures_table(figures: dict[str, Any]) -> str:
    """The measured figures as a markdown table."""
    lag, vis, hid = figures["lag_ms"], figures["visible"], figures["hidden"]
    return "\n".join(
        [
            "| figure | value |",
            "|---|---|",
            f"| a change on the server to the page's DOM ({figures['changes']} jobs created) "
            f"| p50 {lag['p50']:.0f} ms, p99 {lag['p99']:.0f} ms, max {lag['max']:.0f} ms |",
            f"| an open dashboard, tab visible ({vis['seconds']:.0f} s, nothing changing) "
            f"| {vis['requests_per_s']:.2f} requests/s, {vis['not_modified_share']:.0%} "
            "of them 304 |",
            f"| the same tab hidden ({hid['seconds']:.0f} s) "
            f"| {hid['requests_per_s']:.3f} requests/s |",
            f"| server time per dashboard answer (its `/metrics`, every answer of the run) "
            f"| {figures['server_ms_per_answer']:.1f} ms |",
        ]
    )


def write_doc(figures: dict[str, Any], shots: Sequence[str], argv: Sequence[str]) -> None:
    """Fill the measured part of docs/dashboard.md (between its markers) in place."""
    info = machine()
    cmd = " ".join([".venv/bin/python -m scripts.screenshots", *argv])
    body = "\n".join(
        [
            f"Measured by `{cmd}` (`make screenshots`) on {info['date']}, "
            f"{describe_machine(info)}.",
            "",
            figures_table(figures),
            "",
            "Screenshots: " + ", ".join(f"[{s}](screenshots/{s})" for s in shots) + ".",
        ]
    )
    text = DOC.read_text()
    start, end = "<!-- figures:start -->", "<!-- figures:end -->"
    text = re.sub(f"{start}.*{end}", f"{start}\n{body}\n{end}", text, flags=re.S)
    DOC.write_text(text)
    print(body)


@contextmanager
def stack(workdir: Path) -> Iterator[tuple[Service, Service]]:
    """Both services, two worker slots, pinned randomness."""
    args = ("--workers", "2", "--seed", str(SEED), "--error-rate", "0")
    with start_server(workdir, *args) as server, start_receiver(workdir) as receiver:
        yield server, receiver


def main(argv: Sequence[str]) -> int:
    args = parser(__doc__).parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as (server, receiver):
        data = populate(server, receiver)
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            shots = screenshots(browser, server, receiver, data)
            figures = measure(browser, server, args.quick)
            browser.close()
    write_doc(figures, shots, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
