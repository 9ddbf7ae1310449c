"""The end-to-end demo: both real services, five jobs, one client waiting for all of them.

Run alone, with its story in the log, by ``make demo``; ``make test`` runs it first too.
By default it starts its own server and receiver on free ports. Against services started by
``make run``: ``--demo-server URL`` (and ``--demo-receiver URL`` when the receiver is not at
make run's default address; credentials from var/local.json, or ``--demo-credentials``;
the README shows the whole command). There, the job "created while the receiver is down"
gets a callback URL on a port where nothing listens, since the test cannot stop a receiver
it did not start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client_lib import Job, JobStatus, TranslationClient
from client_lib.localsetup import DEFAULT_CREDENTIALS_PATH
from client_lib.models import parse_time
from tests.e2e.servers import Stack, start_receiver, start_stack
from tests.support import Service, wait_until

log = logging.getLogger("demo")
pytestmark = pytest.mark.timeout(120)


@dataclass
class Scenario:
    """One job of the story and what must become of it."""

    name: str
    simulate: dict[str, object]
    expect_status: JobStatus
    expect_path: str
    job: Job | None = None


@dataclass
class Target:
    """Where the demo runs: URLs, credentials, and a receiver it may stop (or not)."""

    server_url: str
    receiver_url: str
    credentials: str
    stack: Stack | None
    workdir: Path
    own_receiver: Service | None = None


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    server = request.config.getoption("--demo-server")
    if server:
        creds = request.config.getoption("--demo-credentials") or str(DEFAULT_CREDENTIALS_PATH)
        yield Target(server, request.config.getoption("--demo-receiver"), creds, None, tmp_path)
        return
    stack = start_stack(tmp_path, "--webhook-retry-schedule", "1,2,2,2,2,2,2,2", "--workers", "8")
    try:
        yield Target(stack.server.url, stack.receiver.url, str(stack.creds), stack, tmp_path)
    finally:
        stack.stop()


def story(job: Job) -> None:
    """Log each status change the client sees."""
    stage = f", {job.stage.value} {job.progress * 100:.0f} %" if job.stage else ""
    log.info("%s is %s%s", job.id, job.status.value, stage)


def test_demo(target: Target) -> None:
    scenarios = [
        Scenario(
            "completes", {"duration_s": 3.0, "outcome": "completed"}, JobStatus.COMPLETED, "webhook"
        ),
        Scenario("errors", {"duration_s": 2.0, "outcome": "error"}, JobStatus.ERROR, "webhook"),
        Scenario("is cancelled", {"duration_s": 60.0}, JobStatus.CANCELLED, "webhook"),
        Scenario(
            "loses its webhook",
            {"duration_s": 1.5, "outcome": "completed", "webhook": "drop"},
            JobStatus.COMPLETED,
            "poll",
        ),
        Scenario(
            "is created while the receiver is down",
            {"duration_s": 2.0, "outcome": "completed"},
            JobStatus.COMPLETED,
            "poll",
        ),
    ]
    with TranslationClient(
        base_url=target.server_url,
        receiver_url=target.receiver_url,
        credentials_file=target.credentials,
        seed=11,
    ) as client:
        log.info("-- part 1: four jobs, one client, one feed connection --")
        for s in scenarios[:4]:
            s.job = client.create_job(simulate=s.simulate, metadata={"demo": s.name})
            log.info(
                "created %s: a job that %s (estimated done at %s)",
                s.job.id,
                s.name,
                s.job.estimated_completion_at,
            )
        cancelled = client.cancel_job(scenarios[2].job.id)  # type: ignore[union-attr]
        log.info("cancelled %s while it was pending", cancelled.id)
        ended = wait_and_tell(client, scenarios[:4])
        log.info("-- part 2: the receiver goes down --")
        scenarios[4].job, restarting = create_while_receiver_down(client, target, scenarios[4])
        ended |= wait_and_tell(client, scenarios[4:])
        if restarting is not None:
            restarting.join(10)
        check_outcomes(client, scenarios, ended)
        leave_nothing_retrying(client, target, scenarios[4].job)  # type: ignore[arg-type]


def wait_and_tell(client: TranslationClient, scenarios: list[Scenario]) -> dict[str, Job]:
    """Wait for the scenarios' jobs, telling how each end was learned."""
    ended = {}
    for job in client.as_completed([s.job.id for s in scenarios if s.job], timeout=60):
        detection = client.detection(job.id)
        assert detection is not None
        how = (
            "webhook received"
            if detection.path == "webhook"
            else "no webhook in time; found by polling"
        )
        log.info(
            "%s %s: %s, %.0f ms after it ended",
            job.id,
            job.status.value,
            how,
            (detection.lag_s or 0) * 1000,
        )
        ended[job.id] = job
    return ended


