"""PostgreSQL for the tests: fresh databases on the local server, created and dropped here.

The server is the machine's service at 127.0.0.1:5432 (``VT_TEST_POSTGRES`` names another, as
a SQLAlchemy URL of its maintenance database); ``.ci/run`` checks it answers before the suite.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "VT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(_conninfo(ADMIN_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {make_url(ADMIN_URL).render_as_string()}: the "
            "store and feed tests run on it too (start the service, or name another server "
            f"in VT_TEST_POSTGRES): {exc}"
        ) from exc


@contextmanager
def fresh_database(prefix: str = "vt_test") -> Iterator[str]:
    """A new, empty database (its SQLAlchemy URL), dropped afterwards with its connections."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def empty(url: str) -> None:
    """Drop every table, function and trigger of the database at ``url`` (a new test's start)."""
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def query(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement on the database at ``url``; its rows."""
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []
