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
# Threads kept free of long-polls by default, so webhooks and pages are always served.
RESERVED_THREADS = 4
MAX_WAIT_LIMIT = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the receiver can be told; defaults are the local simulation's."""

    host: str = "127.0.0.1"
    port: int = 8001
    database_url: str = DEFAULT_DATABASE_URL
    secrets: tuple[str, ...] = ()
    credentials_file: Path | None = DEFAULT_CREDENTIALS_PATH
    tolerance_s: float = 300.0
    threads: int = 16
    # Long-polls allowed to block at once; None means ``threads - 4`` (at least 1).
    max_waiters: int | None = None
    max_wait_s: float = MAX_WAIT_LIMIT
    ready_file: Path | None = None

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
        if not 0 < self.tolerance_s:
            problems.append("tolerance must be > 0 seconds")
        if not 0 <= self.max_wait_s <= MAX_WAIT_LIMIT:
            problems.append(f"max-wait must be within [0, {MAX_WAIT_LIMIT:g}] seconds")
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
