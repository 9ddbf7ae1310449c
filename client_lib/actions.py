"""What the waiting core asks its driver to do next: one action at a time, with no I/O of
its own. The sync and async clients perform it and feed the outcome back."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class PinFeed:
    """Ask the feed for its current end (``after=latest``), then call ``feed_pinned``."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReadFeed:
    """Read the feed after ``after``, waiting up to ``wait`` s; then ``on_feed``. ``jobs``:
    only these jobs' events (and heartbeats), so that other clients' events wake nobody here;
    None: every event."""

    after: str
    wait: float
    jobs: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Poll:
    """Ask the translation server for these jobs (one ``?ids=``); then ``on_statuses``."""

    job_ids: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """Ask the receiver for the job's final event (``GET /v1/events/{id}``); then ``on_lookup``."""

    job_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    """Nothing to do for ``seconds``."""

    seconds: float


Action = PinFeed | ReadFeed | Lookup | Poll | Sleep
