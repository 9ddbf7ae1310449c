"""A service's own web page: its HTML and assets, shipped in the package and served under a
strict Content-Security-Policy (nothing from other hosts, no inline script)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import Response, send_from_directory

from client_lib.wire import APIProblem

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def page_file(directory: Path, name: str, mimetype: str) -> Response:
    """A file of the page (conditional: ETag and Last-Modified), with the page's headers."""
    resp = send_from_directory(directory, name, mimetype=mimetype)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def asset(directory: Path, assets: Mapping[str, str], name: str) -> Response:
    """One of the page's scripts or stylesheets (``assets``: name -> type); else 404."""
    if name not in assets:
        raise APIProblem(404, "not_found", f"no page file {name}")
    return page_file(directory, name, assets[name])
