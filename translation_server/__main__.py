"""``python -m translation_server``: serve the API with waitress until SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import logging
from typing import Any

import click

from client_lib.localsetup import keep_private
from client_lib.wire import configure_logging
from service_common.serving import build_server, serve_until_signalled

from .app import create_app
from .config import options, settings_from_options
from .db import DatabaseInUse
from .migrations import SchemaVersionError

log = logging.getLogger("translation_server")


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
    server = build_server(app, settings, "vt-translation-server")
    # What start-up made (modules, the app, its tables and caches) lives as long as the
    # process: out of the collector's sight, a full collection takes microseconds instead of
    # ~30 ms of every request thread's time. Start-up's garbage goes first.
    gc.collect()
    gc.freeze()
    url = f"http://{settings.host}:{int(server.effective_port)}"
    log.info(
        "listening on %s (workers=%d, database=%s)",
        url,
        settings.workers,
        settings.database_url.split("@")[-1],
    )
    serve_until_signalled(
        server, url, settings.ready_file, on_stop=lambda: app.extensions["vt"].close()
    )


if __name__ == "__main__":
    main()
