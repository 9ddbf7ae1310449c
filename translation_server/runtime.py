"""The runtime: everything one app owns, built from its settings, with its background threads.

``create_app`` (app.py) builds one and keeps it in ``app.extensions["vt"]``; the blueprints
find it with ``current_runtime()``.
"""

from __future__ import annotations

import time

from flask import current_app

from .callbacks import CallbackPolicy
from .channel import Heartbeats
from .clients import Clients
from .config import Settings
from .db import Database
from .delivery import Dispatcher
from .demo import bootstrap_local_setup, create_demo_job
from .estimator import Estimator
from .leases import Lease
from .metrics import ServerMetrics
from .notify import Listener
from .ratelimit import RateLimiter
from .reads import JobReads
from .records import JobRecord, new_id
from .simulation import Simulator
from .store import Store

EXTENSION = "vt"


class Runtime:
    """The database and its parts, the simulator, the estimator, metrics, background threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance_id = new_id("srv")
        self.db = Database(
            settings.database_url, name=self.instance_id, request_threads=settings.threads
        )
        try:
            self._build(settings)
        except BaseException:
            self.db.close()  # lets go of the database: a retry in this process may take it
            raise
        self._started = False

    def _build(self, settings: Settings) -> None:
        self.clients = Clients(self.db)
        self.lease = Lease(self.db, self.instance_id, lease_s=settings.lease_seconds)
        self.lease.register(time.time())
        self.store = Store(self.db, owner=self.instance_id)
        self.reads = JobReads(self.db)
        self.simulator = Simulator(
            self.store, self.reads, settings, on_final=self.on_final, lease=self.lease
        )
        self.estimator = Estimator(
            self.reads,
            queue_version=lambda: self.store.queue_version,
            # every live instance has as many slots as this one
            workers=lambda: settings.workers * self.lease.live,
            mean_duration=(settings.duration_min + settings.duration_max) / 2,
        )
        self.metrics = ServerMetrics(self.reads.counts_by_state)
        # the rate limit holds across instances: each allows its share of it
        self.limiter = RateLimiter(
            settings.rate_limit, settings.rate_burst, shares=lambda: self.lease.live
        )
        self.callback_policy = CallbackPolicy(settings.callback_allow)
        self.dispatcher = Dispatcher(
            self.db,
            self.clients,
            settings,
            self.metrics,
            self.callback_policy,
            rng=self.simulator.fraction,
            on_recorded=lambda events: self.heartbeats.concluded(events),
        )
        self.heartbeats = Heartbeats(
            self.db,
            self.dispatcher.post_once,
            interval=settings.heartbeat_interval,
            linger=settings.heartbeat_linger,
            leads=lambda: self.lease.leader,
        )
        self.listener = (
            Listener(
                settings.database_url,
                {"vt_jobs": self.simulator.wake_for_peer, "vt_outbox": self.dispatcher.wake},
                instance_id=self.instance_id,
            )
            if self.db.engine.dialect.name == "postgresql"
            else None
        )
        self.admin_token, self.demo_client_id = bootstrap_local_setup(self.clients, settings)
        self.demo_job_id = (
            create_demo_job(self.clients, self.store, self.simulator.plan({}))
            if settings.demo_job
            else None
        )

    def on_final(self, jobs: list[JobRecord]) -> None:
        """Called after jobs became final and were committed: their webhooks are due now."""
        if any(j.callback_url for j in jobs):
            self.dispatcher.wake()

    def start(self) -> None:
        """Start the background threads."""
        if not self._started:
            self._started = True
            self.simulator.start()
            self.dispatcher.start()
            self.heartbeats.start()
            if self.listener is not None:
                self.listener.start()

    def close(self) -> None:
        """Stop the background threads, give the lease up and release the database."""
        if self.listener is not None:
            self.listener.stop()
        self.simulator.stop()
        self.heartbeats.stop()
        self.dispatcher.stop()
        self.lease.release()
        self.db.close()


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]
