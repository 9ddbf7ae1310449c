"""Standard Webhooks verification around the reference ``standardwebhooks`` package.

The package signs exactly as the translation server does, so ``Webhook.sign`` computes the
expected signature here. We do not call ``Webhook.verify`` because it closes over a fixed
5-minute tolerance (it would contradict a configured one) and raises bare ``ValueError`` /
``binascii.Error`` on malformed headers. Instead, in this order: the three headers must be
present (else 401), well-formed (else 400), and fresh within our tolerance (else 401); then
each ``v1,`` signature is compared in constant time (``hmac.compare_digest``) against the
signature under each accepted secret (else 401). Nothing of the body is parsed before that.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from client_lib.localsetup import load_local_setup

log = logging.getLogger(__name__)

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
MAX_SIGNATURES = 16
_ID_RE = re.compile(r"[\x21-\x7e]{1,255}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_BYTES = 32  # HMAC-SHA256


class WebhookRejected(Exception):
    """A webhook that failed verification: ``status`` 400 (malformed) or 401 (not authentic)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


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


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[Webhook],
    *,
    tolerance_s: float,
    now: float,
) -> VerifiedWebhook:
    """Check a webhook's headers and signature over the raw body; raise WebhookRejected."""
    msg_id, ts_header, sig_header = _required_headers(headers)
    if not _ID_RE.fullmatch(msg_id):
        raise WebhookRejected(
            400, "invalid_webhook_id", f"{HEADER_ID}: must be 1 to 255 printable ASCII characters"
        )
    timestamp = _parse_timestamp(ts_header)
    signatures = _parse_signatures(sig_header)
    _check_freshness(timestamp, now=now, tolerance_s=tolerance_s)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRejected(400, "invalid_body", "body: not UTF-8 text") from exc
    if not secrets:
        raise WebhookRejected(
            401, "no_secret_configured", "the receiver has no webhook secret configured"
        )
    signed_at = datetime.fromtimestamp(timestamp, tz=UTC)
    for hook in secrets:
        expected = base64.b64decode(hook.sign(msg_id, signed_at, text).split(",", 1)[1])
        # Check every candidate: no early exit that would time which one matched.
        if any([hmac.compare_digest(expected, sig) for sig in signatures]):
            return VerifiedWebhook(msg_id=msg_id, timestamp=timestamp, body=text)
    raise WebhookRejected(
        401, "invalid_signature", f"{HEADER_SIGNATURE}: no v1 signature matches an accepted secret"
    )


def _required_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    values = []
    for name in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE):
        value = (headers.get(name) or "").strip()
        if not value:
            raise WebhookRejected(401, "missing_signature_header", f"{name}: header is required")
        values.append(value)
    return values[0], values[1], values[2]


def _parse_timestamp(value: str) -> int:
    if not _TIMESTAMP_RE.fullmatch(value):
        raise WebhookRejected(
            400, "invalid_webhook_timestamp", f"{HEADER_TIMESTAMP}: must be integer Unix seconds"
        )
    return int(value)


def _parse_signatures(value: str) -> list[bytes]:
    """The ``v1`` signatures of a space-separated ``version,base64`` list (others skipped)."""
    entries = value.split()
    if len(entries) > MAX_SIGNATURES:
        raise WebhookRejected(
            400,
            "invalid_webhook_signature",
            f"{HEADER_SIGNATURE}: more than {MAX_SIGNATURES} signatures",
        )
    out = []
    for entry in entries:
        version, sep, encoded = entry.partition(",")
        if not sep or not version or not encoded:
            raise WebhookRejected(
                400,
                "invalid_webhook_signature",
                f"{HEADER_SIGNATURE}: each entry must be version,signature",
            )
        if version != "v1":
            continue  # a future scheme: not ours to judge
        try:
            sig = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WebhookRejected(
                400,
                "invalid_webhook_signature",
                f"{HEADER_SIGNATURE}: a v1 signature is not base64",
            ) from exc
        if len(sig) != _SIGNATURE_BYTES:
            raise WebhookRejected(
                400,
                "invalid_webhook_signature",
                f"{HEADER_SIGNATURE}: a v1 signature must be 32 bytes",
            )
        out.append(sig)
    return out


def _check_freshness(timestamp: int, *, now: float, tolerance_s: float) -> None:
    if timestamp < now - tolerance_s:
        raise WebhookRejected(
            401,
            "stale_webhook_timestamp",
            f"{HEADER_TIMESTAMP}: older than the {tolerance_s:g} s tolerance",
        )
    if timestamp > now + tolerance_s:
        raise WebhookRejected(
            401,
            "future_webhook_timestamp",
            f"{HEADER_TIMESTAMP}: more than {tolerance_s:g} s in the future",
        )


class SecretSource:
    """The accepted secrets: the configured ones plus the local set-up file's, re-read on change.

    The translation server writes that file at its first start (possibly after the receiver
    started) and again when it rotates the demo secret, so the file is stat-ed on every
    webhook and re-read whenever its mtime, size or inode changed.
    """

    def __init__(self, secrets: Sequence[str], credentials_file: Path | None) -> None:
        self._static = [parse_secret(s) for s in secrets]
        self._file = credentials_file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._from_file: list[Webhook] = []

    def current(self) -> list[Webhook]:
        """Verifiers for every secret accepted right now."""
        return [*self._static, *self._file_secrets()]

    def _file_secrets(self) -> list[Webhook]:
        if self._file is None:
            return []
        try:
            st = os.stat(self._file)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._from_file = self._load() if stamp is not None else []
                self._stamp = stamp
            return self._from_file

    def _load(self) -> list[Webhook]:
        assert self._file is not None
        try:
            secret = load_local_setup(self._file).webhook_secret
            hooks = [parse_secret(secret)] if secret else []
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "credentials file %s: no usable webhook secret (%s)", self._file, type(exc).__name__
            )
            return []
        log.info("credentials file %s: %d webhook secret(s) loaded", self._file, len(hooks))
        return hooks
