"""``GET /``: the dashboard page; ``GET /dashboard/{name}``: its script and stylesheet.

The files are the package's own (``static/``). The page signs in with a key kept in the
browser's session storage and reads the JSON API with it; its Content-Security-Policy lets
it load and connect to this server only.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

from service_common import pages

bp = Blueprint("dashboard_page", __name__)

STATIC = Path(__file__).resolve().with_name("static")
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@bp.get("/")
def index() -> Response:
    """The dashboard."""
    return pages.page_file(STATIC, "index.html", "text/html")


@bp.get("/dashboard/<name>")
def asset(name: str) -> Response:
    """The page's script or stylesheet (conditional: ETag and Last-Modified)."""
    return pages.asset(STATIC, ASSETS, name)
