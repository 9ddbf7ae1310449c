"""The store: every table of the server, and the only code that writes a job's state.

SQLAlchemy Core (tables and query constructs, no ORM), so one code path serves SQLite and
PostgreSQL. Every state change is an UPDATE guarded by ``states.TRANSITIONS``; a final state and
its webhook outbox row are written in one transaction ("persist, then notify").
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from client_lib.models import EventType

from . import resources
from .db import Writer, compiled_sql, lock_database, make_engine, point_reader, reader
from .jobcache import JobCache
from .states import InvalidTransition, State, sources_of

log = logging.getLogger(__name__)

metadata = MetaData()

clients = Table(
    "clients",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("api_key_hash", String(64), nullable=False, unique=True),
    Column("webhook_secret", String(100), nullable=False),
    Column("previous_secret", String(100)),
    Column("previous_secret_until", Float),
    Column("created_at", Float, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("client_id", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("target_language", String(35)),
    Column("source_url", Text),
    Column("callback_url", Text),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("due_at", Float),
    # The simulation's secrets: the drawn duration and the estimator's distortion factor.
    Column("duration_s", Float, nullable=False),
    Column("estimate_factor", Float, nullable=False),
    # Attempts that fail before one succeeds (>= max_attempts: the job ends in error).
    Column("planned_failures", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("webhook_mode", String(16)),
    Column("progress", Float),
    Column("result", Text),
    Column("error", Text),
    Column("version", Integer, nullable=False, default=1),
    Index("ix_jobs_client_seq", "client_id", "seq"),
    Index("ix_jobs_state_due", "state", "due_at"),
    Index("ix_jobs_state_priority_seq", "state", "priority", "seq"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("client_id", String(40), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
)

# The webhook outbox: one row per event, written with the final state; delivery.py drains it.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job_id", String(40), nullable=False, index=True),
    Column("client_id", String(40), nullable=False),
    Column("type", String(32), nullable=False),
    Column("callback_url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("mode", String(16), nullable=False, default="deliver"),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),
    Column("lease_until", Float),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("ix_webhook_events_state_next", "state", "next_attempt_at"),
)

# The webhook channel of an endpoint (a client's callback URL) that asked for channel events:
# every job event to it carries the next number of ``last_seq``, and ``channel_events`` maps
# each number to its outbox event, which is what the heartbeats of ``channel.py`` report.
channels = Table(
    "channels",
    metadata,
    Column("client_id", String(40), primary_key=True),
    Column("callback_url", Text, primary_key=True),
    Column("last_seq", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("last_event_at", Float),
)

channel_events = Table(
    "channel_events",
    metadata,
    Column("client_id", String(40), primary_key=True),
    Column("callback_url", Text, primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("event_id", String(40), nullable=False),
    Column("job_id", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, index=True),
    Column("job_id", String(40), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", Float, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("latency_ms", Float),
    Column("outcome", String(16), nullable=False),
    Column("next_attempt_at", Float),
)

IDEMPOTENCY_WINDOW_S = 24 * 3600
_CLIENT_CACHE_TTL_S = 5.0
# Processing attempts ended per transaction by finish_due.
FINISH_BATCH = 500

# The hot reads, built once: constructing a Core statement and its cache key on every call
# cost more than running it (the compiled form is cached by SQLAlchemy either way).
_JOB_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_JOBS_OF_CLIENT = select(jobs).where(
    jobs.c.client_id == bindparam("client_id"), jobs.c.id.in_(bindparam("ids", expanding=True))
)
_JOBS_BY_IDS = select(jobs).where(jobs.c.id.in_(bindparam("ids", expanding=True)))
_DUE_FOR_UPDATE = (
    select(jobs)
    .where(jobs.c.state == State.PROCESSING.value, jobs.c.due_at <= bindparam("now"))
    .order_by(jobs.c.due_at)
    .limit(bindparam("batch"))
    .with_for_update(skip_locked=True)
)
_JOB_COLUMN = {name: n for n, name in enumerate(jobs.c.keys())}
_STATE, _METADATA, _RESULT, _ERROR = (
    _JOB_COLUMN[name] for name in ("state", "metadata", "result", "error")
)
_CLIENT_COLUMNS = [c for c in clients.c if c.name != "api_key_hash"]
_CLIENT_BY_KEY = select(*_CLIENT_COLUMNS).where(clients.c.api_key_hash == bindparam("key_hash"))
_ESTIMATED_END = jobs.c.started_at + jobs.c.duration_s * jobs.c.estimate_factor
_QUEUED_KEYS = (
    select(jobs.c.priority, jobs.c.seq)
    .where(jobs.c.state == State.QUEUED.value)
    .order_by(jobs.c.priority.desc(), jobs.c.seq)
    .limit(bindparam("limit"))
)
_SLOT_ENDS = (
    select(_ESTIMATED_END)
    .where(jobs.c.state == State.PROCESSING.value)
    .order_by(_ESTIMATED_END)
    .limit(bindparam("slots"))
)
_PROCESSING_COUNT = (
    select(func.count()).select_from(jobs).where(jobs.c.state == State.PROCESSING.value)
)


def hash_api_key(api_key: str) -> str:
    """API keys are 256-bit random tokens, so one SHA-256 is a sufficient one-way hash."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_webhook_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes, as Standard Webhooks specifies."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_id(prefix: str) -> str:
    """An opaque, URL-safe, unguessable identifier."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


@dataclasses.dataclass(frozen=True, slots=True)
class ClientRecord:
    """A tenant."""

    id: str
    name: str
    webhook_secret: str
    previous_secret: str | None
    previous_secret_until: float | None
    created_at: float

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets to sign with now: the current one, plus the old one during its grace."""
        out = [self.webhook_secret]
        if self.previous_secret and (self.previous_secret_until or 0) > now:
            out.append(self.previous_secret)
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class JobRecord:
    """A job row, as the store hands it out."""

    seq: int
    id: str
    client_id: str
    state: State
    priority: int
    target_language: str | None
    source_url: str | None
    callback_url: str | None
    metadata: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    due_at: float | None
    duration_s: float
    estimate_factor: float
    planned_failures: int
    max_attempts: int
    attempts: int
    webhook_mode: str | None
    progress: float | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    version: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> JobRecord:
        """Decode a row of every ``jobs`` column in table order (JSON columns included).

        Positional: the fields are declared in the table's column order (a unit test holds
        them together), which saves building a mapping per row on the hot read path.
        """
        values = list(row)
        values[_STATE] = State(values[_STATE])
        values[_METADATA] = json.loads(values[_METADATA] or "{}")
        for n in (_RESULT, _ERROR):
            values[n] = json.loads(values[n]) if values[n] else None
        return cls(*values)

    @property
    def estimated_duration(self) -> float:
        """What the estimator believes the duration is (never the drawn one)."""
        return self.duration_s * self.estimate_factor


