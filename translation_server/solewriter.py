"""What a process that is its database's only writer knows without asking it: that nothing
changed since a read.

On SQLite this process is the database's only writer: a second server on the same file is
refused at start (``db.DatabaseLock``), and an in-memory database is the process's own. Every
change to it is then a transaction of this process's ``db.Writer``, which counts its commits
here. A record read while the count stood at N is what the database still holds for as long
as the count stays at N, so it can be answered again with no read at all. On PostgreSQL other
server instances write the same database: ``sole`` is False, no mark is ever given, and every
read asks the database.

The shortcut assumes what the lock enforces: a hand edit of the SQLite file (a ``sqlite3``
shell) is seen only after this process's next commit.
"""

from __future__ import annotations


class SoleWriter:
    """The commit count of a database's only writer (``sole``), or nothing (``not sole``)."""

    def __init__(self, sole: bool) -> None:
        self.sole = sole
        self._commits = 0

    def committed(self) -> None:
        """Called by the writer once a transaction has ended (committed or not); on SQLite
        under the writer's lock, so the count is never raced."""
        if self.sole:
            self._commits += 1

    def mark(self) -> int | None:
        """Taken BEFORE a read: the count a record read next is current at; None when other
        processes write the database."""
        return self._commits if self.sole else None

    def unchanged_since(self, mark: int | None) -> bool:
        """Whether nothing has been committed since ``mark`` was taken."""
        return mark is not None and mark == self._commits
