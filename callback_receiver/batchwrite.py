"""One transaction that stores a batch of verified webhooks: events, final job states, channel
heartbeats and the receipts of every POST, each kind in as few statements as it allows.

The transaction first bumps the ``feed_lock`` row, so batches (of this process and of any other
on the same database) are serialized and a cursor's order is commit order. De-duplication by
``webhook-id`` is the database's: the events are inserted with ``ON CONFLICT DO NOTHING``
(SQLAlchemy's public insert construct of the dialect, SQLite or PostgreSQL) and ``RETURNING``
names the rows actually inserted, so a webhook already stored, by this process or another, is a
duplicate without a look-up. Two copies of one webhook in the same batch are told apart in
memory first: the first is stored, the second is a duplicate, exactly as if it had come a moment
later. A job's first final event makes it final the same way (``job_states``' primary key).

Statements per batch, whatever its size: the lock, the events, the final states (when any), the
receipts (when any), and every ``RECEIPTS_PRUNE_EVERY`` batches a prune of the receipts. Each
is built once per process (per dialect), not per batch: building a statement and its cache key
costs more CPU than running it from SQLAlchemy's compiled cache.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from client_lib.models import HEARTBEAT_TYPE, JobStatus

from .store import (
    ID_LENGTH,
    Receipt,
    StoredEvent,
    channel_heartbeats,
    events,
    feed_lock,
    job_states,
    receipts,
)

RECEIPTS_KEPT = 1000
RECEIPTS_PRUNE_EVERY = 50  # batches; at most KEPT + PRUNE_EVERY x batch size receipts are kept

_BUMP = (
    update(feed_lock)
    .where(feed_lock.c.id == 1)
    .values(writes=feed_lock.c.writes + 1)
    .returning(feed_lock.c.writes)
)
_ADD_RECEIPTS = insert(receipts)
_PRUNE_RECEIPTS = delete(receipts).where(
    receipts.c.id <= select(func.max(receipts.c.id)).scalar_subquery() - bindparam("kept")
)
_RECEIPT_FIELDS = tuple(f.name for f in dataclasses.fields(Receipt))


@dataclasses.dataclass(frozen=True, slots=True)
class EventWrite:
    """A verified job event to store (once per ``webhook_id``)."""

    webhook_id: str
    job_id: str
    type: str
    final_status: JobStatus | None
    payload: str
    received_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class HeartbeatWrite:
    """A verified heartbeat: refresh its channel; fed too when ``digest`` says something new."""

    webhook_id: str
    endpoint: str
    client_id: str
    seq: int
    digest: str | None
    payload: str
    received_at: float


Write = EventWrite | HeartbeatWrite | Receipt  # a Receipt alone: a refused POST, logged


@dataclasses.dataclass(frozen=True, slots=True)
class BatchResult:
    """What one committed batch did: its transaction's number (``feed_lock.writes``), a cursor
    per write (in the batch's order; None for a duplicate event, a heartbeat that only
    refreshed its channel, or a refused POST's receipt) and the events it added to the feed,
    in cursor order."""

    writes: int
    cursors: list[int | None]
    fed: list[StoredEvent]


def write_batch(conn: Connection, batch: Sequence[Write]) -> BatchResult:
    """Store ``batch`` on ``conn``, inside the caller's write transaction."""
    number = conn.execute(_BUMP).scalar_one()
    cursors: list[int | None] = [None] * len(batch)
    fed: list[StoredEvent] = []
    event_rows = [(n, w) for n, w in enumerate(batch) if isinstance(w, EventWrite)]
    if event_rows:
        for n, stored in _insert_events(conn, event_rows):
            cursors[n] = stored.seq
            fed.append(stored)
        _finalize_jobs(conn, [(w, cursors[n]) for n, w in event_rows])
    for n, write in enumerate(batch):
        if isinstance(write, HeartbeatWrite):
            stored_beat = _keep_heartbeat(conn, write)
            if stored_beat is not None:
                cursors[n] = stored_beat.seq
                fed.append(stored_beat)
    _add_receipts(conn, [_receipt(w, c) for w, c in zip(batch, cursors, strict=True)], number)
    return BatchResult(writes=number, cursors=cursors, fed=fed)


@functools.cache
def _insert_new(dialect: str, table: Table, key: str, *returning: str) -> Any:
    """``INSERT`` that skips a row whose ``key`` is already taken (the dialect's upsert),
    returning these columns of the rows inserted."""
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
    else:
        raise NotImplementedError(f"the receiver stores on SQLite or PostgreSQL, not {dialect}")
    return statement.returning(*(table.c[name] for name in returning)) if returning else statement


def _insert_events(
    conn: Connection, rows: list[tuple[int, EventWrite]]
) -> list[tuple[int, StoredEvent]]:
    """Insert each webhook not stored yet, its first copy only; (batch index, event) of each."""
    first: dict[str, tuple[int, EventWrite]] = {}
    for n, write in rows:
        first.setdefault(write.webhook_id, (n, write))  # a second copy here is a duplicate
    values = [
        {
            "webhook_id": w.webhook_id,
            "job_id": w.job_id,
            "type": w.type,
            "received_at": w.received_at,
            "payload": w.payload,
        }
        for _, w in first.values()
    ]
    statement = _insert_new(conn.dialect.name, events, "webhook_id", "seq", "webhook_id")
    stored = sorted((seq, wid) for seq, wid in conn.execute(statement, values))  # by cursor
    out = []
    for seq, webhook_id in stored:
        n, w = first[webhook_id]
        out.append((n, StoredEvent(seq, w.webhook_id, w.job_id, w.type, w.received_at, w.payload)))
    return out


def _finalize_jobs(conn: Connection, stored: list[tuple[EventWrite, int | None]]) -> None:
    """A job's first final event makes it final; a final job never changes again."""
    first: dict[str, dict[str, Any]] = {}
    for write, seq in stored:
        if seq is not None and write.final_status is not None and write.job_id not in first:
            first[write.job_id] = {
                "job_id": write.job_id,
                "status": write.final_status.value,
                "event_seq": seq,
                "updated_at": write.received_at,
            }
    if first:  # a job already final keeps its first final event
        conn.execute(_insert_new(conn.dialect.name, job_states, "job_id"), list(first.values()))


def _keep_heartbeat(conn: Connection, beat: HeartbeatWrite) -> StoredEvent | None:
    """Keep a channel's latest heartbeat; when it says something new, feed it too."""
    key = and_(
        channel_heartbeats.c.endpoint == beat.endpoint,
        channel_heartbeats.c.client_id == beat.client_id,
    )
    known = conn.execute(select(channel_heartbeats.c.digest).where(key)).scalar()
    fresh = {"seq": beat.seq, "digest": beat.digest or known or "", "received_at": beat.received_at}
    if known is None:
        conn.execute(
            insert(channel_heartbeats).values(
                endpoint=beat.endpoint, client_id=beat.client_id, **fresh
            )
        )
    else:
        conn.execute(update(channel_heartbeats).where(key).values(**fresh))
    if beat.digest is None or known == beat.digest:
        return None
    taken = select(events.c.seq).where(events.c.webhook_id == beat.webhook_id)
    if conn.execute(taken).first() is not None:
        return None
    fed = StoredEvent(0, beat.webhook_id, "", HEARTBEAT_TYPE, beat.received_at, beat.payload)
    values = dataclasses.asdict(fed)
    del values["seq"]
    seq = conn.execute(insert(events).values(**values).returning(events.c.seq)).scalar_one()
    return dataclasses.replace(fed, seq=seq)


def _receipt(write: Write, cursor: int | None) -> Receipt | None:
    if isinstance(write, Receipt):
        return write
    if isinstance(write, HeartbeatWrite):
        return None  # the page lists webhooks, not the channel's heartbeats
    return Receipt(
        received_at=write.received_at,
        webhook_id=write.webhook_id,
        job_id=write.job_id,
        type=write.type,
        result="verified",
        status=204,
        duplicate=cursor is None,
    )


def _add_receipts(conn: Connection, batch: list[Receipt | None], number: int) -> None:
    """Insert the receipts; every ``RECEIPTS_PRUNE_EVERY``-th batch keeps only the newest
    ``RECEIPTS_KEPT``."""
    rows = [{f: getattr(r, f) for f in _RECEIPT_FIELDS} for r in batch if r is not None]
    for row in rows:
        if row["webhook_id"] is not None:
            row["webhook_id"] = row["webhook_id"][:ID_LENGTH]
    if rows:
        conn.execute(_ADD_RECEIPTS, rows)
    if number % RECEIPTS_PRUNE_EVERY == 0:
        conn.execute(_PRUNE_RECEIPTS, {"kept": RECEIPTS_KEPT})
