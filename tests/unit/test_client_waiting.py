"""The waiting core through the sync client, in virtual time: no sockets, no sleeps.

The fake services play the server (jobs, numbered webhooks, retries, heartbeats) and the
receiver (the feed, outages) on a fake clock. Each cell of the scenario matrix (shape x fault)
is a test with the goals of the benchmark; the rest pin single behaviours.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest

from client_lib import (
    JobCancelled,
    JobFailed,
    JobStatus,
    TranslationClient,
    WaitTimeout,
)
from client_lib.actions import Lookup, PinFeed, Poll, ReadFeed
from client_lib.models import ChannelStatus, Event, Job
from client_lib.waiting import FEED_FILTER_MAX, WaitCore
from tests.fakes import ENDPOINT, RECEIVER, SERVER, T0, FakeClock, FakeJob, FakeServices


def make_client(services: FakeServices, clock: FakeClock, tmp_path: Any, seed: int = 3) -> Any:
    return TranslationClient(
        base_url=SERVER,
        receiver_url=RECEIVER,
        api_key="vt_test",
        credentials_file=str(tmp_path / "none.json"),
        transport=services,
        clock=clock,
        seed=seed,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def services(clock: FakeClock) -> FakeServices:
    return FakeServices(clock)


@pytest.fixture
def client(services: FakeServices, clock: FakeClock, tmp_path: Any) -> TranslationClient:
    return make_client(services, clock, tmp_path)


# ------------------------------------------------------------------ the matrix


@dataclasses.dataclass
class Outcome:
    """What one cell measured: lag per job (from its end, or from when it was asked for if
    later), whose webhook was lost, and the status requests the server counted."""

    lags: dict[str, float]
    lost: set[str]
    status_requests: int

    def pct(self, ids: set[str] | None, q: float) -> float:
        values = sorted(v for k, v in self.lags.items() if ids is None or k in ids)
        return values[min(len(values) - 1, int(q * len(values)))]


FAULTS: dict[str, Callable[[FakeServices], None]] = {
    "none": lambda s: None,
    "drop 1/10": lambda s: None,
    "drop all": lambda s: None,
    "receiver down": lambda s: s.receiver_down.append((0, T0 + 10_000)),
    "receiver flapping": lambda s: s.receiver_down.extend(
        (T0 + 10 * k + 7, T0 + 10 * k + 10) for k in range(10)
    ),
    "duplicates": lambda s: None,
    "503 then retry": lambda s: setattr(s, "first_attempt_503", True),
}


def webhook_mode(fault: str, index: int) -> str:
    if fault == "drop all" or (fault == "drop 1/10" and index % 10 == 9):
        return "drop"
    return "duplicate" if fault == "duplicates" else "deliver"


def plans(n: int, fault: str, seed: int = 11) -> list[dict[str, Any]]:
    """Jobs of 5-15 s whose estimates are off by ~20 %, seeded."""
    rng = random.Random(seed)
    return [
        {
            "duration_s": rng.uniform(5, 15),
            "estimate_factor": max(0.3, rng.gauss(1.0, 0.2)),
            "webhook": webhook_mode(fault, i),
        }
        for i in range(n)
    ]


def world(fault: str, tmp_path: Any, seed: int = 3) -> tuple[FakeServices, TranslationClient]:
    clock = FakeClock()
    services = FakeServices(clock)
    FAULTS[fault](services)
    return services, make_client(services, clock, tmp_path, seed)


def lag_of(client: TranslationClient, job_id: str, asked: float) -> float:
    detection = client.detection(job_id)
    assert detection is not None and detection.job.finished_at is not None
    finished = detection.detected_at - (detection.lag_s or 0.0)
    return detection.detected_at - max(finished, asked)


def run_one_job(fault: str, tmp_path: Any) -> Outcome:
    """Callers each create one job and wait for it (independent clients)."""
    lags, lost, requests = {}, set(), 0
    for n, plan in enumerate(plans(20, fault)):
        services, client = world(fault, tmp_path, seed=n)
        job = client.create_job(simulate=plan)
        client.wait(job.id, timeout=120)
        lags[f"{n}"] = lag_of(client, job.id, T0)
        if plan["webhook"] == "drop":
            lost.add(f"{n}")
        requests += services.requests["status"]
    return Outcome(lags, lost, requests)


def run_sequential(fault: str, tmp_path: Any) -> Outcome:
    """One caller creates ten jobs, then waits on each in turn."""
    services, client = world(fault, tmp_path)
    jobs = [(client.create_job(simulate=p), p) for p in plans(10, fault)]
    lags, lost = {}, set()
    for job, plan in jobs:
        asked = services.clock.now()
        client.wait(job.id, timeout=120)
        lags[job.id] = lag_of(client, job.id, asked)
        if plan["webhook"] == "drop":
            lost.add(job.id)
    return Outcome(lags, lost, services.requests["status"])


def run_as_completed(fault: str, tmp_path: Any, n: int = 200) -> Outcome:
    """One caller creates many jobs and takes them as they end."""
    services, client = world(fault, tmp_path)
    jobs = {client.create_job(simulate=p).id: p for p in plans(n, fault)}
    ended = list(client.as_completed(list(jobs), timeout=120))
    assert len(ended) == n
    lags = {i: lag_of(client, i, T0) for i in jobs}
    lost = {i for i, p in jobs.items() if p["webhook"] == "drop"}
    return Outcome(lags, lost, services.requests["status"])


def run_processes(fault: str, tmp_path: Any, processes: int = 10, each: int = 20) -> Outcome:
    """Client processes sharing the services, each waiting on its own jobs.

    Each process runs in its own copy of the world holding every process's jobs (the same
    plans, so the same feed and heartbeats): the processes are independent, so running them
    one after another on their own clocks is the same as running them at once.
    """
    everything = plans(processes * each, fault)
    lags, lost, requests = {}, set(), 0
    for p in range(processes):
        services, client = world(fault, tmp_path, seed=p)
        for q in range(processes):
            if q != p:
                for i, plan in enumerate(everything[q * each : (q + 1) * each]):
                    services.add_job(
                        f"p{q}_{i}",
                        plan["duration_s"],
                        factor=plan["estimate_factor"],
                        webhook=plan["webhook"],
                    )
        mine = {
            client.create_job(simulate=plan).id: plan
            for plan in everything[p * each : (p + 1) * each]
        }
        assert len(list(client.as_completed(list(mine), timeout=120))) == each
        lags.update({f"{p}/{i}": lag_of(client, i, T0) for i in mine})
        lost |= {f"{p}/{i}" for i, plan in mine.items() if plan["webhook"] == "drop"}
        requests += services.requests["status"]
    return Outcome(lags, lost, requests)


SHAPES = {
    "one job": run_one_job,
    "sequential": run_sequential,
    "as_completed": run_as_completed,
    "processes": run_processes,
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("fault", ["none", "duplicates"])
def test_healthy_cells_cost_no_status_request(shape: str, fault: str, tmp_path: Any) -> None:
    result = SHAPES[shape](fault, tmp_path)
    assert result.status_requests == 0
    assert result.pct(None, 0.5) <= 0.015 and result.pct(None, 0.99) <= 0.050


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_first_attempt_answered_503_is_healed_by_the_servers_prompt_retry(
    shape: str, tmp_path: Any
) -> None:
    result = SHAPES[shape]("503 then retry", tmp_path)
    assert result.status_requests == 0
    assert result.pct(None, 0.5) <= 0.015 and result.pct(None, 0.99) <= 0.050


@pytest.mark.parametrize("shape", list(SHAPES))
def test_one_lost_webhook_in_ten_is_found_within_a_second(shape: str, tmp_path: Any) -> None:
    result = SHAPES[shape]("drop 1/10", tmp_path)
    assert result.lost
    assert result.pct(result.lost, 0.5) <= 1.5 and result.pct(result.lost, 0.99) <= 3.0
    assert result.status_requests <= 2 * len(result.lost)
    others = set(result.lags) - result.lost
    assert result.pct(others, 0.99) <= 0.050


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("fault", ["drop all", "receiver down", "receiver flapping"])
def test_every_webhook_missing_costs_at_most_three_requests_a_job(
    shape: str, fault: str, tmp_path: Any
) -> None:
    result = SHAPES[shape](fault, tmp_path)
    assert result.pct(None, 0.5) <= 1.0
    assert result.status_requests <= 3 * len(result.lags)


# ------------------------------------------------------- the shapes that failed


def test_jobs_waited_in_turn_keep_the_events_that_came_meanwhile(
    client: TranslationClient, services: FakeServices, clock: FakeClock
) -> None:
    """Five 10 s jobs, waited one after another: every later one is known when asked."""
    jobs = [client.create_job(simulate={"duration_s": 10.0 + i * 0.01}) for i in range(5)]
    for job in jobs:
        asked = clock.now()
        client.wait(job.id, timeout=60)
        assert client.detection(job.id).path == "webhook"  # type: ignore[union-attr]
        assert lag_of(client, job.id, asked) <= 0.02
    assert services.requests["status"] == 0


def test_one_lost_webhook_is_found_within_a_second_of_the_end(
    client: TranslationClient, services: FakeServices
) -> None:
    job = client.create_job(simulate={"duration_s": 10.0, "webhook": "drop"})
    client.wait(job.id, timeout=60)
    detection = client.detection(job.id)
    assert detection and detection.path == "poll"
    assert detection.lag_s is not None and detection.lag_s <= 1.0
    assert services.requests["status"] == 1
    assert client.stats.waiting.lost_webhooks == 1


def test_lost_webhooks_waited_in_turn_cost_one_request_each(
    client: TranslationClient, services: FakeServices, clock: FakeClock
) -> None:
    jobs = [client.create_job(simulate={"duration_s": 2.0, "webhook": "drop"}) for _ in range(5)]
    for job in jobs:
        asked = clock.now()
        client.wait(job.id, timeout=60)
        assert lag_of(client, job.id, asked) <= 1.0
    assert services.requests["status"] <= 5


def test_one_missed_conclusion_does_not_switch_to_polling_for_good(
    client: TranslationClient, services: FakeServices
) -> None:
    """After a lost webhook, the next jobs are again learned from webhooks alone."""
    lost = client.create_job(simulate={"duration_s": 3.0, "webhook": "drop"})
    client.wait(lost.id, timeout=60)
    before = services.requests["status"]
    later = [client.create_job(simulate={"duration_s": 5.0 + i}) for i in range(3)]
    for job in later:
        client.wait(job.id, timeout=60)
        assert client.detection(job.id).path == "webhook"  # type: ignore[union-attr]
    assert services.requests["status"] == before


# ------------------------------------------------------------ single behaviours


def test_webhook_first_costs_no_status_request(
    client: TranslationClient, services: FakeServices
) -> None:
    job = client.create_job(simulate={"duration_s": 5.0})
    done = client.wait(job.id, timeout=60)
    detection = client.detection(job.id)
    assert done.status is JobStatus.COMPLETED and detection is not None
    assert detection.path == "webhook" and detection.lag_s == pytest.approx(0.01, abs=0.002)
    assert services.requests["status"] == 0 and client.stats.status_requests == 0
    assert client.stats.waiting.webhooks_used == 1


def test_a_retry_due_late_is_not_waited_for(
    client: TranslationClient, services: FakeServices
) -> None:
    """The receiver was down when the job ended; the server retries in seconds: ask now."""
    services.receiver_down = [(T0 + 4.5, T0 + 5.5)]
    job = client.create_job(simulate={"duration_s": 5.0})
    client.wait(job.id, timeout=60)
    detection = client.detection(job.id)
    assert detection is not None and detection.lag_s is not None and detection.lag_s <= 2.5


def test_receiver_down_from_the_start_polls_from_the_estimate(
    client: TranslationClient, services: FakeServices
) -> None:
    services.receiver_down = [(0, T0 + 10_000)]
    job = client.create_job(simulate={"duration_s": 10.0})
    client.wait(job.id, timeout=60)
    detection = client.detection(job.id)
    assert detection and detection.path == "poll" and detection.lag_s is not None
    assert detection.lag_s <= 1.2  # first poll at 95 % of the estimate, then growing steps
    assert services.requests["status"] <= 3
    assert client.stats.waiting.receiver_outages == 1


def test_receiver_dies_mid_wait_and_comes_back(
    client: TranslationClient, services: FakeServices
) -> None:
    services.receiver_down = [(T0 + 2, T0 + 9)]
    first = client.create_job(simulate={"duration_s": 5.0})  # ends while the receiver is down
    second = client.create_job(simulate={"duration_s": 20.0})  # ends after it is back
    ended = {j.id: j for j in client.as_completed([first.id, second.id], timeout=60)}
    assert set(ended) == {first.id, second.id}
    assert client.detection(first.id).path == "poll"  # type: ignore[union-attr]
    assert client.detection(second.id).path == "webhook"  # type: ignore[union-attr]
    assert client.stats.waiting.receiver_outages == 1
    polls_after_recovery = [t for t in services.status_poll_times if t >= T0 + 10]
    assert polls_after_recovery == []  # back on the feed: no more status requests


def test_duplicate_webhook_and_poll_report_the_job_once(
    client: TranslationClient, services: FakeServices
) -> None:
    services.receiver_down = [(T0 + 4.9, T0 + 9)]
    job = client.create_job(simulate={"duration_s": 5.0, "webhook": "duplicate"})
    updates: list[str] = []
    done = client.wait(job.id, timeout=60, on_update=lambda j: updates.append(j.status.value))
    assert done.status is JobStatus.COMPLETED
    assert client.detection(job.id).path == "poll"  # type: ignore[union-attr]
    # the two webhooks arrive later, when the receiver is back: the feed, read for the job
    # followed then only, does not even bring them, and the job was reported once
    other = client.create_job(simulate={"duration_s": 60.0})  # the retries come meanwhile
    client.wait(other.id, timeout=90)
    assert client.detection(other.id).path == "webhook"  # type: ignore[union-attr]
    assert services.requests["feed for some jobs"] >= 1
    assert client.stats.waiting.duplicate_reports_dropped == 0
    assert updates.count("completed") == 1


def test_a_busy_feed_is_retried_as_it_asks_not_taken_for_an_outage(
    client: TranslationClient, services: FakeServices
) -> None:
    services.feed_busy_until = T0 + 2.5
    job = client.create_job(simulate={"duration_s": 5.0})
    client.wait(job.id, timeout=60)
    assert client.detection(job.id).path == "webhook"  # type: ignore[union-attr]
    assert services.requests["status"] == 0 and client.stats.waiting.receiver_outages == 0
    assert 2 <= services.requests["feed busy"] <= 4  # once a second, as Retry-After said


def test_silent_channel_falls_back_to_polling(
    client: TranslationClient, services: FakeServices
) -> None:
    """A server that sends no heartbeats: webhooks still count, and jobs are also polled."""
    services.heartbeats = False
    job = client.create_job(simulate={"duration_s": 10.0, "webhook": "drop"})
    client.wait(job.id, timeout=60)
    detection = client.detection(job.id)
    assert detection is not None and detection.path == "poll"
    assert detection.lag_s is not None and detection.lag_s <= 1.2
    assert client._core.regime == "silent"


def test_a_silent_channel_is_looked_at_every_interval_and_heard_again() -> None:
    """While the channel counts as silent, a feed read (even one for some jobs only, which
    parks until one of theirs comes) is back within a heartbeat interval: its page brings the
    channel's age, and jobs go back on the quiet path at once."""
    core = WaitCore(endpoint=ENDPOINT, seed=1)
    core.feed_pinned("0", T0)
    core.track(_job("job_a", T0, 600.0), T0, core.read_mark())  # no poll due for minutes
    later = T0 + 30  # no page for a long time: silent
    read = core.next_action(later)
    assert core.regime == "silent"
    assert isinstance(read, ReadFeed) and read.wait <= 1.0 and read.jobs == ("job_a",)
    core.on_feed([], "0", later + 1, [ChannelStatus(ENDPOINT, 7, 0.2)])
    assert core.regime == "channel"


