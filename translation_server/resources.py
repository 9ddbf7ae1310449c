"""The job resource and the webhook body: how a stored job looks on the wire."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from client_lib.models import EventType, format_time

from .estimator import Estimate, estimated_progress

if TYPE_CHECKING:
    from .store import JobRecord

# A job's created/started/finished times never change once set and every poll renders them
# again: remember their text (strftime is the costliest part of rendering a job).
_fixed_time = functools.lru_cache(maxsize=4096)(format_time)


def render_job(job: JobRecord, estimate: Estimate | None) -> dict[str, Any]:
    """The job resource of API.md section 1."""
    final = job.state.is_final
    if final:
        progress = job.progress if job.progress is not None else 0.0
    else:
        progress = estimate.progress if estimate else 0.0
    return {
        "id": job.id,
        "status": job.state.status.value,
        "stage": job.state.stage.value if job.state.stage else None,
        "progress": progress,
        "created_at": _fixed_time(job.created_at),
        "started_at": _fixed_time(job.started_at),
        "finished_at": _fixed_time(job.finished_at),
        "estimated_completion_at": (
            format_time(estimate.completion_at) if estimate and not final else None
        ),
        "priority": job.priority,
        "target_language": job.target_language,
        "source_url": job.source_url,
        "callback_url": job.callback_url,
        "attempts": job.attempts,
        "result": job.result,
        "error": job.error,
        "metadata": job.metadata,
    }


def webhook_body(job: JobRecord, event_type: EventType, at: float) -> str:
    """The exact bytes every attempt of this event sends (so each retry signs the same body)."""
    body = {"type": event_type.value, "timestamp": format_time(at), "data": render_job(job, None)}
    return json.dumps(body, separators=(",", ":"))


__all__ = ["estimated_progress", "render_job", "webhook_body"]
