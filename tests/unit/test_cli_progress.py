"""The CLI's progress line moves on a timer from the estimate, with no update in between."""

from __future__ import annotations

import time
from typing import Any

import click
import pytest

from client_lib.cliview import ProgressLine
from client_lib.models import Job, JobStatus, Stage, format_time
from client_lib.waitpolicy import WaitStats


class StillClient:
    """A client that learns nothing new while the bar runs."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.stats = type("S", (), {"waiting": WaitStats()})()
        self.channel_regime = "channel"

    def last_known(self, job_id: str) -> Job:
        return self.job


def test_the_bar_advances_between_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    job = Job(
        id="job_1",
        status=JobStatus.PENDING,
        stage=Stage.PROCESSING,
        started_at=format_time(now - 2),
        estimated_completion_at=format_time(now + 8),
    )
    lines: list[str] = []
    monkeypatch.setattr(click, "echo", lambda text="", **kw: lines.append(str(text)))
    bar = ProgressLine(StillClient(job), job, enabled=True)  # type: ignore[arg-type]
    clock = iter([now, now + 4])
    monkeypatch.setattr(time, "time", lambda: next(clock))
    bar.draw()
    bar.draw()
    assert " 20% processing ~8s left" in lines[0] and " 60% processing ~4s left" in lines[1]


def test_switching_to_the_server_is_said_once(monkeypatch: pytest.MonkeyPatch) -> None:
    job = Job(id="job_2", status=JobStatus.PENDING)
    client: Any = StillClient(job)
    said: list[str] = []
    monkeypatch.setattr(click, "echo", lambda text="", **kw: said.append(str(text)))
    bar = ProgressLine(client, job, enabled=False)
    bar.draw()
    client.channel_regime = "receiver down"
    bar.draw()
    bar.draw()
    assert said == ["job_2: the receiver is unreachable: asking the server from the estimate"]
