"""``python -m callback_receiver``: serve the receiver with waitress until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from client_lib.localsetup import keep_private, secret_option
from client_lib.wire import configure_logging
from service_common.serving import build_server, serve_until_signalled

from .app import close_app, create_app
from .config import Settings
from .feed_auth import get_feed_token
from .migrations import SchemaVersionError
from .receiver import get_receiver
from .signatures import parse_secret

log = logging.getLogger("callback_receiver")
_D = Settings()


def _secrets(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """Split each value on commas and spaces; reject (without echoing) an unusable secret."""
    try:
        return split_secrets(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def split_secrets(values: tuple[str, ...]) -> tuple[str, ...]:
    """The secrets of values separated by commas or white space; ValueError (not echoing
    it) naming an unusable one by its position."""
    out = tuple(w for v in values for w in v.replace(",", " ").split())
    for index, secret in enumerate(out, 1):
        try:
            parse_secret(secret)
        except ValueError as exc:
            raise ValueError(f"secret #{index}: {exc}") from exc
    return out


@click.command(context_settings={"show_default": True, "max_content_width": 100})
@click.option(
    "--host",
    default=_D.host,
    envvar="VT_RECEIVER_HOST",
    show_envvar=True,
    help="Interface to bind.",
)
@click.option(
    "--port",
    default=_D.port,
    type=int,
    envvar="VT_RECEIVER_PORT",
    show_envvar=True,
    help="Port to bind (0: any free port).",
)
@click.option(
    "--database-url",
    default=_D.database_url,
    envvar="VT_RECEIVER_DATABASE_URL",
    show_envvar=True,
    help="SQLAlchemy URL of the store (SQLite file by default).",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    callback=_secrets,
    envvar="VT_WEBHOOK_SECRETS",
    show_envvar=True,
    help="Accepted webhook secret (whsec_...), repeatable; the variable holds several. "
    "Prefer --secret-file (ps shows flags).",
    show_default="none",
)
@click.option(
    "--secret-file",
    default=None,
    envvar="VT_WEBHOOK_SECRETS_FILE",
    show_envvar=True,
    help="File holding accepted webhook secrets (separated by spaces, commas or lines), "
    "besides --secret.",
)
@click.option(
    "--credentials-file",
    default=str(_D.credentials_file),
    envvar="VT_CREDENTIALS_FILE",
    show_envvar=True,
    help="Local set-up file whose webhook secret is also accepted, re-read when it "
    "changes ('' to disable).",
)
@click.option(
    "--tolerance",
    default=_D.tolerance_s,
    type=float,
    envvar="VT_WEBHOOK_TOLERANCE",
    show_envvar=True,
    help="Seconds a webhook-timestamp may differ from now.",
)
@click.option(
    "--threads",
    default=_D.threads,
    type=int,
    envvar="VT_RECEIVER_THREADS",
    show_envvar=True,
    help="waitress request threads.",
)
@click.option(
    "--max-waiters",
    default=None,
    type=int,
    envvar="VT_RECEIVER_MAX_WAITERS",
    show_envvar=True,
    show_default="threads - 32",
    help="Long-polls that may block at once; more get 503 Retry-After at once.",
)
@click.option(
    "--max-wait",
    default=_D.max_wait_s,
    type=float,
    envvar="VT_RECEIVER_MAX_WAIT",
    show_envvar=True,
    help="Longest wait= a long-poll may ask for, seconds (<= 60).",
)
@click.option(
    "--feed-token",
    default=None,
    envvar="VT_RECEIVER_FEED_TOKEN",
    show_envvar=True,
    show_default="the credentials file's",
    help="Bearer token the feed requires (16+ characters); prefer the file or variable.",
)
@click.option(
    "--feed-token-file",
    default=None,
    envvar="VT_RECEIVER_FEED_TOKEN_FILE",
    show_envvar=True,
    help="File holding the feed's bearer token (instead of --feed-token).",
)
@click.option(
    "--connection-limit",
    default=_D.connection_limit,
    type=int,
    envvar="VT_RECEIVER_CONNECTION_LIMIT",
    show_envvar=True,
    help="Connections open at once; beyond it new ones wait in the listen backlog.",
)
@click.option(
    "--channel-timeout",
    default=_D.channel_timeout,
    type=int,
    envvar="VT_RECEIVER_CHANNEL_TIMEOUT",
    show_envvar=True,
    help="Seconds a connection may sit idle (no request under way) before it is closed.",
)
@click.option(
    "--cleanup-interval",
    default=_D.cleanup_interval,
    type=int,
    envvar="VT_RECEIVER_CLEANUP_INTERVAL",
    show_envvar=True,
    help="Seconds between checks for idle connections.",
)
@click.option(
    "--backlog",
    default=_D.backlog,
    type=int,
    envvar="VT_RECEIVER_BACKLOG",
    show_envvar=True,
    help="Listen backlog of the socket.",
)
@click.option(
    "--ingest-batch-max",
    default=_D.ingest_batch_max,
    type=int,
    envvar="VT_RECEIVER_INGEST_BATCH_MAX",
    show_envvar=True,
    help="Webhooks committed in one transaction at most (1: one transaction each).",
)
@click.option(
    "--ready-file",
    default=None,
    envvar="VT_RECEIVER_READY_FILE",
    show_envvar=True,
    help="Write {url, port, pid} as JSON here once listening (tests use it).",
)
@click.option(
    "--log-level",
    default="INFO",
    envvar="VT_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging threshold.",
)
def main(**options: Any) -> None:
    """Run the callback receiver: verified, durable, de-duplicated webhooks and a change feed."""
    keep_private()  # the database holds what the webhooks carried: owner-only
    configure_logging(options.pop("log_level"))
    settings = _settings(options)
    sys.exit(serve(settings))


def _settings(options: dict[str, Any]) -> Settings:
    cred = options.pop("credentials_file")
    ready = options.pop("ready_file")
    try:
        options["feed_token"] = secret_option(
            options.get("feed_token"), options.pop("feed_token_file"), "feed-token"
        )
        from_file = secret_option(None, options.pop("secret_file"), "secret")
        options["secrets"] = (*options["secrets"], *split_secrets((from_file or "",)))
        return Settings(
            credentials_file=Path(cred) if cred else None,
            ready_file=Path(ready) if ready else None,
            tolerance_s=options.pop("tolerance"),
            max_wait_s=options.pop("max_wait"),
            **options,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def serve(settings: Settings) -> int:
    """Serve until a signal; returns the exit code (0 on SIGTERM/SIGINT)."""
    try:
        app = create_app(settings)
    except SchemaVersionError as exc:
        raise click.ClickException(str(exc)) from None
    server = build_server(app, settings, "callback_receiver")
    url = f"http://{settings.host}:{int(server.effective_port)}"
    receiver = get_receiver(app)
    if not settings.secrets and settings.credentials_file is None:
        log.warning("no webhook secret configured: every webhook will be refused (401)")
    if settings.feed_token is None:
        log.info("feed token: the receiver_token of %s", settings.credentials_file)
        if get_feed_token(app).current() is None:
            log.warning(
                "%s holds no receiver_token yet: the feed answers 401 until it does",
                settings.credentials_file,
            )
    log.info(
        "listening on %s (threads=%d, max waiters=%d)", url, settings.threads, settings.waiter_limit
    )
    # A signal releases the long-polls first (waitress waits for busy threads); requests under
    # way finish their transactions (a webhook committed but not yet answered is simply
    # redelivered and de-duplicated), then the store closes.
    serve_until_signalled(
        server,
        url,
        settings.ready_file,
        on_signal=receiver.feed.close,
        on_stop=lambda: close_app(app),
    )
    return 0


if __name__ == "__main__":
    main()
