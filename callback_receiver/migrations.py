"""The receiver's schema (``service_common.migrations``): its version, and its migrations.

A schema change is a new function in ``MIGRATIONS`` and ``SCHEMA_VERSION`` raised to its key;
the tables in ``store.py`` describe the latest version, which is what a fresh database gets.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, MetaData

from service_common import migrations
from service_common.migrations import SchemaVersionError

COMPONENT = "receiver"
SCHEMA_VERSION = 2
FEED_CHANNEL = "vt_feed"
_LOCK_KEY = 7_316_041_603  # pg_advisory_xact_lock: one migrating receiver at a time


# PostgreSQL only: a statement inserting events notifies every receiver at commit (notify.py),
# with the writer's application_name (its instance id) as the payload.
def _install_notifications(conn: Connection) -> None:
    migrations.install_insert_notifications(conn, "vt_receiver_notify", {"events": FEED_CHANNEL})


MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _install_notifications}


def migrate(engine: Engine, metadata: MetaData) -> int:
    """Create (from ``metadata``) or bring the receiver's tables up to ``SCHEMA_VERSION``;
    returns the version found (0: a fresh database). Raises ``SchemaVersionError``."""
    schema = migrations.Schema(
        component=COMPONENT,
        version=SCHEMA_VERSION,
        metadata=metadata,
        marker="events",
        lock_key=_LOCK_KEY,
        migrations=MIGRATIONS,
        on_create=_install_notifications,
    )
    return migrations.migrate(engine, schema)


__all__ = ["SCHEMA_VERSION", "SchemaVersionError", "migrate"]
