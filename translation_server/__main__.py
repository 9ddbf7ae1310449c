"""``python -m translation_server``: serve the API with waitress until SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import logging
import resource
import signal
from types import FrameType
from typing import Any

import click
from waitress.server import create_server

from client_lib.localsetup import keep_private, write_ready_file
from client_lib.wire import MAX_BODY_BYTES, MAX_HEADER_BYTES, configure_logging

from .app import create_app
from .config import Settings, options, settings_from_options
from .db import DatabaseInUse
from .migrations import SchemaVersionError

log = logging.getLogger("translation_server")


def build_server(app: Any, settings: Settings) -> Any:
    """The waitress server for ``app``, listening; configured through its public settings.

    An idle or trickling connection costs a file descriptor and no thread (waitress hands a
    request to a thread only once its headers are complete), so the connection limit is
    high and poll() replaces select(), which cannot watch descriptors above 1023. waitress
    has no header timeout and no per-address limit: docs/reverse-proxy.md.
    """
    files = raise_open_files_limit()
    if files < settings.connection_limit + 64:
        log.warning(
            "open-files limit %d is below connection-limit %d plus headroom: "
            "connections beyond it will fail to be accepted",
            files,
            settings.connection_limit,
        )
    return create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        ident="vt-translation-server",
        connection_limit=settings.connection_limit,
        channel_timeout=settings.channel_timeout,
        cleanup_interval=settings.cleanup_interval,
        backlog=settings.backlog,
        asyncore_use_poll=True,
        # refused from the declared length, before a byte of the body is read
        max_request_body_size=MAX_BODY_BYTES,
        max_request_header_size=MAX_HEADER_BYTES,
    )


def raise_open_files_limit() -> int:
    """Raise this process's open-files soft limit to its hard limit; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft)


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


@click.command(context_settings={"auto_envvar_prefix": "VT", "show_default": True})
@options
@click.option(
    "--log-level",
    default="INFO",
    envvar="VT_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    help="Logging level (WARNING silences the per-request lines).",
)
def main(log_level: str, **values: Any) -> None:
    """Run the simulated video translation server."""
    # The format uses none of these: not looking them up saves time on every record, and
    # the access log writes one per request.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    keep_private()  # the database and the set-up file hold secrets: owner-only
    configure_logging(log_level)
    settings = settings_from_options(**values)
    try:
        app = create_app(settings)
    except (DatabaseInUse, SchemaVersionError) as exc:
        raise click.ClickException(str(exc)) from None
    server = build_server(app, settings)
    # What start-up made (modules, the app, its tables and caches) lives as long as the
    # process: out of the collector's sight, a full collection takes microseconds instead of
    # ~30 ms of every request thread's time. Start-up's garbage goes first.
    gc.collect()
    gc.freeze()
    port = int(server.effective_port)
    url = f"http://{settings.host}:{port}"
    log.info(
        "listening on %s (workers=%d, database=%s)",
        url,
        settings.workers,
        settings.database_url.split("@")[-1],
    )
    # handlers first: a parent may signal as soon as the ready file appears
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, _raise_exit)
    try:
        if settings.ready_file:
            write_ready_file(settings.ready_file, url, port)
        server.run()
    except SystemExit:
        pass  # a signal before run() began
    finally:
        server.close()
        app.extensions["vt"].close()
        log.info("stopped")


if __name__ == "__main__":
    main()
