"""Engine set-up shared by the store: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL and explicit BEGIN handling."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = _sqlite_engine(parsed)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
        # upgrades from read to write can fail with SQLITE_BUSY without waiting.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=20
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


class Writer:
    """Read-write transactions on one database.

    On SQLite only one transaction writes at a time anyway; taking turns on a lock in this
    process first, rather than in SQLite's busy handler (which sleeps up to 100 ms between
    tries, long after the lock was freed), keeps a burst of writers from stalling each other.
    Other processes (a second server on the same file) still meet the busy handler.
    """

    def __init__(self, engine: Engine) -> None:
        sqlite = engine.dialect.name == "sqlite"
        self._engine = engine.execution_options(sqlite_begin="IMMEDIATE") if sqlite else engine
        self._lock: threading.Lock | None = threading.Lock() if sqlite else None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on error."""
        if self._lock is None:
            with self._engine.begin() as conn:
                yield conn
            return
        with self._lock, self._engine.begin() as conn:
            yield conn


def reader(engine: Engine) -> Engine:
    """The engine for reads of ONE statement, which need no transaction around them.

    On a SQLite file: a pool of its own whose connections stay in autocommit (no begin hook),
    so a hot read skips the BEGIN DEFERRED and its rollback; a single SELECT is a consistent
    snapshot by itself. Reads of several statements that must agree use ``engine``. Elsewhere
    (PostgreSQL, an in-memory SQLite) the engine itself.
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine
    return _sqlite_engine(engine.url)