def test_429_retry_after_is_honoured(client: TranslationClient, services: FakeServices) -> None:
    services.receiver_down = [(0, T0 + 10_000)]
    services.status_answers = [(429, {"Retry-After": "7"})]
    job = client.create_job(simulate={"duration_s": 10.0})
    client.wait(job.id, timeout=60)
    first, second, *_ = services.status_poll_times
    assert second - first >= 7.0


def test_deadline_raises_wait_timeout_with_the_last_status(
    client: TranslationClient, clock: FakeClock
) -> None:
    job = client.create_job(simulate={"duration_s": 100.0})
    with pytest.raises(WaitTimeout) as info:
        client.wait(job.id, timeout=5)
    assert info.value.job_id == job.id and info.value.last_status is JobStatus.PENDING
    assert clock.now() == pytest.approx(T0 + 5, abs=0.01)
    assert "still pending after waiting 5.0s" in str(info.value)


def test_error_and_cancel_outcomes_raise(client: TranslationClient, services: FakeServices) -> None:
    failed = client.create_job(simulate={"duration_s": 2.0, "outcome": "error"})
    with pytest.raises(JobFailed) as info:
        client.wait(failed.id, timeout=30)
    assert info.value.job.error and info.value.job.error.code == "translation_failed"
    doomed = client.create_job(simulate={"duration_s": 50.0})
    client.cancel_job(doomed.id)
    with pytest.raises(JobCancelled):
        client.wait(doomed.id, timeout=30)


