"""Helpers shared by the receiver's tests: one builder of a valid signed webhook, apps."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks import Webhook

from callback_receiver.app import close_app, create_app
from callback_receiver.config import Settings

SECRET = "whsec_" + base64.b64encode(b"receiver-test-secret-0123456789a").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"receiver-test-secret-rotated-key").decode()
WRONG_SECRET = "whsec_" + base64.b64encode(b"not-a-secret-the-receiver-knows!").decode()
FEED_TOKEN = "receiver-test-feed-token-0123456789"
FEED_AUTH = {"Authorization": f"Bearer {FEED_TOKEN}"}


class FeedReader(FlaskClient):
    """Flask's test client, sending the feed token on every request (``test_client_class``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_AUTHORIZATION"] = FEED_AUTH["Authorization"]


def job(job_id: str = "job_1", status: str = "completed") -> dict[str, Any]:
    """A job resource as the translation server sends it."""
    return {
        "id": job_id,
        "status": status,
        "stage": None,
        "progress": 1.0,
        "created_at": "2026-11-23T05:00:00.000Z",
        "finished_at": "2026-11-23T05:00:08.000Z",
        "priority": 0,
        "target_language": "es",
        "attempts": 1,
        "result": {"video_url": f"https://example.com/{job_id}.mp4"},
        "metadata": {},
    }


def event_body(
    job_id: str = "job_1", type_: str = "job.completed", status: str | None = None
) -> bytes:
    """A webhook body: ``{"type", "timestamp", "data": job}``."""
    status = status or type_.removeprefix("job.")
    doc = {"type": type_, "timestamp": "2026-11-23T05:00:08.000Z", "data": job(job_id, status)}
    return json.dumps(doc).encode()


def signed_headers(
    body: bytes, *, secret: str = SECRET, msg_id: str | None = None, timestamp: float | None = None
) -> dict[str, str]:
    """Valid Standard Webhooks headers for ``body``, signed by the reference library."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(timestamp if timestamp is not None else time.time())
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    """Settings with a temporary SQLite file, only the test secret (no credentials file) and
    the test feed token."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'receiver.db'}",
        "secrets": (SECRET,),
        "credentials_file": None,
        "feed_token": FEED_TOKEN,
    }
    values.update(changes)
    return Settings(**values)


@contextmanager
def receiver_app(tmp_path: Path, **changes: Any) -> Iterator[Flask]:
    """A fresh app on a temporary database, closed afterwards; its test clients send the
    feed token."""
    app = create_app(settings_for(tmp_path, **changes))
    app.test_client_class = FeedReader
    try:
        yield app
    finally:
        close_app(app)
