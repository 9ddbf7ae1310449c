"""The translation server's settings: one frozen object built from flags and ``VT_`` variables.

Every option is a click flag whose environment variable is ``VT_`` plus the option's name in
upper case (``--error-rate`` is ``VT_ERROR_RATE``); ``python -m translation_server --help``
lists each with its default. Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from client_lib.localsetup import DATA_HOME, DEFAULT_CREDENTIALS_PATH, secret_option

DEFAULT_DATABASE_URL = f"sqlite:///{DATA_HOME / 'server.db'}"
# the first retry at once (a one-off failure heals in milliseconds), then backing off
DEFAULT_RETRY_SCHEDULE = (0, 1, 5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400)
DEFAULT_CALLBACK_ALLOW = ("127.0.0.0/8", "::1/128", "localhost")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be told; defaults are the local simulation's."""

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = DEFAULT_DATABASE_URL
    admin_token: str | None = None
    seed: int | None = None
    threads: int = 4
    workers: int = 4
    duration_min: float = 5.0
    duration_max: float = 15.0
    error_rate: float = 0.1
    max_attempts: int = 1
    estimate_noise: float = 0.2
    fault_drop_webhook: float = 0.0
    fault_duplicate_webhook: float = 0.0
    fault_delay_webhook: float = 0.0
    fault_delay_seconds: float = 5.0
    fault_status_503: float = 0.0
    demo_job: bool = True
    credentials_file: Path | None = DEFAULT_CREDENTIALS_PATH
    webhook_timeout: float = 10.0
    # one client alone may have half of them under way (fairness.py): a burst to one receiver
    # needs that many at once while the receiver holds each answer until its group commit
    webhook_senders: int = 32
    webhook_per_host: int = 0  # 0: three quarters of the senders
    webhook_per_tenant: int = 0  # 0: a quarter of the senders
    webhook_connect_timeout: float = 2.0
    webhook_breaker_failures: int = 5  # 0: no circuit breaker
    webhook_breaker_cooldown: float = 30.0
    webhook_breaker_window: float = 10.0  # ... the failures in a row spanning at least this
    webhook_retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    heartbeat_interval: float = 1.0  # channel heartbeats; 0: none
    heartbeat_linger: float = 10.0
    callback_allow: tuple[str, ...] = DEFAULT_CALLBACK_ALLOW
    secret_grace: float = 86400.0
    rate_limit: float = 0.0
    rate_burst: int = 200
    lease_seconds: float = 10.0  # an instance's lease (leases.py): its jobs wait this long
    ready_file: Path | None = None
    # connections (waitress): open at once, idle seconds before closing, the idle check's
    # period, and the listen backlog
    connection_limit: int = 4096
    channel_timeout: int = 60
    cleanup_interval: int = 10
    backlog: int = 2048

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.duration_min <= self.duration_max:
            problems.append("duration-min must be >= 0 and <= duration-max")
        for name in (
            "error_rate",
            "fault_drop_webhook",
            "fault_duplicate_webhook",
            "fault_delay_webhook",
            "fault_status_503",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name.replace('_', '-')} must be within [0, 1]")
        if self.workers < 1 or self.threads < 1 or self.webhook_senders < 1:
            problems.append("workers, threads and webhook-senders must be at least 1")
        if min(self.webhook_per_host, self.webhook_per_tenant, self.webhook_breaker_failures) < 0:
            problems.append("webhook-per-host, -per-tenant and -breaker-failures must be >= 0")
        if self.webhook_connect_timeout <= 0 or self.webhook_breaker_cooldown <= 0:
            problems.append("webhook-connect-timeout and webhook-breaker-cooldown must be > 0")
        if self.webhook_breaker_window < 0:
            problems.append("webhook-breaker-window must be >= 0")
        if self.max_attempts < 1:
            problems.append("max-attempts must be at least 1")
        if self.heartbeat_interval < 0 or self.heartbeat_linger < 0:
            problems.append("heartbeat-interval and heartbeat-linger must be >= 0")
        if self.estimate_noise < 0:
            problems.append("estimate-noise must be >= 0")
        if self.lease_seconds <= 0:
            problems.append("lease-seconds must be > 0")
        if self.connection_limit < self.threads:
            problems.append("connection-limit must be at least the thread count")
        if self.channel_timeout < 1 or self.cleanup_interval < 1 or self.backlog < 1:
            problems.append("channel-timeout, cleanup-interval and backlog must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (tests and scripts use this)."""
        return dataclasses.replace(self, **changes)


def _schedule(value: str | tuple[float, ...]) -> tuple[float, ...]:
    if isinstance(value, tuple):
        return value
    try:
        out = tuple(float(part) for part in value.replace(" ", "").split(",") if part)
    except ValueError as exc:
        raise click.BadParameter("comma-separated seconds, such as 1,5,30,120") from exc
    if any(s < 0 for s in out):
        raise click.BadParameter("retry delays must be >= 0")
    return out


def _words(value: str | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    return tuple(w for w in value.replace(",", " ").split() if w)


_D = Settings()
_opt = functools.partial(click.option, show_envvar=True)
OPTIONS: list[Callable[[Any], Any]] = [
    _opt("--host", default=_D.host, help="Interface to bind."),
    _opt("--port", default=_D.port, type=int, help="Port to bind (0: any free port)."),
    _opt(
        "--database-url",
        default=_D.database_url,
        help="SQLAlchemy URL of the store (SQLite file by default).",
    ),
    _opt(
        "--admin-token",
        default=None,
        help="Bearer token for operator endpoints such as POST /v1/clients. "
        "Without it, the local set-up's token from the credentials file is used. "
        "Prefer --admin-token-file or the variable: a flag shows in ps.",
    ),
    _opt(
        "--admin-token-file",
        default=None,
        help="File holding the admin token (instead of --admin-token).",
    ),
    _opt("--seed", default=None, type=int, help="Seed of the one random source."),
    _opt(
        "--threads",
        default=_D.threads,
        type=int,
        help="waitress request threads.",
    ),
    _opt("--workers", default=_D.workers, type=int, help="Simulated worker slots."),
    _opt(
        "--duration-min",
        default=_D.duration_min,
        type=float,
        help="Shortest simulated job, seconds.",
    ),
    _opt(
        "--duration-max",
        default=_D.duration_max,
        type=float,
        help="Longest simulated job, seconds.",
    ),
    _opt(
        "--error-rate",
        default=_D.error_rate,
        type=float,
        help="Chance that a processing attempt fails.",
    ),
    _opt(
        "--max-attempts",
        default=_D.max_attempts,
        type=int,
        help="Processing attempts per job (1: an error is final).",
    ),
    _opt(
        "--estimate-noise",
        default=_D.estimate_noise,
        type=float,
        help="Standard deviation of the estimator's per-job distortion factor.",
    ),
    _opt(
        "--fault-drop-webhook",
        default=0.0,
        type=float,
        help="Rate of webhooks silently dropped (not retried).",
    ),
    _opt(
        "--fault-duplicate-webhook",
        default=0.0,
        type=float,
        help="Rate of webhooks delivered twice.",
    ),
    _opt(
        "--fault-delay-webhook",
        default=0.0,
        type=float,
        help="Rate of webhooks delayed by --fault-delay-seconds.",
    ),
    _opt(
        "--fault-delay-seconds",
        default=_D.fault_delay_seconds,
        type=float,
        help="Delay applied to a delayed webhook.",
    ),
    _opt(
        "--fault-status-503",
        default=0.0,
        type=float,
        help="Rate of job status requests answered 503.",
    ),
    _opt(
        "--demo-job/--no-demo-job",
        default=True,
        help="Create the demo job named by GET /status without job_id.",
    ),
    _opt(
        "--credentials-file",
        default=str(DEFAULT_CREDENTIALS_PATH),
        help="Local set-up file: the demo client is created once and written here ('' to disable).",
    ),
    _opt(
        "--webhook-timeout",
        default=_D.webhook_timeout,
        type=float,
        help="Seconds a webhook attempt may take.",
    ),
    _opt("--webhook-senders", default=_D.webhook_senders, type=int, help="Webhook sender threads."),
    _opt(
        "--webhook-per-host",
        default=_D.webhook_per_host,
        type=int,
        help="Most attempts under way to one callback host (any port), so a slow host "
        "cannot hold every sender (0: three quarters of the senders).",
    ),
    _opt(
        "--webhook-per-tenant",
        default=_D.webhook_per_tenant,
        type=int,
        help="Most attempts under way for one client, so one tenant's slow endpoints "
        "hold at most that many senders (0: a quarter of the senders).",
    ),
    _opt(
        "--webhook-connect-timeout",
        default=_D.webhook_connect_timeout,
        type=float,
        help="Seconds a webhook attempt may take to connect (within --webhook-timeout).",
    ),
    _opt(
        "--webhook-breaker-failures",
        default=_D.webhook_breaker_failures,
        type=int,
        help="Failed attempts in a row after which an endpoint is paused (0: never).",
    ),
    _opt(
        "--webhook-breaker-cooldown",
        default=_D.webhook_breaker_cooldown,
        type=float,
        help="Seconds a failing endpoint is first paused; doubled after each failed trial.",
    ),
    _opt(
        "--webhook-breaker-window",
        default=_D.webhook_breaker_window,
        type=float,
        help="Seconds the failed attempts in a row must span before an endpoint is paused.",
    ),
    _opt(
        "--webhook-retry-schedule",
        default=",".join(f"{s:g}" for s in DEFAULT_RETRY_SCHEDULE),
        help="Delays between webhook attempts, comma-separated seconds.",
    ),
    _opt(
        "--heartbeat-interval",
        default=_D.heartbeat_interval,
        type=float,
        help="Seconds between channel heartbeats to an endpoint with jobs in flight (0: none).",
    ),
    _opt(
        "--heartbeat-linger",
        default=_D.heartbeat_linger,
        type=float,
        help="Seconds an endpoint still gets heartbeats after its last job event.",
    ),
    _opt(
        "--callback-allow",
        default=" ".join(DEFAULT_CALLBACK_ALLOW),
        help="Hosts and CIDR networks callback URLs may point to.",
    ),
    _opt(
        "--secret-grace",
        default=_D.secret_grace,
        type=float,
        help="Seconds an old webhook secret still signs after a rotation.",
    ),
    _opt(
        "--rate-limit",
        default=_D.rate_limit,
        type=float,
        help="Requests per second per client (0: unlimited).",
    ),
    _opt(
        "--rate-burst",
        default=_D.rate_burst,
        type=int,
        help="Burst size of the per-client rate limit.",
    ),
    _opt(
        "--connection-limit",
        default=_D.connection_limit,
        type=int,
        help="Connections open at once; beyond it new ones wait in the listen backlog.",
    ),
    _opt(
        "--channel-timeout",
        default=_D.channel_timeout,
        type=int,
        help="Seconds a connection may sit idle (no request under way) before it is closed.",
    ),
    _opt(
        "--cleanup-interval",
        default=_D.cleanup_interval,
        type=int,
        help="Seconds between checks for idle connections.",
    ),
    _opt("--backlog", default=_D.backlog, type=int, help="Listen backlog of the socket."),
    _opt(
        "--lease-seconds",
        default=_D.lease_seconds,
        type=float,
        help="This instance's lease on the database, renewed every third of it: when it stops "
        "unannounced, other instances take its running jobs over once the lease has passed.",
    ),
    _opt(
        "--ready-file",
        default=None,
        help="Write {url, port, pid} as JSON here once listening (tests use it).",
    ),
]


def options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command with every server option."""
    for option in reversed(OPTIONS):
        func = option(func)
    return func


def settings_from_options(**values: Any) -> Settings:
    """Build settings from the parsed click options."""
    values["webhook_retry_schedule"] = _schedule(values["webhook_retry_schedule"])
    values["callback_allow"] = _words(values["callback_allow"])
    cred = values.get("credentials_file")
    values["credentials_file"] = Path(cred) if cred else None
    ready = values.get("ready_file")
    values["ready_file"] = Path(ready) if ready else None
    try:
        values["admin_token"] = secret_option(
            values.get("admin_token"), values.pop("admin_token_file", None), "admin-token"
        )
        return Settings(**values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
