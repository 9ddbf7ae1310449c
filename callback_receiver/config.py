"""The receiver's settings: one frozen object built from flags and ``VT_`` variables.

``python -m callback_receiver --help`` lists every option with its default and environment
variable. Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from client_lib.localsetup import DATA_HOME, DEFAULT_CREDENTIALS_PATH

DEFAULT_DATABASE_URL = f"sqlite:///{DATA_HOME / 'receiver.db'}"
# A parked long-poll holds a waitress thread: 512 may park by default, and 32 threads are
# kept free of them, so webhooks, pages and health checks are always served.
RESERVED_THREADS = 32
DEFAULT_THREADS = 512 + RESERVED_THREADS
MAX_WAIT_LIMIT = 60.0
MAX_INGEST_BATCH = 1000
MIN_TOKEN_LENGTH = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the receiver can be told; defaults are the local simulation's."""

    host: str = "127.0.0.1"
    port: int = 8001
    database_url: str = DEFAULT_DATABASE_URL
    secrets: tuple[str, ...] = ()
    credentials_file: Path | None = DEFAULT_CREDENTIALS_PATH
    tolerance_s: float = 300.0
    threads: int = DEFAULT_THREADS
    # Long-polls allowed to block at once; None means ``threads - 32`` (at least 1).
    max_waiters: int | None = None
    max_wait_s: float = MAX_WAIT_LIMIT
    ready_file: Path | None = None
    # writes committed together at most (1: a transaction per webhook); ingest.py
    ingest_batch_max: int = 256
    # the feed's bearer token; None: the credentials file's ``receiver_token``
    feed_token: str | None = None
    # connections (waitress): open at once, idle seconds before closing, the idle check's
    # period, and the listen backlog
    connection_limit: int = 4096
    channel_timeout: int = 60
    cleanup_interval: int = 10
    backlog: int = 2048

    def __post_init__(self) -> None:
        if self.max_waiters is None:
            default = max(1, self.threads - RESERVED_THREADS)
            object.__setattr__(self, "max_waiters", default)
        problems = []
        if self.threads < 2:
            problems.append("threads must be at least 2")
        if not 0 <= self.waiter_limit < self.threads:
            problems.append(
                "max-waiters must be >= 0 and below threads "
                "(one thread at least must stay free for webhooks)"
            )
        if not 1 <= self.ingest_batch_max <= MAX_INGEST_BATCH:
            problems.append(f"ingest-batch-max must be within [1, {MAX_INGEST_BATCH}]")
        if not 0 < self.tolerance_s:
            problems.append("tolerance must be > 0 seconds")
        if not 0 <= self.max_wait_s <= MAX_WAIT_LIMIT:
            problems.append(f"max-wait must be within [0, {MAX_WAIT_LIMIT:g}] seconds")
        if self.feed_token is None and self.credentials_file is None:
            problems.append(
                "the feed needs a token: pass --feed-token (VT_RECEIVER_FEED_TOKEN) or a "
                "credentials file holding receiver_token"
            )
        elif self.feed_token is not None and not _token_ok(self.feed_token):
            problems.append(
                f"feed-token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters "
                "without spaces"
            )
        if self.connection_limit < self.threads:
            problems.append("connection-limit must be at least the thread count")
        if self.channel_timeout < 1 or self.cleanup_interval < 1 or self.backlog < 1:
            problems.append("channel-timeout, cleanup-interval and backlog must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def waiter_limit(self) -> int:
        """``max_waiters`` resolved to a number (never None after construction)."""
        return self.max_waiters if self.max_waiters is not None else 0

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (tests and scripts use this)."""
        if "threads" in changes and "max_waiters" not in changes:
            changes["max_waiters"] = None
        return dataclasses.replace(self, **changes)


def _token_ok(token: str) -> bool:
    return len(token) >= MIN_TOKEN_LENGTH and all(33 <= ord(c) < 127 for c in token)
