"""Standard Webhooks signing and verification, around the reference ``standardwebhooks``.

The wire contract's webhooks in code, for the translation server (``sign``), the callback
receiver (``verify_signature``) and anyone receiving webhooks in their own service:

    from client_lib.webhooks import verify, WebhookVerificationError

    event = verify(request.get_data(), request.headers, [secret], tolerance=300)
    event.id, event.type, event.job            # the webhook-id, job.completed, the Job

The reference package signs exactly as the server does, so ``Webhook.sign`` computes the
expected signature here. ``Webhook.verify`` is not used: it closes over a fixed 5-minute
tolerance and raises bare ``ValueError`` / ``binascii.Error`` on malformed headers. Instead,
in this order: the three headers must be present (else 401), well-formed (else 400), and
fresh within the tolerance (else 401); then each ``v1,`` signature is compared in constant
time (``hmac.compare_digest``) against the signature under each accepted secret (else 401).
Nothing of the body is parsed before that. This module imports neither requests nor the
clients.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from .errors import WebhookVerificationError
from .models import HEARTBEAT_TYPE, Heartbeat, Job

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
MAX_SIGNATURES = 16
_ID_RE = re.compile(r"[\x21-\x7e]{1,255}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_BYTES = 32  # HMAC-SHA256


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """A webhook whose signature matched: its id, timestamp and body text."""

    msg_id: str
    timestamp: int
    body: str


def parse_secret(secret: str) -> Webhook:
    """A verifier for ``whsec_<base64>``; ValueError (never echoing the secret) if unusable."""
    try:
        return Webhook(secret.strip())
    except (ValueError, EmptyWebhookSecretError) as exc:
        raise ValueError("a webhook secret must be whsec_ followed by base64 bytes") from exc


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[Webhook],
    *,
    tolerance_s: float,
    now: float,
) -> VerifiedWebhook:
    """Check a webhook's headers and signature over the raw body; raise WebhookVerificationError."""
    msg_id, ts_header, sig_header = _required_headers(headers)
    if not _ID_RE.fullmatch(msg_id):
        raise WebhookVerificationError(
            400, "invalid_webhook_id", f"{HEADER_ID}: must be 1 to 255 printable ASCII characters"
        )
    timestamp = _parse_timestamp(ts_header)
    signatures = _parse_signatures(sig_header)
    _check_freshness(timestamp, now=now, tolerance_s=tolerance_s)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookVerificationError(400, "invalid_body", "body: not UTF-8 text") from exc
    if not secrets:
        raise WebhookVerificationError(
            401, "no_secret_configured", "the receiver has no webhook secret configured"
        )
    signed_at = datetime.fromtimestamp(timestamp, tz=UTC)
    for hook in secrets:
        expected = base64.b64decode(hook.sign(msg_id, signed_at, text).split(",", 1)[1])
        # Check every candidate: no early exit that would time which one matched.
        if any([hmac.compare_digest(expected, sig) for sig in signatures]):
            return VerifiedWebhook(msg_id=msg_id, timestamp=timestamp, body=text)
    raise WebhookVerificationError(
        401, "invalid_signature", f"{HEADER_SIGNATURE}: no v1 signature matches an accepted secret"
    )


def _required_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    values = []
    for name in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE):
        value = (headers.get(name) or "").strip()
        if not value:
            raise WebhookVerificationError(
                401, "missing_signature_header", f"{name}: header is required"
            )
        values.append(value)
    return values[0], values[1], values[2]


def _parse_timestamp(value: str) -> int:
    if not _TIMESTAMP_RE.fullmatch(value):
        raise WebhookVerificationError(
            400, "invalid_webhook_timestamp", f"{HEADER_TIMESTAMP}: must be integer Unix seconds"
        )
    return int(value)


def _parse_signatures(value: str) -> list[bytes]:
    """The ``v1`` signatures of a space-separated ``version,base64`` list (others skipped)."""
    entries = value.split()
    if len(entries) > MAX_SIGNATURES:
        raise WebhookVerificationError(
            400,
            "invalid_webhook_signature",
            f"{HEADER_SIGNATURE}: more than {MAX_SIGNATURES} signatures",
        )
    out = []
    for entry in entries:
        version, sep, encoded = entry.partition(",")
        if not sep or not version or not encoded:
            raise WebhookVerificationError(
                400,
                "invalid_webhook_signature",
                f"{HEADER_SIGNATURE}: each entry must be version,signature",
            )
        if version != "v1":
            continue  # a future scheme: not ours to judge
        try:
            sig = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WebhookVerificationError(
                400,
                "invalid_webhook_signature",
                f"{HEADER_SIGNATURE}: a v1 signature is not base64",
            ) from exc
        if len(sig) != _SIGNATURE_BYTES:
            raise WebhookVerificationError(
                400,
                "invalid_webhook_signature",
                f"{HEADER_SIGNATURE}: a v1 signature must be 32 bytes",
            )
        out.append(sig)
    return out


def _check_freshness(timestamp: int, *, now: float, tolerance_s: float) -> None:
    if timestamp < now - tolerance_s:
        raise WebhookVerificationError(
            401,
            "stale_webhook_timestamp",
            f"{HEADER_TIMESTAMP}: older than the {tolerance_s:g} s tolerance",
        )
    if timestamp > now + tolerance_s:
        raise WebhookVerificationError(
            401,
            "future_webhook_timestamp",
            f"{HEADER_TIMESTAMP}: more than {tolerance_s:g} s in the future",
        )


def sign(secrets: Iterable[str], msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,`` signature per active secret."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return " ".join(Webhook(s).sign(msg_id, when, body) for s in secrets)


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook: its id and timestamp (headers), and its typed body."""

    id: str  # the webhook-id: the same on every retry of this event
    type: str  # job.completed, job.error, job.cancelled, channel.heartbeat, or a newer type
    timestamp: datetime  # when the event happened (the body's), else the header's
    job: Job | None  # the job, for job events
    seq: int | None = None  # the endpoint's sequence number, for channel endpoints
    heartbeat: Heartbeat | None = None
    data: Any = None  # the body's ``data`` as sent


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    tolerance: float = 300,
) -> WebhookEvent:
    """Verify a webhook's signature over the raw ``body`` and return the typed event.

    ``headers`` may be any mapping (names in any case); ``secrets`` are ``whsec_`` secrets,
    several during a rotation. Raises WebhookVerificationError (``.status`` 400 or 401,
    ``.code``) for anything not authentic, stale, or not an event of this contract.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    hooks = [parse_secret(s) for s in secrets]
    verified = verify_signature(body, lowered, hooks, tolerance_s=tolerance, now=time.time())
    try:
        doc = json.loads(verified.body)
        data = doc["data"]
        type_ = str(doc["type"])
        job = Job.from_dict(data) if isinstance(data, Mapping) and "id" in data else None
        beat = Heartbeat.from_dict(data) if type_ == HEARTBEAT_TYPE else None
        stamp = doc.get("timestamp")
        when = (
            datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            if isinstance(stamp, str)
            else datetime.fromtimestamp(verified.timestamp, tz=UTC)
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise WebhookVerificationError(
            400, "invalid_body", f"body: not a webhook event of this API ({exc})"
        ) from exc
    seq = doc.get("seq")
    return WebhookEvent(
        id=verified.msg_id,
        type=type_,
        timestamp=when,
        job=job,
        seq=seq if isinstance(seq, int) else None,
        heartbeat=beat,
        data=data,
    )
