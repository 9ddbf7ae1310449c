"""The runtime: everything one app owns, built from its settings, with its background threads.

``create_app`` (app.py) builds one and keeps it in ``app.extensions["vt"]``; the blueprints
find it with ``current_runtime()``.
"""

from __future__ import annotations

from flask import current_app

from .callbacks import CallbackPolicy
from .channel import Heartbeats
from .clients import Clients
from .config import Settings
from .db import Database
from .delivery import Dispatcher
from .demo import bootstrap_local_setup, create_demo_job
from .estimator import Estimator
from .metrics import ServerMetrics
from .ratelimit import RateLimiter
from .reads import JobReads
from .records import JobRecord
from .simulation import Simulator
from .store import Store

EXTENSION = "vt"


class Runtime:
    """The database and its parts, the simulator, the estimator, metrics, background threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        try:
            self._build(settings)
        except BaseException:
            self.db.close()  # lets go of the database: a retry in this process may take it
            raise
        self._started = False

    def _build(self, settings: Settings) -> None:
        self.clients = Clients(self.db)
        self.store = Store(self.db)
        self.reads = JobReads(self.db)
        self.simulator = Simulator(self.store, self.reads, settings, on_final=self.on_final)
        self.estimator = Estimator(
            self.reads,
            queue_version=lambda: self.store.queue_version,
            workers=settings.workers,
            mean_duration=(settings.duration_min + settings.duration_max) / 2,
        )
        self.metrics = ServerMetrics(self.reads.counts_by_state)
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
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

    def close(self) -> None:
        """Stop the background threads and release the database."""
        self.simulator.stop()
        self.heartbeats.stop()
        self.dispatcher.stop()
        self.db.close()


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]