def test_waiting_on_a_job_created_elsewhere_asks_once(
    client: TranslationClient, services: FakeServices
) -> None:
    services.add_job("job_elsewhere", 3.0)
    done = client.wait("job_elsewhere", timeout=30)
    assert done.status is JobStatus.COMPLETED
    assert services.requests["status"] == 1  # the first look; the end came by webhook
    assert client.detection("job_elsewhere").path == "webhook"  # type: ignore[union-attr]


def test_a_job_that_ended_while_the_feed_was_read_for_others_is_found_at_the_receiver(
    client: TranslationClient, services: FakeServices, clock: FakeClock
) -> None:
    """Another process's job ends while this client waits on its own (the feed read for its
    own job only): asked later, its end is found at the receiver, with no status request."""
    services.add_job("job_other", 2.0)
    mine = client.create_job(simulate={"duration_s": 5.0})
    client.wait(mine.id, timeout=30)
    assert services.requests["feed for some jobs"] >= 1
    before, lookups = services.requests["status"], services.requests["lookup"]
    assert client._core.last_known("job_other") is None  # its event never reached this client
    assert client.wait("job_other", timeout=30).status is JobStatus.COMPLETED
    assert services.requests["status"] == before
    assert services.requests["lookup"] == lookups + 1
    assert client.detection("job_other").path == "webhook"  # type: ignore[union-attr]


