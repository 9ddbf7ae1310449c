"""The application factory: settings in, a Flask app with its runtime out (flaskr style)."""

from __future__ import annotations

import logging
import math
import time

from flask import Flask

from .callbacks import CallbackPolicy
from .channel import Heartbeats
from .config import Settings
from .delivery import Dispatcher
from .errors import register_error_handlers
from .estimator import MAX_VIEW_AGE_S, Estimator
from .metrics import ServerMetrics
from .observe import RequestObserver, RoutedRequest
from .ratelimit import RateLimiter
from .simulation import Simulator
from .store import JobRecord, NewJob, Store
from .tenants import SYSTEM_CLIENT_ID, bootstrap_local_setup

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class Runtime:
    """Everything one app owns: the store, the simulator, the estimator, metrics, threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.database_url)
        try:
            self._build(settings)
        except BaseException:
            self.store.close()  # lets go of the database: a retry in this process may take it
            raise
        self._started = False

    def _build(self, settings: Settings) -> None:
        self.simulator = Simulator(self.store, settings, on_final=self.on_final)
        self.estimator = Estimator(
            self.store,
            workers=settings.workers,
            mean_duration=(settings.duration_min + settings.duration_max) / 2,
            # only another writer's changes would go unseen, and a sole writer has none
            max_view_age=math.inf if self.store.sole_writer else MAX_VIEW_AGE_S,
        )
        self.metrics = ServerMetrics(self.store.counts_by_state)
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.callback_policy = CallbackPolicy(settings.callback_allow)
        self.dispatcher = Dispatcher(
            self.store,
            settings,
            self.metrics,
            self.callback_policy,
            rng=self.simulator.fraction,
            on_recorded=lambda events: self.heartbeats.concluded(events),
        )
        self.heartbeats = Heartbeats(
            self.store,
            self.dispatcher.post_once,
            interval=settings.heartbeat_interval,
            linger=settings.heartbeat_linger,
        )
        self.admin_token, self.demo_client_id = bootstrap_local_setup(self.store, settings)
        self.demo_job_id = self._create_demo_job() if settings.demo_job else None

    def _create_demo_job(self) -> str:
        if self.store.get_client(SYSTEM_CLIENT_ID) is None:
            self.store.create_client("system", client_id=SYSTEM_CLIENT_ID)
        plan = self.simulator.plan({})
        job, _ = self.store.create_job(
            NewJob(
                client_id=SYSTEM_CLIENT_ID,
                priority=0,
                target_language="es",
                source_url=None,
                callback_url=None,
                metadata={"demo": True},
                **plan,
            ),
            now=time.time(),
        )
        log.info("%s is the demo job (GET /status)", job.id)
        return job.id

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
        self.store.close()


def create_app(settings: Settings | None = None, *, start: bool = True) -> Flask:
    """Build the app: defaults, then the given settings, then blueprints and middleware."""
    from . import api, openapi, ops, tenants

    settings = settings or Settings()
    app = Flask(__name__)
    app.request_class = RoutedRequest  # the route label for RequestObserver
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    runtime = Runtime(settings)
    app.extensions["vt"] = runtime
    register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(tenants.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(openapi.bp)
    app.wsgi_app = RequestObserver(app.wsgi_app, runtime.metrics)  # type: ignore[method-assign]
    if start:
        runtime.start()
    return app
