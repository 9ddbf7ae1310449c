"""This server instance's lease on the database, and what the leases of all instances say.

Several server instances may share one PostgreSQL database. Each registers a row in
``instances`` at start and renews its lease (``lease_until``) every third of the lease
duration, from its scheduler's loop. The jobs an instance starts carry its id (``owner``), and
only it ends their attempts while its lease holds; once the lease has passed (the process was
killed, hung, or lost the database) any other instance ends them, at their due time or at
once if that is past. A clean stop gives the lease up, so nothing waits for it to run out.

The leases also say how many instances are live (the rate limit is shared among them) and which
one leads (the oldest live one: it alone sends the webhook channels' periodic heartbeats).

On a SQLite file only one server runs (``db.DatabaseLock``), so registering there ends the
leases of every earlier instance at once: they are known to be gone.
"""

from __future__ import annotations

import logging
import os
import socket

from sqlalchemy import bindparam, delete, exists, insert, or_, select, update

from .db import Database, sqlite_file
from .schema import instances, jobs

log = logging.getLogger(__name__)

FORGET_AFTER_S = 24 * 3600.0  # rows of instances gone this long are deleted

# A processing job is the instance ``:owner``'s to end when it started it, or when the instance
# that did has no lease at ``:now`` any more.
ENDED_BY = or_(
    jobs.c.owner == bindparam("owner"),
    jobs.c.owner.is_(None),
    ~exists(
        select(instances.c.id).where(
            instances.c.id == jobs.c.owner, instances.c.lease_until > bindparam("now")
        )
    ),
)


class Lease:
    """One instance's lease: registered, renewed, given up; and the live instances' count."""

    def __init__(self, database: Database, instance_id: str, *, lease_s: float) -> None:
        self._db = database
        self.id = instance_id
        self.lease_s = lease_s
        self._renewed_at = float("-inf")
        self.live = 1
        self.leader = True

    @property
    def renew_every(self) -> float:
        """How often the lease is renewed: three renewals fit in one lease."""
        return self.lease_s / 3

    def register(self, now: float) -> None:
        """Record this instance and its first lease."""
        with self._db.writer.begin() as conn:
            if sqlite_file(self._db.engine) is not None:
                conn.execute(update(instances).values(lease_until=0.0))
            conn.execute(
                insert(instances).values(
                    id=self.id,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                    started_at=now,
                    lease_until=now + self.lease_s,
                )
            )
        self._renewed_at = now
        self._look(now)

    def renew(self, now: float) -> None:
        """Extend the lease when a third of it has passed since the last renewal."""
        if now - self._renewed_at < self.renew_every:
            return
        with self._db.writer.begin() as conn:
            conn.execute(delete(instances).where(instances.c.lease_until < now - FORGET_AFTER_S))
            renewed = conn.execute(
                update(instances)
                .where(instances.c.id == self.id)
                .values(lease_until=now + self.lease_s)
            ).rowcount
        if not renewed:  # forgotten after a long outage: registered again
            self.register(now)
            return
        self._renewed_at = now
        self._look(now)

    def _look(self, now: float) -> None:
        with self._db.reader.connect() as conn:
            live = (
                conn.execute(
                    select(instances.c.id)
                    .where(instances.c.lease_until > now)
                    .order_by(instances.c.started_at, instances.c.id)
                )
                .scalars()
                .all()
            )
        self.live = max(1, len(live))
        self.leader = not live or live[0] == self.id

    def release(self) -> None:
        """Give the lease up (a clean stop): other instances take this one's jobs at once."""
        try:
            with self._db.writer.begin() as conn:
                conn.execute(
                    update(instances).where(instances.c.id == self.id).values(lease_until=0.0)
                )
        except Exception:  # the lease runs out by itself
            log.warning("giving up the lease of %s failed", self.id, exc_info=True)
