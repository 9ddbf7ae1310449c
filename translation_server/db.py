"""Engine set-up shared by the store: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
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


def sqlite_file(engine: Engine) -> str | None:
    """The path of the SQLite file behind ``engine``; None for any other database (a server
    database, or an in-memory SQLite one)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    return str(database)


def reader(engine: Engine) -> Engine:
    """The engine for reads of ONE statement, which need no transaction around them.

    On a SQLite file: a pool of its own whose connections stay in autocommit (no begin hook),
    so a hot read skips the BEGIN DEFERRED and its rollback; a single SELECT is a consistent
    snapshot by itself. Reads of several statements that must agree use ``engine``. Elsewhere
    (PostgreSQL, an in-memory SQLite) the engine itself.
    """
    return engine if sqlite_file(engine) is None else _sqlite_engine(engine.url)


class PointReader:
    """One-row reads of a SQLite file straight on ``sqlite3``: one connection per thread.

    The hottest read (``GET /v1/jobs/{id}`` of a pending job) is one indexed SELECT; through
    SQLAlchemy most of its cost was the connection checkout, execution context, result proxy
    and checkin, not SQLite. Each thread keeps an autocommit connection of its own, so a read
    is one ``execute`` and ``fetchone``: a single SELECT is a consistent snapshot by itself,
    and in WAL mode it sees every commit made before it began, by this process or another.
    """

    def __init__(self, database: str) -> None:
        self._database = database
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[sqlite3.Connection] = []
        self._generation = 0  # close() bumps it: threads then connect again on their next read

    def first(self, sql: str, params: Sequence[Any]) -> Any:
        """The first row of ``sql`` (a plain tuple), or None."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.generation != self._generation:
            conn = self._connect()
        return conn.execute(sql, params).fetchone()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._database, timeout=30, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._open.append(conn)
            self._local.conn = conn
            self._local.generation = self._generation
        return conn

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._generation += 1
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()


def point_reader(engine: Engine) -> PointReader | None:
    """A ``PointReader`` for a SQLite file; None elsewhere (use the engine)."""
    database = sqlite_file(engine)
    return None if database is None else PointReader(database)


def compiled_sql(engine: Engine, statement: Any) -> str:
    """``statement`` as the SQL text the engine's driver takes (positional parameters)."""
    return str(statement.compile(dialect=engine.dialect))


class DatabaseInUse(RuntimeError):
    """Another process holds the SQLite database this store was asked to own."""


class DatabaseLock:
    """This process's exclusive hold on a SQLite database file, for as long as it is open.

    A server answers pending jobs from memory only because every write to its jobs goes
    through its own store; a second server process on the same file would break that, so it
    is refused at start. The lock is an ``flock`` on ``<database>.lock`` next to the file's
    real path (two spellings of one file meet the same lock): the kernel releases it when the
    process ends in any way, kill -9 included, so a restart never finds it stale. It is
    advisory: it keeps out servers, not a sqlite3 shell writing the file by hand.
    """

    def __init__(self, database: str) -> None:
        self.path = Path(f"{os.path.realpath(database)}.lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                raise DatabaseInUse(
                    f"{database} is in use by another server process (pid {holder}); a SQLite "
                    "database takes one server (several instances need PostgreSQL)"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)  # drops the lock too, if it was taken
            raise
        self._fd: int | None = fd

    def release(self) -> None:
        """Let go of the database (closing the descriptor drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_database(engine: Engine) -> DatabaseLock | None:
    """Take a SQLite file for this process alone; None for any other database.

    Server databases are shared by design (several server instances on PostgreSQL), so
    nothing is locked and the store never assumes it is the only writer; nor does it for an
    in-memory SQLite database (tests only), which has no file to lock.
    """
    database = sqlite_file(engine)
    return None if database is None else DatabaseLock(database)
