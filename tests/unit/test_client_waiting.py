"""The waiting strategy with a fake clock and fake services: no sockets, no sleeps."""

from __future__ import annotations

from typing import Any

import pytest

from client_lib import (
    JobCancelled,
    JobFailed,
    JobStatus,
    TranslationClient,
    WaitTimeout,
)
from tests.fakes import RECEIVER, SERVER, T0, FakeClock, FakeServices


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def services(clock: FakeClock) -> FakeServices:
    return FakeServices(clock)


@pytest.fixture
def client(services: FakeServices, clock: FakeClock, tmp_path: Any) -> TranslationClient:
    return TranslationClient(
        base_url=SERVER,
        receiver_url=RECEIVER,
        api_key="vt_test",
        credentials_file=str(tmp_path / "none.json"),
        transport=services,
        clock=clock,
        seed=3,
    )


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


def test_lost_webhook_is_found_by_polling(
    client: TranslationClient, services: FakeServices, clock: FakeClock
) -> None:
    job = client.create_job(simulate={"duration_s": 5.0, "webhook": "drop"})
    done = client.wait(job.id, timeout=60)
    detection = client.detection(job.id)
    assert done.status is JobStatus.COMPLETED and detection and detection.path == "poll"
    # unknown webhook health, one job: checked at 3 x its estimate + 1 s grace (+/- 10 %)
    assert detection.lag_s is not None and 9.0 <= detection.lag_s <= 13.0
    assert services.requests["status"] == 1
    assert client._waiter.mode.value == "distrusted"


def test_many_lost_webhooks_are_found_quickly_and_cheaply(
    client: TranslationClient, services: FakeServices
) -> None:
    jobs = [
        client.create_job(simulate={"duration_s": 5.0 + i * 0.05, "webhook": "drop"})
        for i in range(100)
    ]
    ended = list(client.as_completed([j.id for j in jobs], timeout=120))
    assert sorted(j.id for j in ended) == sorted(j.id for j in jobs)
    lags = sorted(client.detection(j.id).lag_s or 0 for j in jobs)  # type: ignore[union-attr]
    assert lags[50] < 1.5  # the p50 target of the issue
    assert services.requests["status"] / len(jobs) < 0.5  # ?ids= batches the polls


def test_receiver_down_from_the_start_polls_from_the_estimate(
    client: TranslationClient, services: FakeServices
) -> None:
    services.receiver_down = [(0, T0 + 10_000)]
    job = client.create_job(simulate={"duration_s": 10.0})
    client.wait(job.id, timeout=60)
    detection = client.detection(job.id)
    assert detection and detection.path == "poll" and detection.lag_s is not None
    assert detection.lag_s <= 1.2  # first poll at 80 % of the estimate, then 10 % steps
    assert services.requests["status"] <= 4
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
    polls_after_recovery = [t for t in services.status_poll_times if t >= T0 + 9]
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
    # the two webhooks arrive later, when the receiver is back: both are dropped as repeats
    other = client.create_job(simulate={"duration_s": 10.0})
    client.wait(other.id, timeout=60)
    assert client.stats.waiting.duplicate_reports_dropped == 2
    assert updates.count("completed") == 1


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


@pytest.mark.parametrize("webhook", ["deliver", "drop"])
def test_two_hundred_noisy_jobs_meet_the_targets(
    client: TranslationClient, services: FakeServices, webhook: str
) -> None:
    """The benchmark's scenario in virtual time: 200 jobs of 5-15 s, estimates off by ~20 %."""
    import random

    rng = random.Random(42)
    services.noise = random.Random(43)
    jobs = [
        client.create_job(simulate={"duration_s": rng.uniform(5, 15), "webhook": webhook})
        for _ in range(200)
    ]
    ended = list(client.as_completed([j.id for j in jobs], timeout=120))
    assert len(ended) == 200
    lags = sorted(client.detection(j.id).lag_s or 0.0 for j in jobs)  # type: ignore[union-attr]
    per_job = services.requests["status"] / len(jobs)
    if webhook == "deliver":
        assert per_job == 0 and lags[-2] < 0.05  # no status request at all; webhook lag only
    else:
        assert lags[100] < 1.5 and per_job <= 4  # the fallback targets of the issue


def test_slow_webhooks_are_not_taken_for_lost_ones(
    client: TranslationClient, services: FakeServices
) -> None:
    """A busy system delivers webhooks late; once that is seen, a poll that finds a job
    ended a while ago without its webhook is not taken as proof that webhooks are lost."""
    services.webhook_delay = 20.0
    first = [client.create_job(simulate={"duration_s": 2.0}) for _ in range(2)]
    list(client.as_completed([j.id for j in first], timeout=120))  # found by polls first
    assert client._waiter.mode.value == "distrusted"
    slow = client.create_job(simulate={"duration_s": 40.0})
    client.wait(slow.id, timeout=120)  # meanwhile the first two webhooks arrive, 20 s late
    assert client._waiter.mode.value == "trusted"
    assert client.detection(slow.id).path == "webhook"  # type: ignore[union-attr]
    later = client.create_job(simulate={"duration_s": 5.0})
    client.wait(later.id, timeout=120)
    # its safety-net check (3 x 5 s + 1 s) found it ended 11 s before: a slow webhook, no loss
    assert client.detection(later.id).path == "poll"  # type: ignore[union-attr]
    assert client._waiter.mode.value == "trusted"


def test_ten_thousand_jobs_with_webhooks_need_almost_no_polls(
    client: TranslationClient, services: FakeServices
) -> None:
    """At scale the safety-net checks stay rare (the CPU cost is measured by bench_scale)."""
    import random

    rng = random.Random(7)
    services.noise = random.Random(8)
    ids = [
        client.create_job(simulate={"duration_s": rng.uniform(30, 60)}).id for _ in range(10_000)
    ]
    assert len(list(client.as_completed(ids, timeout=600))) == 10_000
    assert services.requests["status"] <= 10  # only the extreme outliers of the estimator
    assert client.stats.waiting.paths()["webhook"] >= 9_990
