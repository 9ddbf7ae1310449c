"""The per-app bundle of the receiver's parts, kept in ``app.extensions``."""

from __future__ import annotations

import dataclasses
import secrets as _secrets

from flask import Flask, current_app

from .config import RESERVED_THREADS, Settings
from .feed import Feed
from .inbox import Inbox
from .ingest import Ingest
from .metrics import Metrics, create_metrics
from .notify import FeedListener, is_postgresql
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
    ingest: Ingest
    inbox: Inbox
    # on PostgreSQL: other receivers' events wake this one's long-polls (notify.py)
    listener: FeedListener | None = None

    @classmethod
    def build(cls, settings: Settings) -> Receiver:
        """Open the store and wire the parts together."""
        secrets = SecretSource(settings.secrets, settings.credentials_file)
        # parked long-polls hold no connection: the threads kept free of them, and the feed
        instance_id = f"rcv_{_secrets.token_urlsafe(12)}"
        store = Store(
            settings.database_url,
            pool_size=min(settings.threads, RESERVED_THREADS + 2),
            name=instance_id,
        )
        feed = Feed(store, max_waiters=settings.waiter_limit)
        metrics = create_metrics(feed)
        ingest = Ingest(
            store, feed, batch_max=settings.ingest_batch_max, batch_sizes=metrics.batch_sizes
        )
        inbox = Inbox(
            store=store,
            ingest=ingest,
            secrets=secrets,
            metrics=metrics,
            tolerance_s=settings.tolerance_s,
        )
        listener = None
        if is_postgresql(settings.database_url):
            listener = FeedListener(settings.database_url, feed.notify, instance_id=instance_id)
            listener.start()
        return cls(
            settings=settings,
            store=store,
            feed=feed,
            metrics=metrics,
            ingest=ingest,
            inbox=inbox,
            listener=listener,
        )

    def close(self) -> None:
        """Commit the webhooks queued, release long-polls, then the database connections
        (idempotent)."""
        if self.listener is not None:
            self.listener.stop()
        self.ingest.close()
        self.feed.close()
        self.store.close()


def get_receiver(app: Flask | None = None) -> Receiver:
    """The receiver of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    receiver: Receiver = target.extensions[EXTENSION_KEY]
    return receiver