def test_an_event_for_a_job_not_yet_asked_about_is_kept_when_the_feed_is_read_whole(
    client: TranslationClient, services: FakeServices, clock: FakeClock
) -> None:
    """Following more jobs than a filtered read names, the feed is read whole: another
    process's job's event is kept, and asking later costs no request at all."""
    services.add_job("job_other", 2.0)
    ids = [client.create_job(simulate={"duration_s": 5.0}).id for _ in range(FEED_FILTER_MAX + 1)]
    assert len(list(client.as_completed(ids, timeout=30))) == len(ids)
    assert services.requests["feed for some jobs"] == 0
    before = dict(services.requests)
    assert client._core.last_known("job_other") is not None
    client.wait("job_other", timeout=30)
    assert services.requests == before


def test_a_job_created_while_a_read_for_other_jobs_was_under_way_is_looked_up_once() -> None:
    """A read for other jobs only may pass over a new job's event: the job is looked up at
    the receiver once, after that read; finding nothing there is no sign of a lost webhook."""
    core = WaitCore(endpoint=ENDPOINT, seed=1)
    core.feed_pinned("0", T0)
    first = _job("job_a", T0)
    core.track(first, T0, core.read_mark())
    read = core.next_action(T0)
    assert isinstance(read, ReadFeed) and read.jobs == ("job_a",)
    mark = core.read_mark()  # job_b is created while that read is under way
    core.track(_job("job_b", T0), T0 + 0.1, mark)
    core.on_feed([], "0", T0 + 0.2)
    assert core.next_action(T0 + 0.2) == Lookup("job_b")
    core.on_lookup("job_b", None, T0 + 0.3)
    assert core.stats.lost_webhooks == 0
    after = core.next_action(T0 + 0.3)
    assert isinstance(after, ReadFeed) and after.jobs == ("job_a", "job_b")
    core.on_feed([], "0", T0 + 0.4)
    core.track(_job("job_c", T0), T0 + 0.5, core.read_mark())  # nothing under way meanwhile
    last = core.next_action(T0 + 0.5)  # no look-up: this read names the new job
    assert isinstance(last, ReadFeed) and last.jobs == ("job_a", "job_b", "job_c")


