"""The database: engines, the writer's transactions and, on a SQLite file, this process's lock.

Everything above this module speaks SQLAlchemy Core to what it hands out, on SQLite and
PostgreSQL alike; only the set-up of a connection (pragmas, how a transaction begins) differs.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, select

from service_common import engine

from .migrations import migrate
from .solewriter import SoleWriter


def make_engine(url: str, *, name: str | None = None) -> Engine:
    """An engine for ``url`` (``service_common.engine``); ``name`` names its connections."""
    return engine.create(url, pool=(20, 20), pg_pool=(8, 8), name=name)


def reader(writer_engine: Engine, *, name: str | None = None, request_threads: int = 0) -> Engine:
    """An engine of its own for reads of ONE statement, which need no transaction around them.

    Its connections are in autocommit, on SQLite and PostgreSQL alike: a hot read costs no
    BEGIN and no ROLLBACK, and a single SELECT is a consistent snapshot by itself. Reads of
    several statements that must agree use the writer's engine. Each request thread keeps one
    of its connections for the point reads (``pointread.py``): the pool holds that many more.
    """
    # nothing to roll back when a connection goes back to the pool: skip the reset
    return engine.create(
        writer_engine.url,
        pool=(20 + request_threads, 20),
        pg_pool=(8 + request_threads, 8),
        name=name,
        explicit_begin=False,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,
    )


class Writer:
    """Read-write transactions on one database.

    On SQLite only one transaction writes at a time anyway; taking turns on a lock in this
    process first, rather than in SQLite's busy handler (which sleeps up to 100 ms between
    tries, long after the lock was freed), keeps a burst of writers from stalling each other.
    Other processes (a second server on the same file) still meet the busy handler. SQLite
    takes one writer process (``DatabaseLock`` refuses a second server on a file), so there
    every transaction, once ended, is counted in ``sole`` (``solewriter.py``).
    """

    def __init__(self, engine: Engine) -> None:
        sqlite = engine.dialect.name == "sqlite"
        self._engine = engine.execution_options(sqlite_begin="IMMEDIATE") if sqlite else engine
        self._lock: threading.Lock | None = threading.Lock() if sqlite else None
        self.sole = SoleWriter(sqlite)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on error."""
        if self._lock is None:
            with self._engine.begin() as conn:
                yield conn
            return
        with self._lock:
            try:
                with self._engine.begin() as conn:
                    yield conn
            finally:  # after the commit: a read marked before it never passes for current
                self.sole.committed()


def sqlite_file(engine: Engine) -> str | None:
    """The path of the SQLite file behind ``engine``; None for any other database (a server
    database, or an in-memory SQLite one)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    return str(database)


class DatabaseInUse(RuntimeError):
    """Another process holds the SQLite database this store was asked to own."""


class DatabaseLock:
    """This process's exclusive hold on a SQLite database file, for as long as it is open.

    A SQLite database takes one server: several instances need PostgreSQL, which is built for
    writers in many processes. On a file, the writers of two processes would meet only in
    SQLite's busy handler (which sleeps up to 100 ms between tries, see ``Writer``), and a
    forgotten second server would run a second scheduler and dispatcher on the same jobs; so
    a second server is refused at start, with the holder's pid. The lock is an ``flock`` on
    ``<database>.lock`` next to the file's real path (two spellings of one file meet the same
    lock): the kernel releases it when the process ends in any way, kill -9 included, so a
    restart never finds it stale. It is advisory: it keeps out servers, not a sqlite3 shell
    writing the file by hand.
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
    nothing is locked; nor is an in-memory SQLite database (tests only), which has no file.
    """
    database = sqlite_file(engine)
    return None if database is None else DatabaseLock(database)


class Database:
    """One database as the server uses it: the engine, the writer's transactions, the engine
    for one-statement reads, whether this process is its only writer (``sole``) and (on a
    SQLite file) this process's lock on it.

    Raises ``DatabaseInUse`` when another server holds the SQLite file, ``SchemaVersionError``
    when its schema is newer than this code's; creates or migrates the tables
    (``migrations.py``). ``name``: the instance id, PostgreSQL's ``application_name``;
    ``request_threads``: the request threads that each keep a reader connection.
    """

    def __init__(self, url: str, *, name: str | None = None, request_threads: int = 0) -> None:
        self.engine = make_engine(url, name=name)
        self._lock = lock_database(self.engine)
        try:
            self.writer = Writer(self.engine)
            self.sole = self.writer.sole
            self.reader = reader(self.engine, name=name, request_threads=request_threads)
            migrate(self.engine)
        except BaseException:
            self.close()
            raise

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.reader.connect() as conn:
            conn.execute(select(1)).scalar_one()

    def close(self) -> None:
        """Release every pooled connection, then the database itself."""
        self.engine.dispose()
        reader_engine = getattr(self, "reader", self.engine)
        if reader_engine is not self.engine:
            reader_engine.dispose()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
