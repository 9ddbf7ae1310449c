"""``vt``: the command line, built on the client library.

Human-readable tables by default, ``--json`` for scripts. Every error is one line on stderr
and exit status 1, never a traceback. URLs and keys default to the local set-up
(``var/local.json``, written by ``make run``); each has a flag and a ``VT_`` variable.
"""

from __future__ import annotations

import itertools
from typing import Any

import click

from .client import TranslationClient
from .cliview import (
    JOB_COLUMNS,
    cell,
    errors_as_messages,
    iso_times,
    output,
    wait_with_progress,
)
from .errors import ConfigurationError
from .models import JobStatus


def _client(ctx: click.Context) -> TranslationClient:
    """A client from the options given; the library resolves the rest (``config.py``)."""
    opts = ctx.obj
    kwargs = {"receiver_url": opts["receiver"]} if opts["receiver"] else {}
    if opts["callback_url"]:
        kwargs["callback_url"] = opts["callback_url"]
    try:
        return TranslationClient(
            base_url=opts["server"],
            api_key=opts["api_key"],
            admin_token=opts["admin_token"],
            receiver_token=opts["receiver_token"],
            credentials_file=opts["credentials_file"],
            **kwargs,
        )
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", default=None, help="Translation server URL [env VT_SERVER_URL]")
@click.option("--receiver", default=None, help="Callback receiver URL [env VT_RECEIVER_URL]")
@click.option(
    "--callback-url",
    default=None,
    help="Where the server posts webhooks, if not the receiver URL + /webhooks "
    "[env VT_CALLBACK_URL]",
)
@click.option("--api-key", default=None, help="Client API key [env VT_API_KEY]")
@click.option(
    "--receiver-token", default=None, help="The receiver's feed token [env VT_RECEIVER_TOKEN]"
)
@click.option(
    "--admin-token", default=None, help="Operator token, for 'vt clients' [env VT_ADMIN_TOKEN]"
)
@click.option(
    "--credentials-file",
    default=None,
    help="Local set-up file [env VT_CREDENTIALS_FILE; default: $VT_HOME or ./var/local.json]",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def main(
    ctx: click.Context,
    server: str | None,
    receiver: str | None,
    callback_url: str | None,
    api_key: str | None,
    receiver_token: str | None,
    admin_token: str | None,
    credentials_file: str | None,
    as_json: bool,
) -> None:
    """Talk to the video translation server and the callback receiver.

    Each option falls back to its environment variable, then to the local set-up file that
    `make run` writes, then to the local defaults.
    """
    ctx.obj = {
        "server": server,
        "receiver": receiver,
        "callback_url": callback_url,
        "api_key": api_key,
        "receiver_token": receiver_token,
        "admin_token": admin_token,
        "credentials_file": credentials_file,
        "json": as_json,
    }


# ------------------------------------------------------------------ clients


@main.group()
def clients() -> None:
    """Clients (tenants) of the server: needs the admin token."""


@clients.command("create")
@click.argument("name")
@click.pass_context
@errors_as_messages
def clients_create(ctx: click.Context, name: str) -> None:
    """Create a client; its API key and webhook secret are shown only now.

    A server of the local set-up also keeps the secret where the local receiver reads it, so
    the new client's webhooks are accepted there.
    """
    with _client(ctx) as client:
        output(ctx, client.create_client(name))


@clients.command("list")
@click.pass_context
@errors_as_messages
def clients_list(ctx: click.Context) -> None:
    """List clients."""
    with _client(ctx) as client:
        output(ctx, client.list_clients(), ("id", "name"))


@clients.command("rotate-secret")
@click.argument("client_id")
@click.pass_context
@errors_as_messages
def clients_rotate(ctx: click.Context, client_id: str) -> None:
    """Give a client a new webhook secret (the old one signs during the grace period)."""
    with _client(ctx) as client:
        output(ctx, iso_times(client.rotate_secret(client_id), "previous_secret_expires_at"))


# --------------------------------------------------------------------- jobs


@main.group()
def jobs() -> None:
    """Create, inspect, cancel and wait for jobs."""


@jobs.command("create")
@click.option("--language", "target_language", default="es", show_default=True)
@click.option("--source-url", default=None)
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True)
@click.option("--duration", type=float, default=None, help="Pin the simulated duration (s).")
@click.option(
    "--outcome",
    type=click.Choice(["completed", "error", "random"]),
    default=None,
    help="Pin the simulated outcome.",
)
@click.option(
    "--webhook",
    type=click.Choice(["deliver", "drop", "duplicate"]),
    default=None,
    help="Pin what happens to the webhook.",
)
@click.option("--callback-url", default=None, help="[default: the receiver's /webhooks]")
@click.option("--no-callback", is_flag=True, help="Create the job without a webhook.")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job to end.")
@click.option(
    "--timeout",
    type=float,
    default=600,
    show_default=True,
    help="With --wait: give up after this many seconds.",
)
@click.pass_context
@errors_as_messages
def jobs_create(
    ctx: click.Context,
    target_language: str,
    source_url: str | None,
    priority: int,
    duration: float | None,
    outcome: str | None,
    webhook: str | None,
    callback_url: str | None,
    no_callback: bool,
    wait_: bool,
    timeout: float,
) -> None:
    """Create a job (and optionally wait for it)."""
    simulate = {
        k: v
        for k, v in {"duration_s": duration, "outcome": outcome, "webhook": webhook}.items()
        if v is not None
    }
    kwargs: dict[str, Any] = {}
    if no_callback:
        kwargs["callback_url"] = None
    elif callback_url:
        kwargs["callback_url"] = callback_url
    with _client(ctx) as client:
        job = client.create_job(
            target_language=target_language,
            source_url=source_url,
            priority=priority,
            simulate=simulate or None,
            **kwargs,
        )
        if not wait_:
            output(ctx, job.to_dict(), JOB_COLUMNS)
            return
        wait_with_progress(ctx, client, job, timeout)