def _job(job_id: str, created: float, duration_s: float = 10.0) -> Job:
    """A pending job of this client's channel, as the server describes it."""
    fake = FakeJob(job_id, created, duration_s, 1.0, "completed", "deliver", ENDPOINT, channel=True)
    return Job.from_dict(fake.body(created))


def test_ten_thousand_jobs_with_webhooks_need_almost_no_polls(
    client: TranslationClient, services: FakeServices
) -> None:
    """At scale the safety-net checks stay rare (the CPU cost is measured by bench_scale)."""
    rng = random.Random(7)
    services.noise = random.Random(8)
    ids = [client.create_job(simulate={"duration_s": rng.uniform(30, 60)}).id for _ in range(2_000)]
    assert len(list(client.as_completed(ids, timeout=600))) == 2_000
    assert services.requests["status"] <= 10
    assert client.stats.waiting.paths()["webhook"] >= 1_990


def test_a_job_followed_before_the_feed_was_pinned_is_looked_up_before_it_is_polled() -> None:
    """The core alone: a heartbeat says the job's webhook was sent, but the job was followed
    while the feed position was unknown, so its event may sit in the receiver: look there."""
    core = WaitCore(endpoint=ENDPOINT, seed=1)
    job = FakeJob("job_a", T0, 2.0, 1.0, "completed", "deliver", ENDPOINT, channel=True)
    core.track(Job.from_dict(job.body(T0)), T0)
    assert isinstance(core.next_action(T0), PinFeed)
    core.feed_pinned("7", T0)
    beat = {
        "endpoint": ENDPOINT,
        "seq": 1,
        "interval_s": 1.0,
        "events": [{"seq": 1, "job_id": "job_a", "state": "sent", "next_attempt_at": None}],
    }
    page = [
        Event.from_dict(
            {
                "cursor": "8",
                "webhook_id": "hb",
                "received_at": "x",
                "type": "channel.heartbeat",
                "data": beat,
            }
        )
    ]
    core.on_feed(page, "8", T0 + 2.1)
    assert core.next_action(T0 + 2.1) == Lookup("job_a")
    detection = core.on_lookup("job_a", Job.from_dict(job.body(T0 + 2.1)), T0 + 2.1)
    assert detection is not None and detection.path == "webhook"
    assert core.stats.status_polls == 0 and core.stats.lost_webhooks == 0
    assert not core.tracking()


def test_a_lookup_that_finds_nothing_is_a_lost_webhook() -> None:
    core = WaitCore(endpoint=ENDPOINT, seed=1)
    job = FakeJob("job_b", T0, 2.0, 1.0, "completed", "drop", ENDPOINT, channel=True)
    core.track(Job.from_dict(job.body(T0)), T0)
    core.feed_pinned("0", T0)
    assert core.on_lookup("job_b", None, T0 + 2.1) is None
    assert core.next_action(T0 + 2.1) == Poll(("job_b",))
    assert core.stats.lost_webhooks == 1


def test_jobs_nobody_waits_on_whose_webhooks_cannot_come_are_not_asked_about(
    client: TranslationClient, services: FakeServices
) -> None:
    silent = [client.create_job(callback_url=None, simulate={"duration_s": 2.0}) for _ in range(5)]
    watched = client.create_job(simulate={"duration_s": 8.0})
    client.wait(watched.id, timeout=60)
    assert services.requests["status"] == 0  # the five ended meanwhile; nobody asked
    client.wait(silent[0].id, timeout=60)  # now a caller waits on one: it is asked about
    assert services.requests["status"] == 1
