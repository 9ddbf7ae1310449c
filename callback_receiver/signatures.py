"""The secrets the receiver accepts: configured ones, plus the local set-up file's.

Verification itself is the contract's (``client_lib.webhooks``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from client_lib.localsetup import load_local_setup
from client_lib.webhooks import parse_secret

from .watched import WatchedFile

log = logging.getLogger(__name__)


class SecretSource:
    """The accepted secrets: the configured ones plus the local set-up file's, re-read on change.

    The translation server writes that file at its first start (possibly after the receiver
    started) and again when it rotates the demo secret, so the file is stat-ed on every
    webhook and re-read whenever its mtime, size or inode changed.
    """

    def __init__(self, secrets: Sequence[str], credentials_file: Path | None) -> None:
        self._static = [parse_secret(s) for s in secrets]
        self._file = credentials_file
        empty: list[Webhook] = []
        self._watched = (
            None if credentials_file is None else WatchedFile(credentials_file, self._load, empty)
        )

    def current(self) -> list[Webhook]:
        """Verifiers for every secret accepted right now."""
        return [*self._static, *(self._watched.get() if self._watched is not None else [])]

    def _load(self) -> list[Webhook]:
        assert self._file is not None
        try:
            setup = load_local_setup(self._file)
            found = [setup.webhook_secret, *setup.webhook_secrets]
            hooks = [parse_secret(secret) for secret in found if secret]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "credentials file %s: no usable webhook secret (%s)", self._file, type(exc).__name__
            )
            return []
        log.info("credentials file %s: %d webhook secret(s) loaded", self._file, len(hooks))
        return hooks