@jobs.command("get")
@click.argument("job_id")
@click.pass_context
@errors_as_messages
def jobs_get(ctx: click.Context, job_id: str) -> None:
    """Show one job."""
    with _client(ctx) as client:
        job = client.get_job(job_id).to_dict()
        if ctx.obj["json"]:
            output(ctx, job)
        else:
            for key, value in job.items():
                click.echo(f"{key:>24}  {cell(value)}")


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option(
    "--client",
    "client_key",
    default=None,
    help="List the jobs of the client with this API key instead.",
)
@click.pass_context
@errors_as_messages
def jobs_list(ctx: click.Context, status: str | None, limit: int, client_key: str | None) -> None:
    """This client's jobs, newest first."""
    if client_key:
        ctx.obj["api_key"] = client_key
    with _client(ctx) as client:
        found = itertools.islice(client.list_jobs(status=status, limit=min(limit, 100)), limit)
        output(ctx, [j.to_dict() for j in found], JOB_COLUMNS)


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
@errors_as_messages
def jobs_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a pending job."""
    with _client(ctx) as client:
        output(ctx, client.cancel_job(job_id).to_dict(), JOB_COLUMNS)


@jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=float, default=600, show_default=True)
@click.pass_context
@errors_as_messages
def jobs_wait(ctx: click.Context, job_id: str, timeout: float) -> None:
    """Wait for a job to end, with a progress bar from its progress and estimate."""
    with _client(ctx) as client:
        wait_with_progress(ctx, client, client.get_job(job_id), timeout)


# ---------------------------------------------------------------- the rest


@main.command()
@click.argument("job_id")
@click.pass_context
@errors_as_messages
def deliveries(ctx: click.Context, job_id: str) -> None:
    """The webhook delivery attempts of a job."""
    with _client(ctx) as client:
        events = client.deliveries(job_id)
    if ctx.obj["json"]:
        output(ctx, events)
        return
    rows = [
        {"webhook_id": e["webhook_id"], "type": e["type"], "state": e["state"], **a}
        for e in events
        for a in (e["attempt_log"] or [{}])
    ]
    output(
        ctx,
        rows,
        (
            "webhook_id",
            "type",
            "state",
            "attempt",
            "attempted_at",
            "status_code",
            "error",
            "latency_ms",
            "outcome",
            "next_attempt_at",
        ),
    )


@main.command()
@click.pass_context
@errors_as_messages
def status(ctx: click.Context) -> None:
    """Health of the translation server and the callback receiver."""
    with _client(ctx) as client:
        health = client.health()
    rows = [
        {"service": name, "url": url, **info}
        for (name, info), url in zip(
            health.items(), (client.base_url, client.receiver_url), strict=True
        )
    ]
    output(ctx, rows if not ctx.obj["json"] else health)
    if any(info.get("status") != "ok" for info in health.values()):
        ctx.exit(1)
