"""Every table of the server: the schema, and no logic.

SQLAlchemy Core tables, at the latest schema version (``migrations.py`` creates or upgrades them
at start), on SQLite and PostgreSQL alike.
Jobs and tenants are written by ``store`` and ``clients``; the webhook outbox rows by ``store``
(with a job's final state) and then by ``outbox`` (their deliveries); the channel tables by
``store`` (numbering) and read by ``channel`` (heartbeats).
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

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
    # The instance running the job's attempt (see leases.py); kept after it ends.
    Column("owner", String(40)),
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

# Every server instance on the database and its lease: an instance whose lease has passed is
# gone, and the processing jobs it owned are taken over (leases.py).
instances = Table(
    "instances",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("lease_until", Float, nullable=False),
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
