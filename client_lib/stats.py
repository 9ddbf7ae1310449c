"""What a client's requests and waiting cost (``client.stats``)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from .waitpolicy import WaitStats


class ClientStats:
    """Requests made, by endpoint, and how waiting went (``waiting``)."""

    def __init__(self, waiting: WaitStats) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.waiting = waiting

    def count(self, endpoint: str) -> None:
        """Record one request."""
        with self._lock:
            self.requests[endpoint] += 1

    @property
    def status_requests(self) -> int:
        """Requests to the translation server asking for job state (single or bulk)."""
        return self.requests["GET /v1/jobs/{id}"] + self.requests["GET /v1/jobs?ids"]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        w = self.waiting
        return {
            "requests": dict(self.requests),
            "status_requests": self.status_requests,
            "webhooks_used": w.webhooks_used,
            "polls_resolved": w.polls_resolved,
            "lost_webhooks": w.lost_webhooks,
            "duplicate_reports_dropped": w.duplicate_reports_dropped,
            "receiver_outages": w.receiver_outages,
            "mode_changes": [{"at": at, "mode": m, "reason": r} for at, m, r in w.mode_changes],
            "detections": {
                job_id: {"path": d.path, "lag_s": d.lag_s} for job_id, d in w.detections.items()
            },
        }