@dataclasses.dataclass(frozen=True, slots=True)
class QueueView:
    """The queue as one consistent read saw it: what the estimator needs for queued jobs."""

    queued: list[tuple[int, int]]  # (-priority, seq) of queued jobs, in claim order
    complete: bool  # False when more jobs are queued than ``queued`` holds
    slot_ends: list[float]  # estimated ends of the first processing attempts, soonest first
    processing: int  # processing attempts in all


@dataclasses.dataclass(frozen=True, slots=True)
class NewJob:
    """Everything needed to insert a job: the caller's fields and the simulation's plan."""

    client_id: str
    priority: int
    target_language: str | None
    source_url: str | None
    callback_url: str | None
    metadata: dict[str, Any]
    duration_s: float
    estimate_factor: float
    planned_failures: int
    max_attempts: int
    webhook_mode: str | None


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with another request body."""


# What happens to a job's webhook: (mode, seconds to hold it back); see Simulator.webhook_fault.
WebhookFault = Callable[[JobRecord], tuple[str, float]]


def _no_fault(job: JobRecord) -> tuple[str, float]:
    return job.webhook_mode or "deliver", 0.0


def encode_cursor(seq: int) -> str:
    """An opaque list cursor."""
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The position behind a cursor, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(raw[1:]) if raw.startswith("s") else None
    except (ValueError, UnicodeDecodeError):
        return None


def _attempt_end(job: JobRecord, now: float) -> tuple[State, dict[str, Any]]:
    """How a processing attempt ends: the target state and the columns it sets."""
    if job.attempts > job.planned_failures:
        result = {"video_url": f"https://cdn.vt.local/{job.id}/{job.target_language}.mp4"}
        return State.COMPLETED, _final_values(now, 1.0, result, None)
    if job.attempts < job.max_attempts:
        return State.QUEUED, {"started_at": None, "due_at": None}
    error = {
        "code": "translation_failed",
        "message": f"simulated translation failure after {job.attempts} attempt(s)",
    }
    return State.ERROR, _final_values(now, resources.estimated_progress(job, now), None, error)


def _final_values(
    now: float, progress: float, result: dict[str, Any] | None, error: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "finished_at": now,
        "due_at": None,
        "progress": progress,
        "result": result,
        "error": error,
    }


def _column_value(value: Any) -> Any:
    """A value as its column stores it (the JSON columns as text)."""
    return json.dumps(value) if isinstance(value, dict) else value


def _outbox_row(final: JobRecord, now: float, fault: WebhookFault) -> dict[str, Any] | None:
    """The webhook outbox row announcing a final job; None when it has no callback."""
    if not final.callback_url:
        return None
    event_type = EventType.for_status(final.state.status)
    body = resources.webhook_body(final, event_type, now)
    mode, delay = fault(final)
    return {
        "id": new_id("msg"),
        "job_id": final.id,
        "client_id": final.client_id,
        "type": event_type.value,
        "callback_url": final.callback_url,
        "payload": body,
        "mode": mode,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now + delay,
        "created_at": now,
    }


def _open_channel(conn: Connection, client_id: str, callback_url: str, now: float) -> None:
    """Subscribe an endpoint to channel events (a no-op when it already is)."""
    dialect = conn.dialect.name
    values = {
        "client_id": client_id,
        "callback_url": callback_url,
        "last_seq": 0,
        "created_at": now,
    }
    if dialect in ("sqlite", "postgresql"):
        module = sqlite_dialect if dialect == "sqlite" else postgresql_dialect
        conn.execute(module.insert(channels).values(**values).on_conflict_do_nothing())
        return
    found = conn.execute(
        select(channels.c.last_seq).where(
            channels.c.client_id == client_id, channels.c.callback_url == callback_url
        )
    ).first()
    if found is None:
        conn.execute(insert(channels).values(**values))


def _number_channel_events(conn: Connection, rows: list[dict[str, Any]], now: float) -> None:
    """Give each outbox row bound for a channel endpoint the endpoint's next sequence number.

    The number goes into the signed body (``"seq"``) and into ``channel_events``; rows for
    endpoints without a channel are left as they are. One UPDATE per endpoint in the batch.
    """
    by_endpoint: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_endpoint.setdefault((row["client_id"], row["callback_url"]), []).append(row)
    links = []
    for (client_id, url), group in by_endpoint.items():
        last = conn.execute(
            update(channels)
            .where(channels.c.client_id == client_id, channels.c.callback_url == url)
            .values(last_seq=channels.c.last_seq + len(group), last_event_at=now)
            .returning(channels.c.last_seq)
        ).scalar()
        if last is None:
            continue
        for seq, row in enumerate(group, start=last - len(group) + 1):
            body = json.loads(row["payload"])
            numbered = {"type": body["type"], "timestamp": body["timestamp"], "seq": seq}
            row["payload"] = json.dumps({**numbered, "data": body["data"]}, separators=(",", ":"))
            links.append(
                {
                    "client_id": client_id,
                    "callback_url": url,
                    "seq": seq,
                    "event_id": row["id"],
                    "job_id": row["job_id"],
                    "created_at": now,
                }
            )
    if links:
        conn.execute(insert(channel_events), links)


class Store:
    """All persistence of the translation server."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        # A SQLite file is this process's alone (or this raises DatabaseInUse): then every
        # job write is this store's, and pending jobs can be answered from memory.
        self._lock = lock_database(self.engine)
        try:
            self.writer = Writer(self.engine)
            self._reader = reader(self.engine)
            metadata.create_all(self.engine)
            # The job-by-id read, on SQLite files, goes straight to sqlite3 (see PointReader).
            self._point = point_reader(self.engine)
            self._job_by_id_sql = compiled_sql(self.engine, _JOB_BY_ID)
        except BaseException:
            self.close()
            raise
        self.jobs = JobCache(pending=self.sole_writer)
        self._client_cache: dict[str, tuple[float, ClientRecord | None]] = {}
        self._cache_lock = threading.Lock()
        self._change_counter = itertools.count(1)
        self.queue_version = 0

    def close(self) -> None:
        """Release every pooled connection, then the database itself."""
        self.engine.dispose()
        reader_engine = getattr(self, "_reader", self.engine)
        if reader_engine is not self.engine:
            reader_engine.dispose()
        point = getattr(self, "_point", None)
        if point is not None:
            point.close()
        if self._lock is not None:
            self._lock.release()

    @property
    def sole_writer(self) -> bool:
        """Whether every write to the database is this store's (a SQLite file it locked)."""
        return self._lock is not None

    def _jobs_written(self, job_ids: Iterable[str]) -> None:
        """Note, after its commit, a write that changed these jobs (or created them).

        The job cache forgets them. Readers that keep a view of the queue (the estimator)
        compare ``queue_version``: it only grows. Writes by other server instances are not
        seen here: such views also age out, and such stores keep no pending jobs.
        """
        self.jobs.written(job_ids)
        self.queue_version = next(self._change_counter)

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(select(1)).scalar_one()

    # ----------------------------------------------------------------- clients

    def create_client(
        self, name: str, *, client_id: str | None = None, api_key: str | None = None
    ) -> tuple[ClientRecord, str]:
        """Create a tenant; returns it with its API key (shown once, stored hashed)."""
        api_key = api_key or "vt_" + secrets.token_urlsafe(32)
        record = ClientRecord(
            id=client_id or new_id("cli"),
            name=name,
            webhook_secret=new_webhook_secret(),
            previous_secret=None,
            previous_secret_until=None,
            created_at=time.time(),
        )
        with self.writer.begin() as conn:
            conn.execute(
                insert(clients).values(
                    api_key_hash=hash_api_key(api_key), **dataclasses.asdict(record)
                )
            )
        return record, api_key

    def get_client(self, client_id: str) -> ClientRecord | None:
        """One tenant by id."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(*_CLIENT_COLUMNS).where(clients.c.id == client_id))
                .mappings()
                .first()
            )
        return ClientRecord(**row) if row else None

    def client_by_api_key(self, api_key: str) -> ClientRecord | None:
        """The tenant owning ``api_key``; cached briefly, as every request asks."""
        key_hash = hash_api_key(api_key)
        now = time.monotonic()
        cached = self._client_cache.get(key_hash)
        if cached and cached[0] > now:
            return cached[1]
        with self._reader.connect() as conn:
            row = conn.execute(_CLIENT_BY_KEY, {"key_hash": key_hash}).mappings().first()
        record = ClientRecord(**row) if row else None
        with self._cache_lock:
            if len(self._client_cache) > 10_000:
                self._client_cache.clear()
            self._client_cache[key_hash] = (now + _CLIENT_CACHE_TTL_S, record)
        return record

    def list_clients(self) -> list[ClientRecord]:
        """Every tenant, oldest first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(select(*_CLIENT_COLUMNS).order_by(clients.c.created_at))
                .mappings()
                .all()
            )
        return [ClientRecord(**row) for row in rows]

    def rotate_secret(self, client_id: str, *, grace_s: float) -> ClientRecord | None:
        """Give a tenant a new signing secret; the old one still signs for ``grace_s``."""
        with self.writer.begin() as conn:
            row = conn.execute(
                select(clients.c.webhook_secret).where(clients.c.id == client_id)
            ).first()
            if row is None:
                return None
            conn.execute(
                update(clients)
                .where(clients.c.id == client_id)
                .values(
                    webhook_secret=new_webhook_secret(),
                    previous_secret=row.webhook_secret,
                    previous_secret_until=time.time() + grace_s,
                )
            )
        with self._cache_lock:
            self._client_cache.clear()
        return self.get_client(client_id)

    # -------------------------------------------------------------- job writes

    def create_job(
        self,
        new: NewJob,
        *,
        now: float,
        idempotency: tuple[str, str] | None = None,
        channel: bool = False,
    ) -> tuple[JobRecord, bool]:
        """Insert a job; with (key, request hash) a repeat returns the first job and False.

        ``channel``: the job's callback endpoint asks for channel events (see ``channel.py``).
        """
        try:
            return self._create_job(new, now=now, idempotency=idempotency, channel=channel)
        except IntegrityError:
            # A concurrent request with the same key won the race: answer as a repeat.
            if idempotency is None:
                raise
            return self._create_job(new, now=now, idempotency=idempotency, channel=channel)

    def _create_job(
        self, new: NewJob, *, now: float, idempotency: tuple[str, str] | None, channel: bool
    ) -> tuple[JobRecord, bool]:
        with self.writer.begin() as conn:
            if channel and new.callback_url:
                _open_channel(conn, new.client_id, new.callback_url, now)
            if idempotency is not None:
                existing = self._idempotent_replay(conn, new.client_id, idempotency, now)
                if existing is not None:
                    return existing, False
            values = dataclasses.asdict(new)
            values.update(
                id=new_id("job"),
                state=State.QUEUED.value,
                created_at=now,
                metadata=json.dumps(new.metadata, separators=(",", ":")),
                attempts=0,
                version=1,
            )
            conn.execute(insert(jobs).values(**values))
            if idempotency is not None:
                conn.execute(
                    insert(idempotency_keys).values(
                        client_id=new.client_id,
                        key=idempotency[0],
                        request_hash=idempotency[1],
                        job_id=values["id"],
                        created_at=now,
                    )
                )
            record = self._get(conn, values["id"])
        assert record is not None
        self._jobs_written([record.id])
        log.info(
            "%s created priority=%s duration=%.3fs", record.id, record.priority, record.duration_s
        )
        return record, True

    def _idempotent_replay(
        self, conn: Connection, client_id: str, idempotency: tuple[str, str], now: float
    ) -> JobRecord | None:
        key, request_hash = idempotency
        where = and_(idempotency_keys.c.client_id == client_id, idempotency_keys.c.key == key)
        row = conn.execute(select(idempotency_keys).where(where)).first()
        if row is None:
            return None
        if row.created_at < now - IDEMPOTENCY_WINDOW_S:
            conn.execute(idempotency_keys.delete().where(where))
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict(key)
        return self._get(conn, row.job_id)

    def cancel(self, job_id: str, *, now: float, fault: WebhookFault = _no_fault) -> JobRecord:
        """Cancel a pending job; raises InvalidTransition when it is already final."""
        with self.writer.begin() as conn:
            job = self._get(conn, job_id)
            if job is None:
                raise KeyError(job_id)
            progress = resources.estimated_progress(job, now)
            final = self._finalize(
                conn,
                job,
                State.CANCELLED,
                now=now,
                fault=fault,
                progress=progress,
                result=None,
                error=None,
            )
        self._jobs_written([job_id])
        return final

    def claim(self, *, now: float, limit: int) -> list[JobRecord]:
        """Start up to ``limit`` queued jobs, most urgent then oldest first."""
        if limit <= 0:
            return []
        with self.writer.begin() as conn:
            ids = (
                conn.execute(
                    select(jobs.c.id)
                    .where(jobs.c.state == State.QUEUED.value)
                    .order_by(jobs.c.priority.desc(), jobs.c.seq)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            if not ids:
                return []
            rows = conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(ids), jobs.c.state.in_(sources_of(State.PROCESSING)))
                .values(
                    state=State.PROCESSING.value,
                    started_at=now,
                    due_at=now + jobs.c.duration_s,
                    attempts=jobs.c.attempts + 1,
                    version=jobs.c.version + 1,
                )
                .returning(*jobs.c)
            ).all()
        self._jobs_written(ids)
        # RETURNING gives no order: hand the jobs out in the order they were chosen
        started = sorted((JobRecord.from_row(r) for r in rows), key=lambda j: (-j.priority, j.seq))
        for job in started:
            log.info("%s queued -> processing attempt=%d", job.id, job.attempts)
        return started

    def finish_due(
        self, *, now: float, fault: WebhookFault = _no_fault, batch: int = FINISH_BATCH
    ) -> list[JobRecord]:
        """End every processing attempt whose time has come; returns the jobs changed.

        A batch costs a few statements however many jobs it ends: one guarded UPDATE (an
        executemany) and one read-back per target state, one INSERT of all the outbox rows.
        """
        with self.writer.begin() as conn:
            due = [
                JobRecord.from_row(r)
                for r in conn.execute(_DUE_FOR_UPDATE, {"now": now, "batch": batch})
            ]
            groups: dict[State, list[tuple[JobRecord, dict[str, Any]]]] = {}
            for job in due:
                target, values = _attempt_end(job, now)
                groups.setdefault(target, []).append((job, values))
            moved: dict[str, JobRecord] = {}
            for target, changes in groups.items():
                moved.update((j.id, j) for j in self._transition_many(conn, target, changes))
            # in due order, so the seeded fault draws fall as they always did
            changed = [moved[job.id] for job in due if job.id in moved]
            outbox = [_outbox_row(j, now, fault) for j in changed if j.state.is_final]
            rows = [row for row in outbox if row is not None]
            if rows:
                _number_channel_events(conn, rows, now)
                conn.execute(insert(webhook_events), rows)
        if due:  # every job read for update, moved or not: the cache must not keep any of them
            self._jobs_written(j.id for j in due)
        return changed

    def _transition_many(
        self, conn: Connection, target: State, changes: list[tuple[JobRecord, dict[str, Any]]]
    ) -> list[JobRecord]:
        """The guarded UPDATE for many jobs read (and locked) in this transaction.

        Only rows still in a state allowed to enter ``target`` change; the others are left as
        they are and logged. Returns the rows that changed, read back.
        """
        names = sorted(changes[0][1])
        conn.execute(
            update(jobs)
            # the guard spelled out (an IN list would be an expanding parameter, which an
            # executemany cannot take)
            .where(
                jobs.c.id == bindparam("b_id"),
                or_(*(jobs.c.state == source for source in sources_of(target))),
            )
            .values(
                state=target.value,
                version=jobs.c.version + 1,
                **{name: bindparam(f"b_{name}") for name in names},
            ),
            [
                {"b_id": job.id, **{f"b_{n}": _column_value(values[n]) for n in names}}
                for job, values in changes
            ],
        )
        before = {job.id: job for job, _ in changes}
        rows = conn.execute(_JOBS_BY_IDS, {"ids": list(before)}).all()
        after = {r.id: JobRecord.from_row(r) for r in rows}
        out = []
        for job, _ in changes:
            new = after.get(job.id)
            if new is None or new.state is not target or new.version != job.version + 1:
                log.warning("%s left in %s: not moved to %s", job.id, job.state, target)
                continue
            log.info("%s %s -> %s attempt=%d", job.id, job.state, target, job.attempts)
            out.append(new)
        return out

    def _finalize(
        self,
        conn: Connection,
        job: JobRecord,
        target: State,
        *,
        now: float,
        fault: WebhookFault,
        progress: float,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> JobRecord:
        """Enter a final state and, in the same transaction, queue its webhook."""
        final = self._transition(
            conn,
            job,
            target,
            finished_at=now,
            due_at=None,
            progress=progress,
            result=json.dumps(result) if result else None,
            error=json.dumps(error) if error else None,
        )
        row = _outbox_row(final, now, fault)
        if row is not None:
            _number_channel_events(conn, [row], now)
            conn.execute(insert(webhook_events), [row])
        return final

    def _transition(
        self, conn: Connection, job: JobRecord, target: State, **values: Any
    ) -> JobRecord:
        """The guarded UPDATE: no row changed means the transition is illegal."""
        row = conn.execute(
            update(jobs)
            .where(jobs.c.id == job.id, jobs.c.state.in_(sources_of(target)))
            .values(state=target.value, version=jobs.c.version + 1, **values)
            .returning(*jobs.c)
        ).first()
        if row is None:
            current = self._get(conn, job.id)
            raise InvalidTransition(job.id, current.state if current else job.state, target)
        log.info("%s %s -> %s attempt=%d", job.id, job.state, target, job.attempts)
        return JobRecord.from_row(row)

    # --------------------------------------------------------------- job reads

    @staticmethod
    def _get(conn: Connection, job_id: str) -> JobRecord | None:
        row = conn.execute(_JOB_BY_ID, {"job_id": job_id}).first()
        return JobRecord.from_row(row) if row else None

    def get_job(self, job_id: str, *, client_id: str | None = None) -> JobRecord | None:
        """One job; with ``client_id``, only when that tenant owns it."""
        job = self.jobs.get(job_id)
        if job is None:
            token = self.jobs.reading()
            if self._point is not None:
                row = self._point.first(self._job_by_id_sql, (job_id,))
                job = JobRecord.from_row(row) if row else None
            else:
                with self._reader.connect() as conn:
                    job = self._get(conn, job_id)
            if job is not None:
                self.jobs.keep([job], token)
        if job is None or (client_id is not None and job.client_id != client_id):
            return None
        return job

    def get_jobs(self, client_id: str, ids: Sequence[str]) -> list[JobRecord]:
        """The tenant's jobs among ``ids``, in the order asked (unknown ids left out)."""
        by_id = {job.id: job for job in map(self.jobs.get, ids) if job is not None}
        missing = [i for i in ids if i not in by_id]
        if missing:
            token = self.jobs.reading()
            with self._reader.connect() as conn:
                rows = conn.execute(_JOBS_OF_CLIENT, {"client_id": client_id, "ids": missing}).all()
            read = [JobRecord.from_row(row) for row in rows]
            self.jobs.keep(read, token)
            by_id.update((job.id, job) for job in read)
        # a job kept in memory may be another tenant's: never theirs to see
        return [
            job for job in map(by_id.get, ids) if job is not None and job.client_id == client_id
        ]

    def list_jobs(
        self, client_id: str, *, states: Iterable[str] | None, limit: int, before_seq: int | None
    ) -> list[JobRecord]:
        """A page of the tenant's jobs, newest first."""
        query = select(jobs).where(jobs.c.client_id == client_id)
        if states is not None:
            query = query.where(jobs.c.state.in_(list(states)))
        if before_seq is not None:
            query = query.where(jobs.c.seq < before_seq)
        query = query.order_by(jobs.c.seq.desc()).limit(limit)
        with self._reader.connect() as conn:
            return [JobRecord.from_row(r) for r in conn.execute(query)]

    def next_due_at(self) -> float | None:
        """When the next processing attempt ends."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.min(jobs.c.due_at)).where(jobs.c.state == State.PROCESSING.value)
            ).scalar()

    def count_in_state(self, state: State) -> int:
        """How many jobs are in ``state``."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(jobs).where(jobs.c.state == state.value)
                ).scalar_one()
            )

    def counts_by_state(self) -> dict[str, int]:
        """Jobs per internal state (every state present, zeros included)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
        counts = {s.value: 0 for s in State}
        counts.update({state: int(n) for state, n in rows})
        return counts

    def queue_ahead(self, job: JobRecord) -> int:
        """Queued jobs that a worker slot will take before this one."""
        ahead = or_(
            jobs.c.priority > job.priority,
            and_(jobs.c.priority == job.priority, jobs.c.seq < job.seq),
        )
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(jobs)
                    .where(jobs.c.state == State.QUEUED.value, ahead)
                ).scalar_one()
            )

    def queue_view(self, *, limit: int, slots: int) -> QueueView:
        """The first ``limit`` queued jobs and the ``slots`` soonest-free busy slots.

        Read in one transaction, so the parts agree.
        """
        with self.engine.connect() as conn:
            queued = [(-p, seq) for p, seq in conn.execute(_QUEUED_KEYS, {"limit": limit})]
            ends = [float(v) for v in conn.execute(_SLOT_ENDS, {"slots": slots}).scalars()]
            processing = int(conn.execute(_PROCESSING_COUNT).scalar_one())
        return QueueView(
            queued=queued, complete=len(queued) < limit, slot_ends=ends, processing=processing
        )
