"""The schema's version: checked at every start, brought up to date by ordered migrations.

The database records the version of the server's tables in ``schema_version`` (a row per
component, so the receiver's tables may share the database). At start, in one transaction that
no other starting server can interleave with (an advisory lock on PostgreSQL, ``BEGIN
IMMEDIATE`` on SQLite):

- no tables yet: every table is created at ``SCHEMA_VERSION``;
- an older version: each migration after it runs, in order, then the row is updated;
- a newer version (the database was migrated by newer code): the start is refused with
  ``SchemaVersionError``, naming both versions, and nothing is changed;
- the tables without a version row: version 1, the first schema.

A schema change is a new function in ``MIGRATIONS`` and ``SCHEMA_VERSION`` raised to its key;
``schema.py`` describes the latest version, which is what a fresh database gets.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, inspect, text

from .schema import instances, metadata

COMPONENT = "server"
SCHEMA_VERSION = 2
_LOCK_KEY = 7_316_041_602  # pg_advisory_xact_lock: one migrating server at a time

version_table = Table(
    "schema_version",
    MetaData(),
    Column("component", String(40), primary_key=True),
    Column("version", Integer, nullable=False),
)

# PostgreSQL only: inserts of jobs and outbox rows notify the other instances at commit (see
# notify.py); the payload is the writer's application_name, its instance id.
_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION vt_server_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], current_setting('application_name'));
  RETURN NULL;
END $$
"""
NOTIFY_TRIGGERS = {"jobs": "vt_jobs", "webhook_events": "vt_outbox"}


class SchemaVersionError(RuntimeError):
    """The database's schema is newer than this code knows."""


def _install_notifications(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text(_NOTIFY_FUNCTION))
    for table, channel in NOTIFY_TRIGGERS.items():
        conn.execute(text(f"DROP TRIGGER IF EXISTS {channel}_notify ON {table}"))
        conn.execute(
            text(
                f"CREATE TRIGGER {channel}_notify AFTER INSERT ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION vt_server_notify('{channel}')"
            )
        )


def _v2(conn: Connection) -> None:
    """Jobs name the instance running them; instances hold leases; inserts notify."""
    conn.execute(text("ALTER TABLE jobs ADD COLUMN owner VARCHAR(40)"))
    instances.create(conn, checkfirst=True)
    _install_notifications(conn)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _v2}


def database_version(conn: Connection) -> int | None:
    """The version recorded in the database; 1 for tables without one; None for no tables."""
    names = set(inspect(conn).get_table_names())
    if version_table.name in names:
        found = conn.execute(
            version_table.select().where(version_table.c.component == COMPONENT)
        ).first()
        if found is not None:
            return int(found.version)
    return 1 if "jobs" in names else None


def migrate(engine: Engine) -> int:
    """Create or bring the server's tables up to ``SCHEMA_VERSION``; returns the version found
    (0 for a fresh database). Raises ``SchemaVersionError`` for a newer schema."""
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(sqlite_begin="IMMEDIATE")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        found = database_version(conn)
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database's schema is at version {found}, newer than this server's "
                f"{SCHEMA_VERSION}: run a server at least as new as the one that migrated it"
            )
        if found == SCHEMA_VERSION:
            return found
        if found is None:
            metadata.create_all(conn)
            _install_notifications(conn)
        else:
            for version in range(found + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](conn)
        version_table.create(conn, checkfirst=True)
        conn.execute(version_table.delete().where(version_table.c.component == COMPONENT))
        conn.execute(version_table.insert().values(component=COMPONENT, version=SCHEMA_VERSION))
        return found or 0
