"""The hottest read, one job by id, run with less machinery than a Core ``execute``.

The statement is the same Core construct, compiled once for the engine's dialect; each thread
that reads keeps one DBAPI connection from the engine's own pool (autocommit, as the reader's
are), shared by the point reads given the same ``held``, and runs the compiled SQL on it, a
connection gone bad being replaced once (so a pool must hold a connection for each request
thread, and some for everything else: ``db.reader``'s is sized so): a fraction of
the cost of ``Connection.execute``, which also checks a connection out and back in, builds an
execution context, a result object and row proxies for the one row. The same code serves
SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql import Select


class PointRead:
    """One single-row SELECT, compiled once, run on a pooled DBAPI connection per thread."""

    def __init__(
        self, engine: Engine, statement: Select[Any], held: threading.local | None = None
    ) -> None:
        """``held``: where each thread keeps its connection, to share it with other point
        reads of the same engine (by default this read's own)."""
        self._engine = engine
        self._held = held if held is not None else threading.local()
        compiled = statement.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._order: Sequence[str] | None = (
            compiled.positiontup if engine.dialect.positional else None
        )

    def first(self, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row, as a tuple in the statement's column order, or None."""
        args: Any = (
            [params[name] for name in self._order] if self._order is not None else dict(params)
        )
        try:
            return self._run(args)
        except self._engine.dialect.dbapi.Error:  # type: ignore[union-attr]
            self._drop()  # a connection gone bad (a database restart): one more try, afresh
            return self._run(args)

    def _run(self, args: Any) -> Sequence[Any] | None:
        conn = getattr(self._held, "conn", None)
        if conn is None:
            conn = self._held.conn = self._engine.raw_connection()
        cursor = conn.cursor()
        try:
            cursor.execute(self._sql, args)
            row = cursor.fetchone()
        finally:
            cursor.close()
        return tuple(row) if row is not None else None

    def _drop(self) -> None:
        conn = getattr(self._held, "conn", None)
        self._held.conn = None
        if conn is not None:
            conn.invalidate()
