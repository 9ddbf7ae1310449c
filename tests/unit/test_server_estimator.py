"""The estimator sees a distorted duration and the queue, never the drawn duration."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from tests.unit.test_server_store import T0, new_job
from translation_server.db import make_engine
from translation_server.estimator import (
    MAX_POLL_S,
    MAX_VIEW_AGE_S,
    MIN_VIEW_AGE_S,
    Estimator,
    estimated_progress,
)
from translation_server.runtime import Runtime
from translation_server.schema import jobs
from translation_server.simulation import attempt_end
from translation_server.states import State


def test_processing_estimate_uses_the_distortion_factor_not_the_duration(runtime: Runtime) -> None:
    store = runtime.store
    store.create_job(new_job(duration_s=10, estimate_factor=1.2), now=T0)
    (job,) = store.claim(now=T0, limit=1)
    est = runtime.estimator.estimate(job, T0 + 3)
    assert est is not None
    assert est.completion_at == pytest.approx(T0 + 12)  # 10 s drawn, 12 s believed
    assert job.due_at == T0 + 10
    assert est.progress == pytest.approx(3 / 12, abs=1e-4)
    assert est.poll_after_ms == 9000 and est.retry_after == 9


def test_seeded_plans_give_estimates_that_differ_from_the_truth(make_app: Any) -> None:
    sim = make_app(estimate_noise=0.2, seed=5).extensions["vt"].simulator
    factors = [sim.plan({})["estimate_factor"] for _ in range(500)]
    mean = sum(factors) / len(factors)
    sd = (sum((f - mean) ** 2 for f in factors) / len(factors)) ** 0.5
    assert mean == pytest.approx(1.0, abs=0.03) and sd == pytest.approx(0.2, abs=0.03)
    exact = make_app(estimate_noise=0.0).extensions["vt"].simulator.plan({})
    assert exact["estimate_factor"] == 1.0


def test_queued_jobs_wait_for_the_slots_that_free_first(runtime: Runtime) -> None:
    store = runtime.store
    for d in (10, 20, 30, 40):  # fill the four slots
        store.create_job(new_job(duration_s=d), now=T0)
    store.claim(now=T0, limit=4)
    queued = [store.create_job(new_job(duration_s=5), now=T0)[0] for _ in range(5)]
    est = estimator(runtime, workers=4, mean_duration=7.0)
    completions = [est.estimate(j, T0) for j in queued]
    assert [c.completion_at - T0 for c in completions if c] == pytest.approx(
        [15, 25, 35, 45, 10 + 7 + 5]
    )


def test_overdue_job_moves_its_estimate_forward_in_bounded_steps(runtime: Runtime) -> None:
    runtime.store.create_job(new_job(duration_s=10, estimate_factor=0.8), now=T0)
    (job,) = runtime.store.claim(now=T0, limit=1)
    est = runtime.estimator.estimate(job, T0 + 9)  # believed done at T0+8
    assert est is not None
    assert est.completion_at == pytest.approx(T0 + 9 + 0.8)
    assert est.retry_after == 1 and est.progress == 0.99
    assert 0 < est.poll_after_s <= MAX_POLL_S


def test_final_jobs_have_no_estimate(runtime: Runtime) -> None:
    job = runtime.store.create_job(new_job(), now=T0)[0]
    cancelled = runtime.store.cancel(job.id, now=T0 + 1)
    assert cancelled.state is State.CANCELLED
    assert runtime.estimator.estimate(cancelled, T0 + 2) is None
    assert estimated_progress(cancelled, T0 + 2) == 0.0


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def completion(est: Estimator, job: Any, now: float) -> float:
    """The estimated completion of a pending job."""
    estimate = est.estimate(job, now)
    assert estimate is not None
    return estimate.completion_at


def estimator(runtime: Runtime, **options: Any) -> Estimator:
    """An estimator of the runtime's jobs, told of the runtime's own writes."""
    return Estimator(runtime.reads, queue_version=lambda: runtime.store.queue_version, **options)


def counting_views(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the reads of the queue (one item per read)."""
    reads: list[int] = []
    real = runtime.reads.queue_view

    def queue_view(*, limit: int, slots: int) -> Any:
        reads.append(limit)
        return real(limit=limit, slots=slots)

    monkeypatch.setattr(runtime.reads, "queue_view", queue_view)
    return reads


# Past MIN_VIEW_AGE_S, short of MAX_VIEW_AGE_S: only a move of the queue makes a read.
STEP = (MIN_VIEW_AGE_S + MAX_VIEW_AGE_S) / 2


