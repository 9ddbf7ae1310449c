"""docs/api.md stays true: every route, command-line option and create-body field is in it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from flask import Flask

from callback_receiver.__main__ import main as receiver_main
from client_lib.localsetup import DATA_HOME
from tests.receiver_support import receiver_app
from translation_server.__main__ import main as server_main
from translation_server.validation import CREATE_FIELDS, SIMULATE_FIELDS

pytestmark = pytest.mark.timeout(30)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
# `METHOD /path`, the path ending at a query string, a space or the closing backquote
ROUTE_RE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)")
FLAG_RE = re.compile(r"`(--[a-z0-9-]+)`")
FLASK_VARIABLE_RE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")  # <x> or <converter:x>


def section(heading: str) -> str:
    """The text under a heading, up to the next heading of any level."""
    start = DOC.index(f"\n{heading}\n")
    following = re.search(r"^#{1,6} ", DOC[start + len(heading) + 2 :], re.M)
    end = start + len(heading) + 2 + following.start() if following else len(DOC)
    return DOC[start:end]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table row in ``text`` (header and rule rows included)."""
    lines = [line.strip() for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def wire_routes(app: Flask) -> set[str]:
    """``METHOD /path`` of every route of an app, Flask's ``<x>`` written ``{x}``."""
    return {
        f"{method} {FLASK_VARIABLE_RE.sub(lambda m: '{' + m[1] + '}', rule.rule)}"
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


@pytest.fixture
def both_apps(app: Flask, tmp_path: Path) -> Iterator[tuple[Flask, Flask]]:
    """The server app of the suite's fixture and a receiver app, neither serving sockets."""
    with receiver_app(tmp_path) as receiver:
        yield app, receiver


def test_every_route_has_a_row_in_an_endpoint_table(both_apps: tuple[Flask, Flask]) -> None:
    routes = wire_routes(both_apps[0]) | wire_routes(both_apps[1])
    in_tables = {f"{m} {p}" for row in table_rows(DOC) for m, p in ROUTE_RE.findall(row[0])}
    assert {"POST /v1/jobs", "GET /v1/jobs/{job_id}", "POST /webhooks"} <= routes
    assert routes - in_tables == set()


def test_every_route_the_doc_names_exists(both_apps: tuple[Flask, Flask]) -> None:
    routes = wire_routes(both_apps[0]) | wire_routes(both_apps[1])
    named = {f"{m} {p}" for m, p in ROUTE_RE.findall(DOC)}
    assert named - routes == set()


def _envvar(command: click.Command, option: click.Option) -> str:
    if isinstance(option.envvar, str):
        return option.envvar
    prefix = (command.context_settings or {}).get("auto_envvar_prefix")
    assert prefix and option.name, f"{option.opts[0]} has no environment variable"
    return f"{prefix}_{option.name.upper()}"


def _default_text(default: Any) -> str | None:
    """A default as the doc writes it (`5`, `0.1`, `<data>/local.json`), else None."""
    if isinstance(default, bool) or not isinstance(default, str | int | float):
        return None  # flags, unset and computed defaults are described in words
    if isinstance(default, float):
        return f"{default:g}"
    return str(default).replace(str(DATA_HOME), "<data>")


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


@pytest.mark.parametrize(
    ("heading", "command"),
    [
        ("### Translation server options", server_main),
        ("### Callback receiver options", receiver_main),
    ],
)
def test_every_option_has_a_row_with_its_variable_and_default(
    heading: str, command: click.Command
) -> None:
    rows = {flag: row for row in table_rows(section(heading)) for flag in FLAG_RE.findall(row[0])}
    flags = {flag for p in _options(command) for flag in p.opts + p.secondary_opts}
    assert "--port" in flags
    assert flags - set(rows) == set()
    assert set(rows) - flags == set()
    for option in _options(command):
        row = rows[option.opts[0]]
        assert f"`{_envvar(command, option)}`" in row[1], option.opts[0]
        default = _default_text(option.default)
        if default is not None:
            assert f"`{default}`" in row[2], option.opts[0]


def test_every_create_body_field_has_a_row() -> None:
    cells = [row[0] for row in table_rows(section("### Create body"))]
    named = {name for cell in cells for name in re.findall(r"^`([a-z_.]+)`$", cell)}
    fields = CREATE_FIELDS | {f"simulate.{name}" for name in SIMULATE_FIELDS}
    assert {"channel_events", "simulate.estimate_factor"} <= fields
    assert fields - named == set()
    assert named - fields == set()
