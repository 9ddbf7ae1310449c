"""A schema's version, checked at every start and brought up to date by ordered migrations.

The database records each component's version (the server's tables and the receiver's may
share one database) in ``schema_version``. At start, in one transaction no other starting
instance can interleave with (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite):

- no tables yet: every table is created at the latest version;
- an older version: each migration after it runs, in order, then the row is updated;
- a newer version (the database was migrated by newer code): the start is refused with
  ``SchemaVersionError``, naming both versions, and nothing is changed;
- the tables without a version row: version 1, the first schema.

A service describes its schema with a ``Schema``; a change is a new function in its
``migrations`` and its ``version`` raised to that function's key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, inspect, text

version_table = Table(
    "schema_version",
    MetaData(),
    Column("component", String(40), primary_key=True),
    Column("version", Integer, nullable=False),
)


class SchemaVersionError(RuntimeError):
    """The database's schema is newer than this code knows."""


@dataclasses.dataclass(frozen=True)
class Schema:
    """One component's tables: what a fresh database gets, and how older ones catch up."""

    component: str  # its row in schema_version, and its name in errors ("server")
    version: int
    metadata: MetaData  # the tables at ``version``
    marker: str  # a table whose presence without a version row means version 1
    lock_key: int  # pg_advisory_xact_lock: one migrating instance at a time
    migrations: Mapping[int, Callable[[Connection], None]]  # version -> its change
    on_create: Callable[[Connection], None] = lambda conn: None  # after the tables, when fresh


def install_insert_notifications(
    conn: Connection, function: str, triggers: Mapping[str, str]
) -> None:
    """PostgreSQL only: a statement inserting into each table of ``triggers`` (table ->
    channel) notifies its channel at commit, with the writer's ``application_name`` (its
    instance id) as the payload; the trigger function is called ``function``."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "  PERFORM pg_notify(TG_ARGV[0], current_setting('application_name'));\n"
            "  RETURN NULL;\n"
            "END $$"
        )
    )
    for table, channel in triggers.items():
        conn.execute(text(f"DROP TRIGGER IF EXISTS {channel}_notify ON {table}"))
        conn.execute(
            text(
                f"CREATE TRIGGER {channel}_notify AFTER INSERT ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}('{channel}')"
            )
        )


def database_version(conn: Connection, schema: Schema) -> int | None:
    """The version recorded in the database; 1 for tables without one; None for no tables."""
    names = set(inspect(conn).get_table_names())
    if version_table.name in names:
        found = conn.execute(
            version_table.select().where(version_table.c.component == schema.component)
        ).first()
        if found is not None:
            return int(found.version)
    return 1 if schema.marker in names else None


def migrate(engine: Engine, schema: Schema) -> int:
    """Create or bring the component's tables up to its version; returns the version found
    (0 for a fresh database). Raises ``SchemaVersionError`` for a newer schema."""
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(sqlite_begin="IMMEDIATE")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": schema.lock_key})
        found = database_version(conn, schema)
        name, latest = schema.component, schema.version
        if found is not None and found > latest:
            raise SchemaVersionError(
                f"the database's schema is at version {found}, newer than this {name}'s "
                f"{latest}: run a {name} at least as new as the one that migrated it"
            )
        if found == latest:
            return found
        if found is None:
            schema.metadata.create_all(conn)
            schema.on_create(conn)
        else:
            for version in range(found + 1, latest + 1):
                schema.migrations[version](conn)
        version_table.create(conn, checkfirst=True)
        conn.execute(version_table.delete().where(version_table.c.component == name))
        conn.execute(version_table.insert().values(component=name, version=latest))
        return found or 0
