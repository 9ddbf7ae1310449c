"""Benchmark: how long a change takes to appear on the dashboard, and what an open one costs.

The measuring part of ``scripts/screenshots.py`` (``make screenshots`` runs it with the
screenshots and writes docs/dashboard.md), on its own, for ``make bench``: real services,
Debian's chromium driven by Playwright, a job created through the API until its row is in the
page's DOM, and the page's requests per second while visible and while hidden.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import sync_playwright

from scripts.common import parser, save
from scripts.screenshots import figures_table, measure, populate, stack
from tests.support import launch_chromium


def main(argv: Sequence[str]) -> int:
    args = parser(__doc__).parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as (server, receiver):
        populate(server, receiver)
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            figures = measure(browser, server, args.quick)
            browser.close()
    lag, vis, hid = figures["lag_ms"], figures["visible"], figures["hidden"]
    value = (
        f"p50 {lag['p50']:.0f} ms, p99 {lag['p99']:.0f} ms; an open tab asks "
        f"{vis['requests_per_s']:.1f} requests/s (304s), {hid['requests_per_s']:.3f} hidden"
    )
    headline = [("A change on the server to the dashboard's page", value, "dashboard.md#measured")]
    title = "Dashboard: a change to the page, and what an open page costs"
    save("dashboard", argv, title, figures_table(figures), headline, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
