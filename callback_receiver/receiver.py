"""The per-app bundle of the receiver's parts, kept in ``app.extensions``."""

from __future__ import annotations

import dataclasses

from flask import Flask, current_app

from .config import Settings
from .feed import Feed
from .inbox import Inbox
from .metrics import Metrics, create_metrics
from .signatures import SecretSource
from .store import Store

EXTENSION_KEY = "callback_receiver"


@dataclasses.dataclass(frozen=True, slots=True)
class Receiver:
    """Everything one receiver app owns; ``close()`` releases it."""

    settings: Settings
    store: Store
    feed: Feed
    metrics: Metrics
    inbox: Inbox

    @classmethod
    def build(cls, settings: Settings) -> Receiver:
        """Open the store and wire the parts together."""
        secrets = SecretSource(settings.secrets, settings.credentials_file)
        store = Store(settings.database_url, pool_size=settings.threads)
        feed = Feed(max_waiters=settings.waiter_limit)
        metrics = create_metrics(feed)
        inbox = Inbox(
            store=store,
            feed=feed,
            secrets=secrets,
            metrics=metrics,
            tolerance_s=settings.tolerance_s,
        )
        return cls(settings=settings, store=store, feed=feed, metrics=metrics, inbox=inbox)

    def close(self) -> None:
        """Release long-polls, then the database connections (idempotent)."""
        self.feed.close()
        self.store.close()


def get_receiver(app: Flask | None = None) -> Receiver:
    """The receiver of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    receiver: Receiver = target.extensions[EXTENSION_KEY]
    return receiver
