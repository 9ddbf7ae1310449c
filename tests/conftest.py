"""Fixtures shared by the whole suite: a fresh server app and database per test (flaskr style)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.pgsupport import empty, fresh_database
from translation_server import Settings, create_app
from translation_server.runtime import Runtime

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


ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    """The ``both_engines`` marker."""
    config.addinivalue_line(
        "markers",
        "both_engines: run the test (or module) once on SQLite and once on PostgreSQL, through "
        "the db_engine fixture (database_url, receiver_database_url, make_app)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_engines`` run on each of ``ENGINES``."""
    if "db_engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_engines"
    ):
        metafunc.parametrize("db_engine", ENGINES, indirect=True)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this test session, created at first use and dropped after."""
    with fresh_database() as url:
        yield url


@pytest.fixture
def db_engine(request: pytest.FixtureRequest) -> str:
    """The engine a test's databases are on: SQLite unless marked ``both_engines``."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(db_engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The server's database of a test: a new SQLite file, or the session's PostgreSQL database
    emptied first (every app and receiver of the test then shares it)."""
    if db_engine == "sqlite":
        return f"sqlite:///{tmp_path / 'server.db'}"
    url: str = request.getfixturevalue("postgres_database")
    empty(url)
    return url


@pytest.fixture
def receiver_database_url(db_engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The receiver's database of a test: a SQLite file of its own, or ``database_url``'s."""
    if db_engine == "sqlite":
        return f"sqlite:///{tmp_path / 'receiver.db'}"
    return request.getfixturevalue("database_url")  # type: ignore[no-any-return]


@pytest.fixture
def make_app(tmp_path: Path, db_engine: str, database_url: str) -> Iterator[Any]:
    """A factory of apps on ``database_url``; background threads are off unless ``start=True``.

    A SQLite database takes one server at a time, so a second app gets a file of its own; on
    PostgreSQL every app of a test shares the database, as server instances do.
    """
    apps: list[Flask] = []

    def factory(*, start: bool = False, **overrides: Any) -> Flask:
        if apps and db_engine == "sqlite":
            overrides.setdefault("database_url", f"sqlite:///{tmp_path / f'server{len(apps)}.db'}")
        overrides.setdefault("database_url", database_url)
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
    """Options: the demo test's running services."""
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
