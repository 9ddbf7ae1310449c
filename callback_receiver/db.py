"""The receiver's database engine: SQLite files in WAL mode with explicit write locking, or
any other SQLAlchemy URL (PostgreSQL) with pre-pinged pooled connections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

PG_POOL_MAX = 12  # connections one receiver keeps to a PostgreSQL server, at most


def make_engine(url: str, *, pool_size: int, name: str | None = None) -> Engine:
    """An engine for ``url``; SQLite files get WAL and explicit BEGIN handling.

    On PostgreSQL the pool is capped at ``PG_POOL_MAX`` (threads beyond it wait their turn: a
    server's connections are shared by every instance of both services), and ``name`` (the
    instance id) is the connections' ``application_name``, the payload of their notifications.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=min(pool_size, PG_POOL_MAX),
            max_overflow=4,
            connect_args={"application_name": name} if name else {},
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=pool_size,
        max_overflow=4,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a process crash (SIGKILL); only an OS crash or power
        # loss may drop the last commits. Use FULL if acknowledged events must survive that too.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
        # upgrades from read to write can fail with SQLITE_BUSY without waiting.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
