"""The job resource and the webhook body: how a stored job looks on the wire."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from client_lib.models import EventType, format_time

if TYPE_CHECKING:
    from .estimator import Estimate
    from .records import JobRecord

# The same instants are rendered again and again: a job's created/started/finished times on
# every poll, and its estimate until the queue moves. Remember their text (strftime is the
# costliest part of rendering a job); estimates in a cache of their own, since an overdue
# job's moves on with every poll and must not push the fixed times out.
_fixed_time = functools.lru_cache(maxsize=8192)(format_time)
_estimate_time = functools.lru_cache(maxsize=4096)(format_time)


def render_job(job: JobRecord, estimate: Estimate | None) -> dict[str, Any]:
    """The job resource of API.md section 1."""
    state = job.state
    if estimate is None or state.is_final:
        progress = job.progress if job.progress is not None else 0.0
        completion = None
    else:
        progress = estimate.progress
        completion = _estimate_time(estimate.completion_at)
    stage = state.stage
    return {
        "id": job.id,
        "status": state.status.value,
        "stage": stage.value if stage else None,
        "progress": progress,
        "created_at": _fixed_time(job.created_at),
        "started_at": _fixed_time(job.started_at),
        "finished_at": _fixed_time(job.finished_at),
        "estimated_completion_at": completion,
        "priority": job.priority,
        "target_language": job.target_language,
        "source_url": job.source_url,
        "callback_url": job.callback_url,
        "attempts": job.attempts,
        "result": job.result,
        "error": job.error,
        "metadata": job.metadata,
    }


def render_delivery(event: dict[str, Any]) -> dict[str, Any]:
    """One webhook event of a job with its attempt log, as ``deliveries`` lists it."""
    return {
        "webhook_id": event["id"],
        "type": event["type"],
        "callback_url": event["callback_url"],
        "state": event["state"],
        "attempts": event["attempts"],
        "created_at": format_time(event["created_at"]),
        "next_attempt_at": format_time(event["next_attempt_at"]),
        "finished_at": format_time(event["finished_at"]),
        "attempt_log": [
            {
                "attempt": a["attempt"],
                "attempted_at": format_time(a["attempted_at"]),
                "status_code": a["status_code"],
                "error": a["error"],
                "latency_ms": round(a["latency_ms"], 2) if a["latency_ms"] is not None else None,
                "outcome": a["outcome"],
                "next_attempt_at": format_time(a["next_attempt_at"]),
            }
            for a in event["attempt_log"]
        ],
    }


def webhook_body(job: JobRecord, event_type: EventType, at: float) -> str:
    """The exact bytes every attempt of this event sends (so each retry signs the same body)."""
    body = {"type": event_type.value, "timestamp": format_time(at), "data": render_job(job, None)}
    return json.dumps(body, separators=(",", ":"))
