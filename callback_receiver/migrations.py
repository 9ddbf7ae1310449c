"""The schema's version: checked at every start, brought up to date by ordered migrations.

The database records the version of the receiver's tables in ``schema_version`` (a row per
component: the translation server's tables may share the database). At start, in one
transaction no other starting receiver can interleave with (an advisory lock on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite): no tables yet, every table is created at ``SCHEMA_VERSION``;
an older version, each migration after it runs in order; a newer one, the start is refused
with ``SchemaVersionError`` naming both versions; tables without a version row are version 1.

A schema change is a new function in ``MIGRATIONS`` and ``SCHEMA_VERSION`` raised to its key;
the tables in ``store.py`` describe the latest version, which is what a fresh database gets.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, inspect, text

COMPONENT = "receiver"
SCHEMA_VERSION = 2
FEED_CHANNEL = "vt_feed"
_LOCK_KEY = 7_316_041_603  # pg_advisory_xact_lock: one migrating receiver at a time

version_table = Table(
    "schema_version",
    MetaData(),
    Column("component", String(40), primary_key=True),
    Column("version", Integer, nullable=False),
)

# PostgreSQL only: a statement inserting events notifies every receiver at commit (notify.py),
# with the writer's application_name (its instance id) as the payload.
_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION vt_receiver_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], current_setting('application_name'));
  RETURN NULL;
END $$
"""


class SchemaVersionError(RuntimeError):
    """The database's schema is newer than this code knows."""


def _install_notifications(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text(_NOTIFY_FUNCTION))
    conn.execute(text(f"DROP TRIGGER IF EXISTS {FEED_CHANNEL}_notify ON events"))
    conn.execute(
        text(
            f"CREATE TRIGGER {FEED_CHANNEL}_notify AFTER INSERT ON events "
            f"FOR EACH STATEMENT EXECUTE FUNCTION vt_receiver_notify('{FEED_CHANNEL}')"
        )
    )


MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _install_notifications}


def database_version(conn: Connection) -> int | None:
    """The version recorded in the database; 1 for tables without one; None for no tables."""
    names = set(inspect(conn).get_table_names())
    if version_table.name in names:
        found = conn.execute(
            version_table.select().where(version_table.c.component == COMPONENT)
        ).first()
        if found is not None:
            return int(found.version)
    return 1 if "events" in names else None


def migrate(engine: Engine, metadata: MetaData) -> int:
    """Create (from ``metadata``) or bring the receiver's tables up to ``SCHEMA_VERSION``;
    returns the version found (0: a fresh database). Raises ``SchemaVersionError``."""
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(sqlite_begin="IMMEDIATE")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        found = database_version(conn)
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database's schema is at version {found}, newer than this receiver's "
                f"{SCHEMA_VERSION}: run a receiver at least as new as the one that migrated it"
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
