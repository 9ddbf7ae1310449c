"""``GET /``: the dashboard page; ``GET /dashboard/{name}``: its script and stylesheet.

The files are the package's own (``static/``). The page signs in with a key kept in the
browser's session storage and reads the JSON API with it; its Content-Security-Policy lets
it load and connect to this server only.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from client_lib.wire import APIProblem

bp = Blueprint("dashboard_page", __name__)

STATIC = Path(__file__).resolve().with_name("static")
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@bp.get("/")
def index() -> Response:
    """The dashboard."""
    return _headers(send_from_directory(STATIC, "index.html", mimetype="text/html"))


@bp.get("/dashboard/<name>")
def asset(name: str) -> Response:
    """The page's script or stylesheet (conditional: ETag and Last-Modified)."""
    if name not in ASSETS:
        raise APIProblem(404, "not_found", f"no dashboard file {name}")
    return _headers(send_from_directory(STATIC, name, mimetype=ASSETS[name]))
