"""The estimator sees a distorted duration and the queue, never the drawn duration."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_server_store import T0, new_job
from translation_server.app import Runtime
from translation_server.estimator import MAX_POLL_S, Estimator, estimated_progress
from translation_server.states import State


def test_processing_estimate_uses_the_distortion_factor_not_the_duration(
        runtime: Runtime) -> None:
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
    est = Estimator(store, workers=4, mean_duration=7.0)
    completions = [est.estimate(j, T0) for j in queued]
    assert [c.completion_at - T0 for c in completions if c] == pytest.approx(
        [15, 25, 35, 45, 10 + 7 + 5])


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