def test_queue_view_is_shared_until_this_server_moves_the_queue(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    reads = counting_views(runtime, monkeypatch)
    clock = FakeClock()
    est = estimator(runtime, workers=1, mean_duration=10.0, clock=clock)
    first = store.create_job(new_job(duration_s=10), now=T0)[0]
    second = store.create_job(new_job(duration_s=10), now=T0)[0]
    for _ in range(5):
        clock.now += 0.03
        assert completion(est, second, T0) == pytest.approx(T0 + 20)
    assert len(reads) == 1  # five estimates over 0.15 s, one read of the queue
    clock.now += STEP
    urgent = store.create_job(new_job(duration_s=10, priority=9), now=T0)[0]  # a create
    assert completion(est, second, T0) == pytest.approx(T0 + 30)
    clock.now += STEP
    store.claim(now=T0, limit=1)  # a claim: the urgent job takes the slot until T0+10
    assert completion(est, first, T0) == pytest.approx(T0 + 20)
    clock.now += STEP
    store.cancel(urgent.id, now=T0 + 1)  # a cancel frees the slot
    assert completion(est, second, T0 + 1) == pytest.approx(T0 + 21)
    assert len(reads) == 4


def test_a_busy_queue_is_read_again_at_most_every_min_view_age(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    reads = counting_views(runtime, monkeypatch)
    clock = FakeClock()
    est = estimator(runtime, workers=1, mean_duration=10.0, clock=clock)
    job = store.create_job(new_job(duration_s=10), now=T0)[0]
    assert completion(est, job, T0) == pytest.approx(T0 + 10)
    store.create_job(new_job(duration_s=10, priority=9), now=T0)
    clock.now += MIN_VIEW_AGE_S * 0.9
    assert completion(est, job, T0) == pytest.approx(T0 + 10)  # moved, but read just now
    clock.now += MIN_VIEW_AGE_S * 0.2
    assert completion(est, job, T0) == pytest.approx(T0 + 20)
    assert len(reads) == 2


def test_queue_view_follows_the_scheduler_finishing_attempts(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    clock = FakeClock()
    est = estimator(runtime, workers=1, mean_duration=10.0, clock=clock)
    store.create_job(new_job(duration_s=4, estimate_factor=2.0), now=T0)
    waiting = store.create_job(new_job(duration_s=10), now=T0)[0]
    store.claim(now=T0, limit=1)
    assert completion(est, waiting, T0) == pytest.approx(T0 + 8 + 10)
    reads = counting_views(runtime, monkeypatch)
    assert [j.state for j in store.finish_due(now=T0 + 4, end=attempt_end)] == [State.COMPLETED]
    clock.now += STEP
    assert completion(est, waiting, T0 + 4) == pytest.approx(T0 + 4 + 10)
    assert len(reads) == 1


def test_queue_view_ages_out_for_writes_of_another_instance(runtime: Runtime) -> None:
    store = runtime.store
    clock = FakeClock()
    est = estimator(runtime, workers=1, mean_duration=10.0, max_view_age=0.2, clock=clock)
    store.create_job(new_job(duration_s=10), now=T0)
    job = store.create_job(new_job(duration_s=10), now=T0)[0]
    behind = store.create_job(new_job(duration_s=10), now=T0)[0]
    assert completion(est, job, T0) == pytest.approx(T0 + 20)
    # Another instance (on a shared database) moves a job ahead: a write this store never saw.
    other = make_engine(runtime.settings.database_url)
    try:
        with other.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == behind.id).values(priority=5))
    finally:
        other.dispose()
    clock.now += 0.19
    assert completion(est, job, T0) == pytest.approx(T0 + 20)
    clock.now += 0.02
    assert completion(est, job, T0) == pytest.approx(T0 + 30)


def test_a_job_behind_the_view_is_counted_in_the_database(runtime: Runtime) -> None:
    store = runtime.store
    jobs = [store.create_job(new_job(duration_s=10), now=T0)[0] for _ in range(6)]
    short = estimator(runtime, workers=1, mean_duration=10.0, view_limit=2, clock=FakeClock())
    full = estimator(runtime, workers=1, mean_duration=10.0, clock=FakeClock())
    assert [short.estimate(j, T0) for j in jobs] == [full.estimate(j, T0) for j in jobs]
    assert [completion(full, j, T0) - T0 for j in jobs] == pytest.approx(
        [10, 10, 20, 30, 40, 50]
    )  # the idle slot, then one mean each
