"""The database engine of either service: a SQLite file in WAL mode whose transactions begin
when SQLAlchemy says (``BEGIN IMMEDIATE`` for writers), or PostgreSQL with pre-pinged pooled
connections named after the instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url


def create(
    url: str | URL,
    *,
    pool: tuple[int, int],
    pg_pool: tuple[int, int],
    name: str | None = None,
    explicit_begin: bool = True,
    **options: Any,
) -> Engine:
    """An engine for ``url`` with ``pool`` (size, overflow) connections on SQLite, ``pg_pool``
    on PostgreSQL (every instance of both services holds its own: modest pools leave the
    server's ``max_connections`` room for several). ``name``: on PostgreSQL, the connections'
    ``application_name`` (the instance id: it shows in ``pg_stat_activity`` and is the payload
    of the notifications its writes send). ``explicit_begin``: on SQLite, transactions begin
    as ``_on_begin`` says (off for an engine in autocommit)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args = {"application_name": name} if name else {}
        size, overflow = pg_pool
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=size,
            max_overflow=overflow,
            connect_args=connect_args,
            **options,
        )
    if parsed.database not in (None, "", ":memory:"):
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
    size, overflow = pool
    engine = create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=size,
        max_overflow=overflow,
        **options,
    )
    event.listen(engine, "connect", _on_sqlite_connect)
    if explicit_begin:
        event.listen(engine, "begin", _on_begin)
    return engine


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide when a transaction begins (see _on_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit survives a process crash (SIGKILL); only an OS crash or power
    # loss may drop the last commits (docs/design.md).
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _on_begin(conn: Connection) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
    # upgrades from read to write can fail with SQLITE_BUSY without waiting.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
