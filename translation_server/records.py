"""What the store hands out and takes in: tenants, jobs and the queue as plain records.

Also the formats of what the server mints for them: opaque ids and list cursors.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from collections.abc import Sequence
from typing import Any

from .schema import jobs
from .states import State

_JOB_COLUMN = {name: n for n, name in enumerate(jobs.c.keys())}
_STATE, _METADATA, _RESULT, _ERROR = (
    _JOB_COLUMN[name] for name in ("state", "metadata", "result", "error")
)


def new_id(prefix: str) -> str:
    """An opaque, URL-safe, unguessable identifier."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


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
    owner: str | None  # the server instance that started its latest attempt

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


@dataclasses.dataclass(frozen=True, slots=True)
class QueueView:
    """The queue as one consistent read saw it: what the estimator needs for queued jobs."""

    queued: list[tuple[int, int]]  # (-priority, seq) of queued jobs, in claim order
    complete: bool  # False when more jobs are queued than ``queued`` holds
    slot_ends: list[float]  # estimated ends of the first processing attempts, soonest first
    processing: int  # processing attempts in all
