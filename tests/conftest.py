"""Fixtures shared by the whole suite: a fresh server app and database per test (flaskr style)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine

from translation_server import Settings, create_app
from translation_server.runtime import Runtime
from translation_server.schema import metadata

ADMIN_TOKEN = "test-admin-token"


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test server: its own database and credentials file, seeded, no demo."""
    base = Settings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}",
        seed=1234,
        admin_token=ADMIN_TOKEN,
        credentials_file=tmp_path / "local.json",
        demo_job=False,
        duration_min=1.0,
        duration_max=2.0,
    )
    return base.replace(**overrides)


def shared_database(config: pytest.Config) -> str | None:
    """The database named by ``--server-database`` (the server's tests run on it), or None."""
    return config.getoption("--server-database")  # type: ignore[no-any-return]


@pytest.fixture
def make_app(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of apps; background threads are off unless ``start=True``.

    A SQLite database takes one server at a time, so a second app gets a database of its own.
    With ``--server-database`` every app of a test shares that database, emptied first.
    """
    apps: list[Flask] = []
    shared = shared_database(request.config)
    if shared is not None:
        engine = create_engine(shared)
        metadata.drop_all(engine)
        engine.dispose()

    def factory(*, start: bool = False, **overrides: Any) -> Flask:
        if shared is not None:
            overrides.setdefault("database_url", shared)
        elif apps:
            overrides.setdefault("database_url", f"sqlite:///{tmp_path / f'server{len(apps)}.db'}")
        app = create_app(server_settings(tmp_path, **overrides), start=start)
        app.testing = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["vt"].close()


@pytest.fixture
def app(make_app: Any) -> Flask:
    """A server app with its scheduler stopped (tests drive it with ``runtime.simulator.step``)."""
    return make_app()  # type: ignore[no-any-return]


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    """The app's runtime (store, simulator, estimator)."""
    return app.extensions["vt"]  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def tenant(client: FlaskClient) -> dict[str, str]:
    """A fresh tenant: its id, API key, webhook secret, and ready-made auth headers."""
    resp = client.post(
        "/v1/clients", json={"name": "acme"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    return {**body, "auth": f"Bearer {body['api_key']}"}


def auth(tenant: dict[str, str]) -> dict[str, str]:
    """The Authorization header of a tenant."""
    return {"Authorization": tenant["auth"]}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options: the server's database for its tests; the demo test's running services."""
    parser.addoption(
        "--server-database",
        default=None,
        help="run the server's unit tests on this database, such as a PostgreSQL URL "
        "(its tables are dropped at the start of every test)",
    )
    group = parser.getgroup("demo")
    group.addoption(
        "--demo-server",
        default=None,
        help="run the demo against this translation server (e.g. make run's)",
    )
    group.addoption(
        "--demo-receiver",
        default="http://127.0.0.1:8001",
        help="with --demo-server: the callback receiver's URL",
    )
    group.addoption(
        "--demo-credentials",
        default=None,
        help="with --demo-server: the local set-up file [var/local.json]",
    )
