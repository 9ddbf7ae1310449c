"""``POST /webhooks``: raw bytes in, a verified, durably stored, de-duplicated event out.

Persist, then notify: the feed is woken only after the event's transaction has committed, and
the caller gets 204 only then, so a receiver restart never loses an acknowledged event.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from client_lib.models import EventType, JobStatus

from .feed import Feed
from .metrics import Metrics
from .problems import APIProblem, invalid
from .signatures import HEADER_ID, SecretSource, WebhookRejected, verify_webhook
from .store import ID_LENGTH, TYPE_LENGTH, Store

log = logging.getLogger(__name__)

_FINAL_TYPES = {t.value: JobStatus(t.value.removeprefix("job.")) for t in EventType}


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedEvent:
    """The fields of a verified body the receiver indexes on."""

    type: str
    job_id: str
    final_status: JobStatus | None


def parse_event(text: str) -> ParsedEvent:
    """Validate a verified body (``{"type", "timestamp", "data": job}``); raise APIProblem."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise APIProblem(400, "invalid_json", "body: not valid JSON") from exc
    if not isinstance(doc, dict):
        raise invalid("body", "must be a JSON object")
    type_ = _short_text(doc.get("type"), "type", TYPE_LENGTH)
    data = doc.get("data")
    if not isinstance(data, dict):
        raise invalid("data", "must be the job object")
    job_id = _short_text(data.get("id"), "data.id", ID_LENGTH)
    # Unknown event types are stored and fed (the API may grow) but never make a job final.
    return ParsedEvent(type=type_, job_id=job_id, final_status=_FINAL_TYPES.get(type_))


def _short_text(value: Any, field: str, max_len: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len or not value.isprintable():
        raise invalid(field, f"must be a printable string of 1 to {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a JSON \ud800 escape
        raise invalid(field, "must be valid Unicode text") from exc
    return value


class Inbox:
    """Receives webhooks: verify, parse, store once, wake the feed."""

    def __init__(
        self,
        *,
        store: Store,
        feed: Feed,
        secrets: SecretSource,
        metrics: Metrics,
        tolerance_s: float,
    ) -> None:
        self._store = store
        self._feed = feed
        self._secrets = secrets
        self._metrics = metrics
        self._tolerance_s = tolerance_s

    def receive(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Handle one POST; True if stored now, False if a duplicate; APIProblem if rejected."""
        now = time.time()
        msg_id = headers.get(HEADER_ID)
        try:
            verified = verify_webhook(
                body, headers, self._secrets.current(), tolerance_s=self._tolerance_s, now=now
            )
            event = parse_event(verified.body)
        except WebhookRejected as exc:
            self._reject(msg_id, exc.code, exc.status, now)
            raise APIProblem(exc.status, exc.code, exc.detail) from exc
        except APIProblem as exc:
            self._reject(msg_id, exc.code, exc.status, now)
            raise
        seq = self._store.add_event(
            webhook_id=verified.msg_id,
            job_id=event.job_id,
            type=event.type,
            final_status=event.final_status,
            payload=verified.body,
            received_at=now,
        )
        if seq is None:
            self._metrics.webhooks.labels(result="duplicate").inc()
            log.info(
                "job %s: webhook %s is a duplicate, already stored", event.job_id, verified.msg_id
            )
            return False
        self._feed.notify()
        self._metrics.webhooks.labels(result="verified").inc()
        log.info(
            "job %s: webhook %s (%s) stored as cursor %d",
            event.job_id,
            verified.msg_id,
            event.type,
            seq,
        )
        return True

    def _reject(self, msg_id: str | None, code: str, status: int, now: float) -> None:
        self._metrics.webhooks.labels(result="invalid").inc()
        log.warning("webhook %r rejected: %s (%d)", (msg_id or "")[:80], code, status)
        self._store.add_rejection(
            webhook_id=msg_id or None, result=code, status=status, received_at=now
        )
