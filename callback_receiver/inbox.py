"""``POST /webhooks``: raw bytes in, a verified, durably stored, de-duplicated event out.

Persist, then notify: the feed is woken only after the batch holding the event has committed
(``ingest.py``), and the caller gets 204 only then, so a receiver restart never loses an
acknowledged event.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from client_lib.errors import WebhookVerificationError
from client_lib.models import HEARTBEAT_TYPE, EventType, Heartbeat, JobStatus, parse_time
from client_lib.webhooks import HEADER_ID, verify_signature
from client_lib.wire import APIProblem, invalid, loads_strict

from .batchwrite import EventWrite, HeartbeatWrite, Write
from .ingest import Ingest, IngestFailed
from .metrics import Metrics
from .signatures import SecretSource
from .store import ENDPOINT_LENGTH, ID_LENGTH, TYPE_LENGTH, Receipt, Store

HEARTBEAT_EVENTS_MAX = 1000
RETRY_SOON_S = 1.0  # a retry due sooner will bring the event itself
RETRY_AFTER_S = 1  # a webhook not stored: the sender may try again this soon

log = logging.getLogger(__name__)

_FINAL_TYPES = {t.value: JobStatus(t.value.removeprefix("job.")) for t in EventType}


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedEvent:
    """The fields of a verified body the receiver indexes on."""

    type: str
    job_id: str
    final_status: JobStatus | None
    heartbeat: Heartbeat | None = None


def parse_event(text: str) -> ParsedEvent:
    """Validate a verified body (``{"type", "timestamp", "data": job}``); raise APIProblem."""
    try:
        doc = loads_strict(text)
    except ValueError as exc:
        raise APIProblem(400, "invalid_json", "body: not valid JSON") from exc
    if not isinstance(doc, dict):
        raise invalid("body", "must be a JSON object")
    type_ = _short_text(doc.get("type"), "type", TYPE_LENGTH)
    if type_ == HEARTBEAT_TYPE:
        return ParsedEvent(type_, "", None, heartbeat=_heartbeat(doc.get("data")))
    data = doc.get("data")
    if not isinstance(data, dict):
        raise invalid("data", "must be the job object")
    job_id = _short_text(data.get("id"), "data.id", ID_LENGTH)
    # Unknown event types are stored and fed (the API may grow) but never make a job final.
    return ParsedEvent(type=type_, job_id=job_id, final_status=_FINAL_TYPES.get(type_))


def _heartbeat(data: Any) -> Heartbeat:
    """A heartbeat's ``data``, checked field by field."""
    if not isinstance(data, dict):
        raise invalid("data", "must be the heartbeat object")
    _short_text(data.get("endpoint"), "data.endpoint", ENDPOINT_LENGTH)
    _short_text(data.get("client_id", "-"), "data.client_id", ID_LENGTH)
    interval = data.get("interval_s", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval:
        raise invalid("data.interval_s", "must be a positive number of seconds")
    _count(data.get("seq"), "data.seq")
    entries = data.get("events", [])
    if not isinstance(entries, list) or len(entries) > HEARTBEAT_EVENTS_MAX:
        raise invalid("data.events", f"must be a list of at most {HEARTBEAT_EVENTS_MAX} entries")
    for n, entry in enumerate(entries):
        field = f"data.events[{n}]"
        if not isinstance(entry, dict) or entry.get("state") not in ("pending", "sent"):
            raise invalid(field, "must be an object whose state is pending or sent")
        _count(entry.get("seq"), f"{field}.seq")
        _short_text(entry.get("job_id"), f"{field}.job_id", ID_LENGTH)
        when = entry.get("next_attempt_at")
        if when is not None:
            try:
                parse_time(_short_text(when, f"{field}.next_attempt_at", 40))
            except ValueError as exc:
                raise invalid(f"{field}.next_attempt_at", "must be an RFC 3339 time") from exc
    try:
        return Heartbeat.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise invalid("data", f"not a heartbeat: {exc}") from exc


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise invalid(field, "must be a non-negative integer")
    return value


def _short_text(value: Any, field: str, max_len: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len or not value.isprintable():
        raise invalid(field, f"must be a printable string of 1 to {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a JSON \ud800 escape
        raise invalid(field, "must be valid Unicode text") from exc
    return value


class Inbox:
    """Receives webhooks: verify and parse here, in the request's thread; then store once
    through the group commit (``Ingest``), which wakes the feed."""

    def __init__(
        self,
        *,
        store: Store,
        ingest: Ingest,
        secrets: SecretSource,
        metrics: Metrics,
        tolerance_s: float,
    ) -> None:
        self._store = store
        self._ingest = ingest
        self._secrets = secrets
        self._metrics = metrics
        self._tolerance_s = tolerance_s

    def receive(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Handle one POST; True if stored now, False if a duplicate; APIProblem if rejected
        or not stored (503: retry later)."""
        now = time.time()
        msg_id = headers.get(HEADER_ID)
        try:
            verified = verify_signature(
                body, headers, self._secrets.current(), tolerance_s=self._tolerance_s, now=now
            )
            event = parse_event(verified.body)
        except WebhookVerificationError as exc:
            self._reject(msg_id, exc.code, exc.status, now)
            raise APIProblem(exc.status, exc.code, exc.detail) from exc
        except APIProblem as exc:
            self._reject(msg_id, exc.code, exc.status, now)
            raise
        if event.heartbeat is not None:
            return self._keep_heartbeat(verified.msg_id, event.heartbeat, verified.body, now)
        write = EventWrite(
            webhook_id=verified.msg_id,
            job_id=event.job_id,
            type=event.type,
            final_status=event.final_status,
            payload=verified.body,
            received_at=now,
        )
        seq = self._store_now(write)
        if seq is None:
            self._metrics.webhooks.labels(result="duplicate").inc()
            log.info(
                "job %s: webhook %s is a duplicate, already stored", event.job_id, verified.msg_id
            )
            return False
        self._metrics.webhooks.labels(result="verified").inc()
        log.debug(
            "job %s: webhook %s (%s) stored as cursor %d",
            event.job_id,
            verified.msg_id,
            event.type,
            seq,
        )
        return True

    def _store_now(self, write: Write) -> int | None:
        """Store through the group commit; 503 with Retry-After if its batch failed."""
        try:
            return self._ingest.store(write)
        except IngestFailed as exc:
            self._metrics.webhooks.labels(result="not_stored").inc()
            raise APIProblem(
                503,
                "database_unavailable",
                f"webhook not stored ({exc}); retry after {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from exc

    def _keep_heartbeat(self, msg_id: str, beat: Heartbeat, body: str, now: float) -> bool:
        """Refresh the channel; a heartbeat that asks a client to act also enters the feed and
        wakes it: one naming an event sent but not stored here (lost), or a retry due later
        than ``RETRY_SOON_S``. Any other says nothing a client waits for: not fed, it wakes no
        long-poll (every event it names as sent is already in the feed)."""
        stored = self._store.final_jobs([e.job_id for e in beat.events if e.sent])
        soon = now + RETRY_SOON_S
        urgent = [
            (e.seq, e.job_id, e.sent, e.next_attempt_at)
            for e in beat.events
            if ((e.job_id not in stored) if e.sent else (e.next_attempt_at or 0) > soon)
        ]
        digest = hashlib.sha256(json.dumps(urgent).encode()).hexdigest() if urgent else None
        cursor = self._store_now(
            HeartbeatWrite(
                webhook_id=msg_id,
                endpoint=beat.endpoint,
                client_id=beat.client_id,
                seq=beat.seq,
                digest=digest,
                payload=body,
                received_at=now,
            )
        )
        self._metrics.webhooks.labels(result="heartbeat").inc()
        if cursor is None:
            return False
        log.debug("channel %s: heartbeat seq %d fed as cursor %d", beat.endpoint, beat.seq, cursor)
        return True

    def _reject(self, msg_id: str | None, code: str, status: int, now: float) -> None:
        """Count and log a refused POST, and keep its receipt (the refusal stands even if the
        receipt cannot be kept)."""
        self._metrics.webhooks.labels(result="invalid").inc()
        log.warning("webhook %r rejected: %s (%d)", (msg_id or "")[:80], code, status)
        receipt = Receipt(
            received_at=now,
            webhook_id=msg_id or None,
            job_id=None,
            type=None,
            result=code,
            status=status,
            duplicate=False,
        )
        try:
            self._ingest.store(receipt)
        except IngestFailed as exc:
            log.warning("receipt of refused webhook %r not kept: %s", (msg_id or "")[:80], exc)
