"""``GET /``: a plain page listing received webhooks, newest first; it refreshes itself."""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response

from client_lib.models import format_time

from .receiver import get_receiver
from .store import Receipt

bp = Blueprint("page", __name__)

PAGE_ROWS = 200

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<title>Callback receiver</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem}
table{border-collapse:collapse}td,th{padding:.25rem .75rem;border-bottom:1px solid #ddd;
text-align:left;font-family:ui-monospace,monospace;font-size:.9rem}
.ok{color:#176f2c}.bad{color:#b00020}.dup{color:#8a6d00}
</style></head><body>
<h1>Callback receiver</h1>
"""


def _row(r: Receipt) -> str:
    verified = r.result == "verified"
    result = (
        '<span class="ok">verified</span>'
        if verified
        else (f'<span class="bad">{escape(r.result)} ({r.status})</span>')
    )
    duplicate = '<span class="dup">duplicate</span>' if r.duplicate else "new" if verified else ""
    cells = [
        escape(format_time(r.received_at) or ""),
        escape(r.job_id or "-"),
        escape(r.type or "-"),
        result,
        duplicate,
        escape(r.webhook_id or "-"),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


@bp.get("/")
def index() -> Response:
    """The list of received webhooks, newest first."""
    receiver = get_receiver()
    rows = receiver.store.receipts(limit=PAGE_ROWS)
    stored = receiver.store.count_events()
    parts = [
        _HEAD,
        f"<p>{stored} distinct event(s) stored. Latest {len(rows)} of at most {PAGE_ROWS} "
        'deliveries below; the feed is at <a href="/v1/events">/v1/events</a>.</p>',
        "<table><thead><tr><th>received</th><th>job</th><th>type</th><th>verification</th>"
        "<th>duplicate</th><th>webhook-id</th></tr></thead><tbody>",
        *(_row(r) for r in rows),
        "</tbody></table>",
        "" if rows else "<p>No webhooks received yet.</p>",
        "</body></html>\n",
    ]
    resp = Response("".join(parts), mimetype="text/html")
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return resp