def create_while_receiver_down(
    client: TranslationClient, target: Target, scenario: Scenario
) -> tuple[Job, threading.Timer | None]:
    """Stop the receiver, create the job, bring the receiver back after the job has ended:
    meanwhile the client must fall back to polling. Against services of ``make run``, whose
    receiver is not ours to stop, the job's callback is a receiver of the demo's own."""
    stack = target.stack
    own = None
    if stack is None:
        own = start_receiver(target.workdir, Path(target.credentials))
        own.stop()
    else:
        stack.receiver.stop()
    log.info("receiver stopped")
    job = client.create_job(
        simulate=scenario.simulate,
        metadata={"demo": scenario.name},
        callback_url=f"{own.url}/webhooks" if own else client.default_callback_url,
    )
    log.info("created %s while the receiver is down", job.id)

    def restart() -> None:
        if stack is not None:
            stack.restart_receiver()
        else:
            assert own is not None
            target.own_receiver = start_receiver(
                target.workdir, Path(target.credentials), port=own.port
            )
        log.info("receiver restarted on the same port")

    timer = threading.Timer(float(scenario.simulate["duration_s"]) + 1.0, restart)  # type: ignore[arg-type]
    timer.start()
    return job, timer


def leave_nothing_retrying(client: TranslationClient, target: Target, job: Job) -> None:
    """The job's webhook goes to the demo's own receiver: have it delivered there (at once,
    by asking for a redelivery) before that receiver stops, so that the services of ``make
    run`` are not left retrying for days."""
    own = target.own_receiver
    if own is None:
        return
    client.redeliver(job.id)
    wait_until(
        lambda: [e for e in client.deliveries(job.id) if e["state"] == "delivered"],
        timeout=30,
        message=f"{job.id}'s webhook delivered to the demo's own receiver",
    )
    own.stop()
    log.info("the demo's own receiver stopped, its webhook delivered: nothing left retrying")


def _seconds(s: Scenario) -> float:
    return float(s.simulate["duration_s"])  # type: ignore[arg-type]


def check_outcomes(
    client: TranslationClient, scenarios: list[Scenario], ended: dict[str, Job]
) -> None:
    """Each job ended as planned, was learned the planned way, promptly and cheaply."""
    for s in scenarios:
        assert s.job is not None
        job, detection = ended[s.job.id], client.detection(s.job.id)
        assert detection is not None
        assert (job.status, detection.path) == (s.expect_status, s.expect_path), s.name
        assert detection.lag_s is not None
        # a webhook is near-instant; a lost one is told by the channel's next heartbeat; with
        # the receiver down, polls from the estimate find the job within a few seconds
        limits = {"webhook": 1.0, "poll": 1.5 if "webhook" in s.simulate else _seconds(s)}
        limit = limits[detection.path]
        assert detection.lag_s < limit, f"{s.name}: detected {detection.lag_s:.2f}s late"
        if s.expect_status is JobStatus.COMPLETED:
            assert job.result and job.result["video_url"]
            assert parse_time(job.finished_at) is not None
    stats = client.stats
    log.info(
        "status requests: %d for %d jobs; webhooks used: %d; found by polling: %d",
        stats.status_requests,
        len(scenarios),
        stats.waiting.webhooks_used,
        stats.waiting.polls_resolved,
    )
    assert stats.waiting.webhooks_used == 3 and stats.waiting.polls_resolved == 2
    assert stats.status_requests <= 6
