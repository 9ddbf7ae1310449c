"""The store and the scheduler: guarded transitions, slots, priority, outcomes, the outbox."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, update

from translation_server.db import make_engine
from translation_server.reads import JobReads
from translation_server.records import JobRecord, NewJob
from translation_server.runtime import Runtime
from translation_server.schema import jobs, webhook_events
from translation_server.simulation import attempt_end
from translation_server.states import TRANSITIONS, InvalidTransition, State, sources_of
from translation_server.store import IDEMPOTENCY_WINDOW_S, IdempotencyConflict, Store

pytestmark = pytest.mark.both_engines
T0 = 1_800_000_000.0


def new_job(client_id: str = "cli_a", **overrides: Any) -> NewJob:
    fields: dict[str, Any] = dict(
        client_id=client_id,
        priority=0,
        target_language="es",
        source_url=None,
        callback_url=None,
        metadata={},
        duration_s=10.0,
        estimate_factor=1.0,
        planned_failures=0,
        max_attempts=1,
        webhook_mode=None,
    )
    fields.update(overrides)
    return NewJob(**fields)


@pytest.fixture
def store(runtime: Runtime) -> Store:
    return runtime.store


@pytest.fixture
def reads(runtime: Runtime) -> JobReads:
    return runtime.reads


def test_transition_table_has_final_states_without_exits() -> None:
    assert {s for s in State if s.is_final} == {State.COMPLETED, State.ERROR, State.CANCELLED}
    assert TRANSITIONS[State.QUEUED] == {State.PROCESSING, State.CANCELLED}
    assert sorted(sources_of(State.CANCELLED)) == ["processing", "queued"]
    assert State.QUEUED.status.value == "pending" and State.QUEUED.stage is not None
    assert State.ERROR.stage is None


def test_claim_takes_priority_then_age_and_respects_limit(store: Store, reads: JobReads) -> None:
    low_old = store.create_job(new_job(priority=0), now=T0)[0]
    high_new = store.create_job(new_job(priority=9), now=T0 + 1)[0]
    low_new = store.create_job(new_job(priority=0), now=T0 + 2)[0]
    started = store.claim(now=T0 + 3, limit=2)
    assert [j.id for j in started] == [high_new.id, low_old.id]
    assert all(j.state is State.PROCESSING and j.due_at == T0 + 13 for j in started)
    assert state_of(reads.get_job(low_new.id)) is State.QUEUED


def test_finish_due_completes_exactly_at_due_time(store: Store) -> None:
    job = store.create_job(new_job(duration_s=5), now=T0)[0]
    store.claim(now=T0, limit=1)
    assert store.finish_due(now=T0 + 4.999, end=attempt_end) == []
    done = store.finish_due(now=T0 + 5, end=attempt_end)
    assert [(j.id, j.state, j.progress) for j in done] == [(job.id, State.COMPLETED, 1.0)]
    assert done[0].result == {"video_url": f"https://cdn.vt.local/{job.id}/es.mp4"}


def test_planned_failure_is_retried_then_completes(store: Store) -> None:
    job = store.create_job(new_job(planned_failures=1, max_attempts=3, duration_s=1), now=T0)[0]
    store.claim(now=T0, limit=1)
    (first,) = store.finish_due(now=T0 + 1, end=attempt_end)
    assert first.state is State.QUEUED and first.attempts == 1
    store.claim(now=T0 + 1, limit=1)
    (second,) = store.finish_due(now=T0 + 2, end=attempt_end)
    assert (second.id, second.state, second.attempts) == (job.id, State.COMPLETED, 2)


def test_error_is_final_after_max_attempts(store: Store) -> None:
    store.create_job(new_job(planned_failures=2, max_attempts=2, duration_s=1), now=T0)
    store.claim(now=T0, limit=1)
    store.finish_due(now=T0 + 1, end=attempt_end)
    store.claim(now=T0 + 1, limit=1)
    (final,) = store.finish_due(now=T0 + 2, end=attempt_end)
    assert final.state is State.ERROR and final.attempts == 2
    assert final.error == {
        "code": "translation_failed",
        "message": "simulated translation failure after 2 attempt(s)",
    }


def test_cancel_of_final_job_is_an_invalid_transition(store: Store) -> None:
    job = store.create_job(new_job(duration_s=1), now=T0)[0]
    cancelled = store.cancel(job.id, now=T0 + 0.5)
    assert cancelled.state is State.CANCELLED and cancelled.finished_at == T0 + 0.5
    with pytest.raises(InvalidTransition) as info:
        store.cancel(job.id, now=T0 + 1)
    assert info.value.current is State.CANCELLED
    assert store.claim(now=T0 + 1, limit=5) == []


def test_final_state_writes_its_outbox_row_in_the_same_transaction(runtime: Runtime) -> None:
    store = runtime.store
    job = store.create_job(new_job(callback_url="http://127.0.0.1:9/hook", duration_s=1), now=T0)[0]
    silent = store.create_job(new_job(duration_s=1), now=T0)[0]
    store.claim(now=T0, limit=5)
    store.finish_due(now=T0 + 1, end=attempt_end, fault=lambda j: ("drop", 0.0))
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(select(webhook_events)).mappings().all()
    assert [(r["job_id"], r["type"], r["mode"], r["state"]) for r in rows] == [
        (job.id, "job.completed", "drop", "pending")
    ]
    body = json.loads(rows[0]["payload"])
    assert body["type"] == "job.completed" and body["data"]["id"] == job.id
    assert body["data"]["status"] == "completed" and silent.id != job.id


def test_a_mixed_batch_ends_each_job_its_own_way_with_one_outbox_row_per_final_job(
    runtime: Runtime,
) -> None:
    store, reads = runtime.store, runtime.reads
    hook = "http://127.0.0.1:9/hook"
    done = store.create_job(new_job(callback_url=hook, duration_s=1), now=T0)[0]
    retried = store.create_job(
        new_job(callback_url=hook, planned_failures=1, max_attempts=2, duration_s=2), now=T0
    )[0]
    failed = store.create_job(
        new_job(callback_url=hook, planned_failures=1, max_attempts=1, duration_s=3), now=T0
    )[0]
    store.claim(now=T0, limit=5)
    drawn: list[str] = []

    def fault(job: JobRecord) -> tuple[str, float]:
        drawn.append(job.id)
        return "deliver", 0.0

    changed = store.finish_due(now=T0 + 3, end=attempt_end, fault=fault, batch=2)
    assert [(j.id, j.state, j.version) for j in changed] == [
        (done.id, State.COMPLETED, 3),
        (retried.id, State.QUEUED, 3),
    ]
    assert changed[1].started_at is None and changed[1].due_at is None
    (last,) = store.finish_due(now=T0 + 3, end=attempt_end, fault=fault)
    assert (last.id, last.state, last.finished_at, last.due_at) == (
        failed.id,
        State.ERROR,
        T0 + 3,
        None,
    )
    assert last.error is not None and last.progress is not None
    assert drawn == [done.id, failed.id]  # fault drawn once per final job, in due order
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(select(webhook_events.c.job_id, webhook_events.c.type)).all()
    assert sorted(rows) == sorted([(done.id, "job.completed"), (failed.id, "job.error")])
    assert reads.get_job(done.id) == changed[0]  # what finish_due hands out is the stored row


def test_batch_transition_leaves_rows_that_left_the_allowed_states(runtime: Runtime) -> None:
    store = runtime.store
    job = store.create_job(new_job(callback_url="http://127.0.0.1:9/hook"), now=T0)[0]
    (started,) = store.claim(now=T0, limit=1)
    store.cancel(job.id, now=T0 + 1)
    with runtime.db.writer.begin() as conn:
        moved = store._transition_many(conn, State.COMPLETED, [(started, {"progress": 1.0})])
    assert moved == []
    after = runtime.reads.get_job(job.id)
    assert after is not None and (after.state, after.progress) != (State.COMPLETED, 1.0)
    assert after.state is State.CANCELLED


def test_idempotency_replays_the_same_job_and_refuses_another_body(store: Store) -> None:
    first, created = store.create_job(new_job(), now=T0, idempotency=("k1", "hash-a"))
    again, created_again = store.create_job(new_job(), now=T0 + 5, idempotency=("k1", "hash-a"))
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        store.create_job(new_job(), now=T0 + 6, idempotency=("k1", "hash-b"))
    other_tenant, created_other = store.create_job(
        new_job(client_id="cli_b"), now=T0, idempotency=("k1", "hash-b")
    )
    assert created_other and other_tenant.id != first.id
    later, created_later = store.create_job(
        new_job(), now=T0 + IDEMPOTENCY_WINDOW_S + 1, idempotency=("k1", "hash-c")
    )
    assert created_later and later.id != first.id


def test_scheduler_step_fills_slots_and_sleeps_until_next_due(runtime: Runtime) -> None:
    store, reads = runtime.store, runtime.reads
    for i in range(6):
        store.create_job(new_job(duration_s=2 + i), now=T0)
    runtime.simulator.step(T0)
    assert reads.count_in_state(State.PROCESSING) == runtime.settings.workers == 4
    assert reads.next_due_at() == T0 + 2
    runtime.simulator.step(T0 + 2)
    counts = reads.counts_by_state()
    assert counts["completed"] == 1 and counts["processing"] == 4 and counts["queued"] == 1


def test_plan_is_seeded_and_pins_win(make_app: Any) -> None:
    plans = [make_app(seed=7).extensions["vt"].simulator.plan({}) for _ in range(2)]
    assert plans[0] == plans[1]
    sim = make_app(seed=7, max_attempts=3).extensions["vt"].simulator
    pinned = sim.plan({"duration_s": 3.0, "outcome": "error", "webhook": "drop"})
    assert (pinned["duration_s"], pinned["planned_failures"], pinned["webhook_mode"]) == (
        3.0,
        3,
        "drop",
    )
    assert sim.plan({"outcome": "completed"})["planned_failures"] == 0


def test_error_rate_is_honoured_by_the_seeded_draws(make_app: Any) -> None:
    sim = make_app(error_rate=0.3, seed=99).extensions["vt"].simulator
    failures = sum(sim.plan({})["planned_failures"] for _ in range(2000))
    assert 520 <= failures <= 680  # 600 expected; binomial sd ~20


def test_queue_version_moves_only_with_queue_writes(store: Store) -> None:
    versions = [store.queue_version]
    store.create_job(new_job(duration_s=1), now=T0)
    versions.append(store.queue_version)
    store.finish_due(now=T0, end=attempt_end)  # nothing due: nothing moved
    versions.append(store.queue_version)
    store.claim(now=T0, limit=1)
    versions.append(store.queue_version)
    store.finish_due(now=T0 + 1, end=attempt_end)
    versions.append(store.queue_version)
    assert versions[1] > versions[0] and versions[2] == versions[1]
    assert versions[4] > versions[3] > versions[2]


def test_a_step_ends_and_starts_what_another_writer_put_in_the_database(runtime: Runtime) -> None:
    # Another server instance on a shared database: it started one attempt and queued a job.
    store, reads = runtime.store, runtime.reads
    started = store.create_job(new_job(duration_s=1), now=T0)[0]
    queued = store.create_job(new_job(duration_s=5), now=T0)[0]
    runtime.simulator.step(T0)  # this scheduler now starts both
    other = make_engine(runtime.settings.database_url)
    try:
        with other.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == started.id).values(due_at=T0 + 0.5))
            conn.execute(
                update(jobs)
                .where(jobs.c.id == queued.id)
                .values(state=State.QUEUED.value, started_at=None, due_at=None)
            )
    finally:
        other.dispose()
    assert runtime.simulator.step(T0 + 0.5) >= 0
    assert state_of(reads.get_job(started.id)) is State.COMPLETED
    job = reads.get_job(queued.id)
    assert job is not None and (job.state, job.due_at) == (State.PROCESSING, T0 + 5.5)


def state_of(job: JobRecord | None) -> State:
    """The state of a job that must exist."""
    assert job is not None
    return job.state
