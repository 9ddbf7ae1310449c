"""The receiver's durable store: SQLAlchemy Core tables, one code path for SQLite and PostgreSQL.

- ``events``: every distinct webhook, in arrival order; ``seq`` is the feed cursor and
  ``webhook_id`` is UNIQUE, so a redelivery is refused by the database, not by a prior look-up.
- ``job_states``: one row per job, written by the job's FIRST final event and never updated:
  the primary key is the guard that keeps a late or out-of-order event from changing a final job.
- ``receipts``: a bounded log of every POST (verified or why not, duplicate or not) for the page.
- ``feed_lock``: one row every write transaction (``batchwrite``) updates first, so event
  inserts are serialized and ``seq`` order is commit order on PostgreSQL too (a reader that has
  seen cursor N can never later miss an event N-1 committed after it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from client_lib.models import format_time

from .db import make_engine
from .migrations import migrate

ID_LENGTH = 255
TYPE_LENGTH = 100
ENDPOINT_LENGTH = 2048
CHANNELS_SHOWN_S = 300.0  # the feed lists channels heard from this recently

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", String(ID_LENGTH), nullable=False, unique=True),
    Column("job_id", String(ID_LENGTH), nullable=False),
    Column("type", String(TYPE_LENGTH), nullable=False),
    Column("received_at", Float, nullable=False),
    # The verified body exactly as signed (served back parsed).
    Column("payload", Text, nullable=False),
    Index("ix_events_job_seq", "job_id", "seq"),
    # AUTOINCREMENT: a cursor value is never reused, even if rows were ever removed.
    sqlite_autoincrement=True,
)

job_states = Table(
    "job_states",
    metadata,
    Column("job_id", String(ID_LENGTH), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("event_seq", Integer, ForeignKey("events.seq"), nullable=False),
    Column("updated_at", Float, nullable=False),
)

receipts = Table(
    "receipts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False),
    Column("webhook_id", String(ID_LENGTH)),
    Column("job_id", String(ID_LENGTH)),
    Column("type", String(TYPE_LENGTH)),
    Column("result", String(64), nullable=False),  # "verified" or the rejection code
    Column("status", Integer, nullable=False),
    Column("duplicate", Boolean, nullable=False),
)

# The latest heartbeat of each webhook channel (an endpoint of the translation server's). A
# heartbeat that says something new (its ``digest`` differs) is also stored as a feed event.
channel_heartbeats = Table(
    "channel_heartbeats",
    metadata,
    Column("endpoint", String(ENDPOINT_LENGTH), primary_key=True),
    # one endpoint may serve several clients of the server: each has a channel of its own
    Column("client_id", String(ID_LENGTH), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("received_at", Float, nullable=False),
)

feed_lock = Table(
    "feed_lock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("writes", Integer, nullable=False),
)


# The feed's reads on every sync, built once (building a statement costs more than running it)
_TAIL_AFTER = (
    select(feed_lock.c.writes, *events.c)
    .select_from(feed_lock.outerjoin(events, events.c.seq > bindparam("after")))
    .where(feed_lock.c.id == 1)
    .order_by(events.c.seq)
    .limit(bindparam("limit"))
)
_CHANNELS_SINCE = select(channel_heartbeats).where(
    channel_heartbeats.c.received_at > bindparam("since")
)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored webhook event."""

    seq: int
    webhook_id: str
    job_id: str
    type: str
    received_at: float
    payload: str

    @classmethod
    def from_row(cls, row: RowMapping) -> StoredEvent:
        """Build from an ``events`` row."""
        return cls(
            seq=row["seq"],
            webhook_id=row["webhook_id"],
            job_id=row["job_id"],
            type=row["type"],
            received_at=row["received_at"],
            payload=row["payload"],
        )

    def to_wire(self) -> dict[str, Any]:
        """The feed's JSON form (docs/api.md): ``seq`` only on numbered channel events."""
        body = json.loads(self.payload)
        out = {
            "cursor": str(self.seq),
            "webhook_id": self.webhook_id,
            "received_at": format_time(self.received_at),
            "type": self.type,
            "data": body.get("data"),
        }
        if isinstance(body.get("seq"), int):
            out["seq"] = body["seq"]
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelState:
    """The latest heartbeat of one webhook channel."""

    endpoint: str
    client_id: str
    seq: int
    received_at: float

    def to_wire(self, now: float) -> dict[str, Any]:
        """The feed's ``channels`` entry."""
        return {
            "endpoint": self.endpoint,
            "client_id": self.client_id,
            "seq": self.seq,
            "received_at": format_time(self.received_at),
            "age_s": round(max(0.0, now - self.received_at), 3),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Receipt:
    """One POST /webhooks as the page lists it."""

    received_at: float
    webhook_id: str | None
    job_id: str | None
    type: str | None
    result: str
    status: int
    duplicate: bool


class Store:
    """Reads the receiver's tables; its writes are ``batchwrite``'s, in ``begin_write()``."""

    def __init__(self, url: str, *, pool_size: int = 16, name: str | None = None) -> None:
        self._engine = make_engine(url, pool_size=pool_size, name=name)
        self._writer = (
            self._engine.execution_options(sqlite_begin="IMMEDIATE")
            if self._engine.dialect.name == "sqlite"
            else self._engine
        )
        migrate(self._engine, metadata)  # raises SchemaVersionError for a newer schema
        try:
            with self._writer.begin() as conn:
                if conn.execute(select(feed_lock.c.id)).first() is None:
                    conn.execute(insert(feed_lock).values(id=1, writes=0))
        except IntegrityError:
            pass  # another process seeded it first

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def ping(self) -> None:
        """Raise SQLAlchemyError unless the database answers."""
        with self._engine.connect() as conn:
            conn.execute(select(feed_lock.c.writes)).first()

    def begin_write(self) -> AbstractContextManager[Connection]:
        """A write transaction (on SQLite it takes the write lock at once: BEGIN IMMEDIATE);
        ``batchwrite`` writes through it."""
        return self._writer.begin()

    def final_jobs(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs have a final event stored."""
        if not job_ids:
            return set()
        query = select(job_states.c.job_id).where(job_states.c.job_id.in_(list(job_ids)))
        with self._engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def channels(self, now: float) -> list[ChannelState]:
        """The channels heard from in the last ``CHANNELS_SHOWN_S`` seconds."""
        with self._engine.connect() as conn:
            rows = conn.execute(_CHANNELS_SINCE, {"since": now - CHANNELS_SHOWN_S})
            return [ChannelState(r.endpoint, r.client_id, r.seq, r.received_at) for r in rows]

    def events_after(
        self, after: int, *, jobs: Collection[str] | None = None, limit: int = 100
    ) -> list[StoredEvent]:
        """Events with a cursor above ``after``, oldest first, optionally for some jobs only
        (a heartbeat's job id is "")."""
        query = select(events).where(events.c.seq > after)
        if jobs is not None:
            query = query.where(events.c.job_id.in_(sorted(jobs)))
        query = query.order_by(events.c.seq).limit(limit)
        with self._engine.connect() as conn:
            return [StoredEvent.from_row(r) for r in conn.execute(query).mappings()]

    def last_cursor(self) -> int:
        """The cursor of the newest event (0 when there is none)."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())

    def tail_after(self, after: int, *, limit: int) -> tuple[int, list[StoredEvent]]:
        """How many write transactions have committed (``feed_lock.writes``) and the events
        after ``after``, oldest first, at most ``limit``: one statement, so those events are
        exactly the ones those transactions stored (up to the limit)."""
        with self._engine.connect() as conn:
            rows = conn.execute(_TAIL_AFTER, {"after": after, "limit": limit}).mappings().all()
        found = [StoredEvent.from_row(r) for r in rows if r["seq"] is not None]
        return int(rows[0]["writes"]), found

    def final_event(self, job_id: str) -> StoredEvent | None:
        """The event that made ``job_id`` final, if one was received."""
        query = (
            select(events)
            .join(job_states, job_states.c.event_seq == events.c.seq)
            .where(job_states.c.job_id == job_id)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return StoredEvent.from_row(row) if row is not None else None

    def receipts(self, *, limit: int = 200) -> list[Receipt]:
        """The latest receipts, newest first."""
        query = select(receipts).order_by(receipts.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        fields = [f.name for f in dataclasses.fields(Receipt)]
        return [Receipt(**{f: r[f] for f in fields}) for r in rows]

    def count_events(self) -> int:
        """How many distinct events are stored."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())
