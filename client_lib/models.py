"""The wire models: job statuses, the job resource and webhook events.

This module is the single source of truth for the values and JSON shapes of ../shared/API.md.
The translation server and the callback receiver import it; it imports nothing of ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """The public status of a job (the original problem's three values, plus cancelled)."""

    PENDING = "pending"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for a status that never changes again."""
        return self is not JobStatus.PENDING


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.CANCELLED})


class Stage(StrEnum):
    """Where a pending job is: waiting for a worker slot, or being processed."""

    QUEUED = "queued"
    PROCESSING = "processing"


class EventType(StrEnum):
    """The webhook event types, one per final status."""

    COMPLETED = "job.completed"
    ERROR = "job.error"
    CANCELLED = "job.cancelled"

    @classmethod
    def for_status(cls, status: JobStatus | str) -> EventType:
        """The event type announcing that a job reached ``status``."""
        return cls(f"job.{JobStatus(status).value}")


HEARTBEAT_TYPE = "channel.heartbeat"


class Outcome(StrEnum):
    """A pinned simulation outcome (``simulate.outcome``)."""

    COMPLETED = "completed"
    ERROR = "error"
    RANDOM = "random"


class WebhookMode(StrEnum):
    """A pinned webhook behaviour (``simulate.webhook``)."""

    DELIVER = "deliver"
    DROP = "drop"
    DUPLICATE = "duplicate"


# The legacy ``GET /status`` answers only the original problem's three values.
LEGACY_RESULT = {
    JobStatus.PENDING: "pending",
    JobStatus.COMPLETED: "completed",
    JobStatus.ERROR: "error",
    JobStatus.CANCELLED: "error",
}

METADATA_MAX_BYTES = 4096
BULK_IDS_MAX = 100


def format_time(ts: float | None) -> str | None:
    """Unix seconds to the wire's RFC 3339 form with milliseconds and ``Z``."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_time(value: str | None) -> float | None:
    """The wire's RFC 3339 form back to Unix seconds."""
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclasses.dataclass(frozen=True, slots=True)
class JobError:
    """Why a job ended in error."""

    code: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """The job resource, as the translation server returns it."""

    id: str
    status: JobStatus
    stage: Stage | None = None
    progress: float = 0.0
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    estimated_completion_at: str | None = None
    priority: int = 0
    target_language: str | None = None
    source_url: str | None = None
    callback_url: str | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: JobError | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        """True once the job is completed, errored or cancelled."""
        return self.status.is_final

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """Build a job from its JSON form; unknown fields are ignored (the API may grow)."""
        err = data.get("error")
        stage = data.get("stage")
        return cls(
            id=data["id"],
            status=JobStatus(data["status"]),
            stage=Stage(stage) if stage else None,
            progress=float(data.get("progress") or 0.0),
            created_at=data.get("created_at"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            estimated_completion_at=data.get("estimated_completion_at"),
            priority=int(data.get("priority") or 0),
            target_language=data.get("target_language"),
            source_url=data.get("source_url"),
            callback_url=data.get("callback_url"),
            attempts=int(data.get("attempts") or 0),
            result=data.get("result"),
            error=JobError(code=err["code"], message=err["message"]) if err else None,
            metadata=dict(data.get("metadata") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The job's JSON form, exactly the resource of API.md section 1."""
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        out["stage"] = self.stage.value if self.stage else None
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelEntry:
    """One job event a heartbeat describes: its number, its job, and whether it was sent."""

    seq: int
    job_id: str
    sent: bool  # an attempt concluded (delivered or given up); False: not yet, or retrying
    next_attempt_at: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    """A ``channel.heartbeat``: which job events of an endpoint exist (docs/api.md)."""

    endpoint: str
    seq: int  # the last sequence number given out to a job event for this endpoint
    interval_s: float
    events: tuple[ChannelEntry, ...]  # the most recent numbers, oldest first
    client_id: str = ""  # the server's client whose channel this is (one endpoint may serve many)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Heartbeat:
        """Build a heartbeat from its ``data`` object."""
        return cls(
            endpoint=str(data["endpoint"]),
            client_id=str(data.get("client_id") or ""),
            seq=int(data["seq"]),
            interval_s=float(data.get("interval_s") or 1.0),
            events=tuple(
                ChannelEntry(
                    seq=int(e["seq"]),
                    job_id=str(e["job_id"]),
                    sent=e["state"] == "sent",
                    next_attempt_at=parse_time(e.get("next_attempt_at")),
                )
                for e in data.get("events") or ()
            ),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One webhook as the callback receiver's change feed returns it."""

    cursor: str
    webhook_id: str
    received_at: str
    type: str  # an EventType value; unknown types are kept, not refused (the API may grow)
    data: Job | None
    seq: int | None = None  # the endpoint's sequence number (channel endpoints only)
    heartbeat: Heartbeat | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from its feed JSON."""
        body = data.get("data")
        is_heartbeat = data["type"] == HEARTBEAT_TYPE and isinstance(body, Mapping)
        seq = data.get("seq")
        return cls(
            cursor=str(data["cursor"]),
            webhook_id=data["webhook_id"],
            received_at=data["received_at"],
            type=str(data["type"]),
            data=Job.from_dict(body) if isinstance(body, Mapping) and "id" in body else None,
            seq=seq if isinstance(seq, int) else None,
            heartbeat=Heartbeat.from_dict(body) if is_heartbeat else None,  # type: ignore[arg-type]
        )

    @property
    def final_job(self) -> Job | None:
        """The job this event reports final, or None for any other kind of event."""
        known = {t.value for t in EventType}
        if self.type in known and self.data is not None and self.data.is_final:
            return self.data
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelStatus:
    """A feed page's word on one channel: its last number, and how long ago it was heard."""

    endpoint: str
    seq: int
    age_s: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelStatus:
        """Build from a feed page's ``channels`` entry."""
        return cls(endpoint=str(data["endpoint"]), seq=int(data["seq"]), age_s=float(data["age_s"]))
