"""The server's schema (``service_common.migrations``): its version, and its migrations.

A schema change is a new function in ``MIGRATIONS`` and ``SCHEMA_VERSION`` raised to its key;
``schema.py`` describes the latest version, which is what a fresh database gets.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

from service_common import migrations
from service_common.migrations import SchemaVersionError, version_table

from .schema import instances, metadata

COMPONENT = "server"
SCHEMA_VERSION = 2
_LOCK_KEY = 7_316_041_602  # pg_advisory_xact_lock: one migrating server at a time

# PostgreSQL only: inserts of jobs and outbox rows notify the other instances at commit (see
# notify.py); the payload is the writer's application_name, its instance id.
NOTIFY_TRIGGERS = {"jobs": "vt_jobs", "webhook_events": "vt_outbox"}


def _install_notifications(conn: Connection) -> None:
    migrations.install_insert_notifications(conn, "vt_server_notify", NOTIFY_TRIGGERS)


def _v2(conn: Connection) -> None:
    """Jobs name the instance running them; instances hold leases; inserts notify."""
    conn.execute(text("ALTER TABLE jobs ADD COLUMN owner VARCHAR(40)"))
    instances.create(conn, checkfirst=True)
    _install_notifications(conn)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _v2}


SCHEMA = migrations.Schema(
    component=COMPONENT,
    version=SCHEMA_VERSION,
    metadata=metadata,
    marker="jobs",
    lock_key=_LOCK_KEY,
    migrations=MIGRATIONS,
    on_create=_install_notifications,
)


def migrate(engine: Engine) -> int:
    """Create or bring the server's tables up to ``SCHEMA_VERSION``; returns the version found
    (0 for a fresh database). Raises ``SchemaVersionError`` for a newer schema."""
    return migrations.migrate(engine, SCHEMA)


__all__ = ["SCHEMA_VERSION", "SchemaVersionError", "migrate", "version_table"]
