"""How ``vt`` shows things: tables or JSON, one-line errors with a hint, and waiting with a
progress bar that moves on a timer from the job's estimate."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

import click

from .client import TranslationClient
from .errors import APIError, ConfigurationError, TranslationError, TransportError, job_outcome
from .models import Job, format_time, parse_time

JOB_COLUMNS = (
    "id",
    "status",
    "stage",
    "progress",
    "priority",
    "target_language",
    "created_at",
    "finished_at",
)
REDRAW_S = 0.25


def output(ctx: click.Context, data: Any, columns: Sequence[str] | None = None) -> None:
    """A table (or JSON with ``--json``) on stdout."""
    if ctx.obj["json"]:
        click.echo(json.dumps(data, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    cells = [[cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def cell(value: Any) -> str:
    """One table cell."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def iso_times(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """The named Unix-seconds fields as ISO 8601, as every other time is shown."""
    return {
        k: format_time(v) if k in names and isinstance(v, int | float) else v
        for k, v in data.items()
    }


def hint(exc: TranslationError) -> str:
    """What to try, for the errors people meet first."""
    if isinstance(exc, TransportError):
        return "is it running? `make run` starts both services; `vt status` checks them"
    if isinstance(exc, APIError) and exc.status_code == 401:
        return "check --api-key (VT_API_KEY) or the local set-up file (`make run` writes it)"
    return ""


def errors_as_messages(func: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors become one clear line (with a hint) and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from None
        except TranslationError as exc:
            tip = hint(exc)
            raise click.ClickException(f"{exc}" + (f" ({tip})" if tip else "")) from None

    return wrapper


def wait_with_progress(
    ctx: click.Context, client: TranslationClient, job: Job, timeout: float
) -> None:
    """Wait for a job; a bar on stderr while it runs; the outcome and how it was learned."""
    if job.is_final:
        job_outcome(job)  # failed or cancelled: that error, exit status 1
        click.echo(f"{job.id} had already ended, at {job.finished_at}", err=True)
        output(ctx, job.to_dict(), JOB_COLUMNS)
        return
    bar = ProgressLine(client, job, enabled=not ctx.obj["json"] and sys.stderr.isatty())
    done = bar.run(lambda: client.wait(job.id, timeout=timeout))
    detection = client.detection(job.id)
    result = {
        **done.to_dict(),
        "detected_by": detection.path if detection else None,
        "detection_lag_s": round(detection.lag_s, 3)
        if detection and detection.lag_s is not None
        else None,
        "status_requests": client.stats.status_requests,
    }
    output(ctx, result, (*JOB_COLUMNS, "detected_by", "detection_lag_s", "status_requests"))


class ProgressLine:
    """A one-line progress bar on stderr, redrawn on a timer from the job's estimate, that
    says when the client stops counting on a webhook and asks the server."""

    def __init__(self, client: TranslationClient, job: Job, *, enabled: bool) -> None:
        self._client = client
        self._job = job
        self._enabled = enabled
        self._said: set[str] = set()

    def run(self, wait: Callable[[], Job]) -> Job:
        """Run ``wait`` in a thread, redrawing until it returns (or raises)."""
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["job"] = wait()
            except BaseException as exc:  # handed back to the caller below
                outcome["error"] = exc

        worker = threading.Thread(target=target, name="vt-wait", daemon=True)
        worker.start()
        while worker.is_alive():
            self.draw()
            worker.join(REDRAW_S)
        self._explain()  # what happened after the last redraw
        if self._enabled:
            click.echo("", err=True)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["job"]  # type: ignore[no-any-return]

    def draw(self) -> None:
        """Redraw the line (and say, once, why the server is being asked)."""
        job = self._client.last_known(self._job.id) or self._job
        self._explain()
        if not self._enabled:
            return
        now = time.time()
        start, eta = parse_time(job.started_at), parse_time(job.estimated_completion_at)
        progress = job.progress
        if start is not None and eta is not None and eta > start:
            progress = max(progress, min(0.99, (now - start) / (eta - start)))
        left = f"~{max(0.0, eta - now):.0f}s left" if eta else ""
        filled = int(progress * 30)
        stage = job.stage.value if job.stage else job.status.value
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {progress * 100:3.0f}% {stage} {left}"
        click.echo(f"\r{job.id} {line}".ljust(100), nl=False, err=True)

    def _explain(self) -> None:
        waiting = self._client.stats.waiting
        reasons = {
            "lost": waiting.lost_webhooks > 0,
            "receiver down": self._client.channel_regime == "receiver down",
            "silent": self._client.channel_regime == "silent",
        }
        words = {
            "lost": "its webhook was sent but never arrived: asking the server",
            "receiver down": "the receiver is unreachable: asking the server from the estimate",
            "silent": "no heartbeat from the webhook channel: asking the server from the estimate",
        }
        for reason, now_true in reasons.items():
            if now_true and reason not in self._said:
                self._said.add(reason)
                prefix = "\n" if self._enabled else ""
                click.echo(f"{prefix}{self._job.id}: {words[reason]}", err=True)
