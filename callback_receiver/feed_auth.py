"""The feed's bearer token: who may read what the receiver stored.

The token is ``--feed-token`` (``VT_RECEIVER_FEED_TOKEN``) when given, else the local set-up
file's ``receiver_token``, re-read whenever the file changes (the translation server or
``make run`` writes it, possibly after the receiver started). With neither configured the
receiver does not start (``Settings``); with a file that holds no token yet, every feed
request is refused: the feed never answers without a token.

``require_feed_token()`` is the one check: the feed's routes call it, and so can any other
route that shows stored events (the receipts page).
"""

from __future__ import annotations

import hmac
from pathlib import Path

from flask import Flask, current_app, request

from client_lib.localsetup import load_local_setup
from client_lib.wire import APIProblem

from .config import Settings
from .watched import WatchedFile

EXTENSION_KEY = "callback_receiver.feed_token"
CHALLENGE = 'Bearer realm="vt-receiver"'
FIELD = "Authorization"


class FeedToken:
    """The accepted token: the configured one, else the local set-up file's."""

    def __init__(self, token: str | None, credentials_file: Path | None) -> None:
        self._static = token
        self._file = credentials_file
        self._watched = (
            None if credentials_file is None else WatchedFile(credentials_file, self._load, None)
        )

    def current(self) -> str | None:
        """The token accepted right now (None: none is configured yet)."""
        if self._static is not None or self._watched is None:
            return self._static
        return self._watched.get()

    def _load(self) -> str | None:
        assert self._file is not None
        try:
            token = load_local_setup(self._file).receiver_token
        except (OSError, ValueError, TypeError):
            return None
        return token if isinstance(token, str) and token else None

    def matches(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (constant time)."""
        expected = self.current()
        if expected is None or not authorization:
            return False
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), expected.encode())


def install(app: Flask, settings: Settings) -> FeedToken:
    """Give ``app`` the feed token its settings name."""
    token = FeedToken(settings.feed_token, settings.credentials_file)
    app.extensions[EXTENSION_KEY] = token
    return token


def get_feed_token(app: Flask | None = None) -> FeedToken:
    """The feed token of ``app`` (default: the current app)."""
    token: FeedToken = (app if app is not None else current_app).extensions[EXTENSION_KEY]
    return token


def require_feed_token() -> None:
    """Raise a 401 problem unless the request carries the feed token as a bearer token."""
    token = get_feed_token()
    header = request.headers.get(FIELD)
    if token.matches(header):
        return
    if token.current() is None:
        code, detail = (
            "no_feed_token_configured",
            "Authorization: the receiver has no feed token yet; start it with --feed-token "
            "(VT_RECEIVER_FEED_TOKEN) or let the local set-up write one",
        )
    elif not header:
        code, detail = (
            "unauthorized",
            "Authorization: the feed needs 'Authorization: Bearer <feed token>' "
            "(clients take receiver_token= or VT_RECEIVER_TOKEN)",
        )
    else:
        code, detail = "invalid_feed_token", "Authorization: the feed token is not valid"
    challenge = CHALLENGE if code == "unauthorized" else f'{CHALLENGE}, error="invalid_token"'
    raise APIProblem(401, code, detail, headers={"WWW-Authenticate": challenge}, field=FIELD)
