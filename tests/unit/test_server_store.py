"""The store and the scheduler: guarded transitions, slots, priority, outcomes, the outbox."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from translation_server.app import Runtime
from translation_server.db import DatabaseInUse, DatabaseLock
from translation_server.jobcache import JobCache
from translation_server.states import TRANSITIONS, InvalidTransition, State, sources_of
from translation_server.store import (
    IDEMPOTENCY_WINDOW_S,
    IdempotencyConflict,
    JobRecord,
    NewJob,
    Store,
    decode_cursor,
    encode_cursor,
    jobs,
    webhook_events,
)

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


def test_transition_table_has_final_states_without_exits() -> None:
    assert {s for s in State if s.is_final} == {State.COMPLETED, State.ERROR, State.CANCELLED}
    assert TRANSITIONS[State.QUEUED] == {State.PROCESSING, State.CANCELLED}
    assert sorted(sources_of(State.CANCELLED)) == ["processing", "queued"]
    assert State.QUEUED.status.value == "pending" and State.QUEUED.stage is not None
    assert State.ERROR.stage is None


def test_claim_takes_priority_then_age_and_respects_limit(store: Store) -> None:
    low_old = store.create_job(new_job(priority=0), now=T0)[0]
    high_new = store.create_job(new_job(priority=9), now=T0 + 1)[0]
    low_new = store.create_job(new_job(priority=0), now=T0 + 2)[0]
    started = store.claim(now=T0 + 3, limit=2)
    assert [j.id for j in started] == [high_new.id, low_old.id]
    assert all(j.state is State.PROCESSING and j.due_at == T0 + 13 for j in started)
    assert store.get_job(low_new.id).state is State.QUEUED  # type: ignore[union-attr]


def test_finish_due_completes_exactly_at_due_time(store: Store) -> None:
    job = store.create_job(new_job(duration_s=5), now=T0)[0]
    store.claim(now=T0, limit=1)
    assert store.finish_due(now=T0 + 4.999) == []
    done = store.finish_due(now=T0 + 5)
    assert [(j.id, j.state, j.progress) for j in done] == [(job.id, State.COMPLETED, 1.0)]
    assert done[0].result == {"video_url": f"https://cdn.vt.local/{job.id}/es.mp4"}


def test_planned_failure_is_retried_then_completes(store: Store) -> None:
    job = store.create_job(new_job(planned_failures=1, max_attempts=3, duration_s=1), now=T0)[0]
    store.claim(now=T0, limit=1)
    (first,) = store.finish_due(now=T0 + 1)
    assert first.state is State.QUEUED and first.attempts == 1
    store.claim(now=T0 + 1, limit=1)
    (second,) = store.finish_due(now=T0 + 2)
    assert (second.id, second.state, second.attempts) == (job.id, State.COMPLETED, 2)


def test_error_is_final_after_max_attempts(store: Store) -> None:
    store.create_job(new_job(planned_failures=2, max_attempts=2, duration_s=1), now=T0)
    store.claim(now=T0, limit=1)
    store.finish_due(now=T0 + 1)
    store.claim(now=T0 + 1, limit=1)
    (final,) = store.finish_due(now=T0 + 2)
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


def test_final_state_writes_its_outbox_row_in_the_same_transaction(store: Store) -> None:
    job = store.create_job(new_job(callback_url="http://127.0.0.1:9/hook", duration_s=1), now=T0)[0]
    silent = store.create_job(new_job(duration_s=1), now=T0)[0]
    store.claim(now=T0, limit=5)
    store.finish_due(now=T0 + 1, fault=lambda j: ("drop", 0.0))
    with store.engine.connect() as conn:
        rows = conn.execute(select(webhook_events)).mappings().all()
    assert [(r["job_id"], r["type"], r["mode"], r["state"]) for r in rows] == [
        (job.id, "job.completed", "drop", "pending")
    ]
    body = json.loads(rows[0]["payload"])
    assert body["type"] == "job.completed" and body["data"]["id"] == job.id
    assert body["data"]["status"] == "completed" and silent.id != job.id


def test_a_mixed_batch_ends_each_job_its_own_way_with_one_outbox_row_per_final_job(
    store: Store,
) -> None:
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

    changed = store.finish_due(now=T0 + 3, fault=fault, batch=2)
    assert [(j.id, j.state, j.version) for j in changed] == [
        (done.id, State.COMPLETED, 3),
        (retried.id, State.QUEUED, 3),
    ]
    assert changed[1].started_at is None and changed[1].due_at is None
    (last,) = store.finish_due(now=T0 + 3, fault=fault)
    assert (last.id, last.state, last.finished_at, last.due_at) == (
        failed.id,
        State.ERROR,
        T0 + 3,
        None,
    )
    assert last.error is not None and last.progress is not None
    assert drawn == [done.id, failed.id]  # fault drawn once per final job, in due order
    with store.engine.connect() as conn:
        rows = conn.execute(select(webhook_events.c.job_id, webhook_events.c.type)).all()
    assert sorted(rows) == sorted([(done.id, "job.completed"), (failed.id, "job.error")])
    assert store.get_job(done.id) == changed[0]  # what finish_due hands out is the stored row


def test_batch_transition_leaves_rows_that_left_the_allowed_states(store: Store) -> None:
    job = store.create_job(new_job(callback_url="http://127.0.0.1:9/hook"), now=T0)[0]
    (started,) = store.claim(now=T0, limit=1)
    store.cancel(job.id, now=T0 + 1)
    with store.writer.begin() as conn:
        moved = store._transition_many(conn, State.COMPLETED, [(started, {"progress": 1.0})])
    assert moved == []
    after = store.get_job(job.id)
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


def test_list_is_newest_first_with_cursor_and_tenant_isolation(store: Store) -> None:
    ids = [store.create_job(new_job(), now=T0 + i)[0].id for i in range(5)]
    store.create_job(new_job(client_id="cli_other"), now=T0)
    page1 = store.list_jobs("cli_a", states=None, limit=3, before_seq=None)
    page2 = store.list_jobs("cli_a", states=None, limit=3, before_seq=page1[-1].seq)
    assert [j.id for j in page1 + page2] == ids[::-1]
    assert store.get_job(ids[0], client_id="cli_other") is None
    assert decode_cursor(encode_cursor(42)) == 42 and decode_cursor("garbage!") is None


def test_scheduler_step_fills_slots_and_sleeps_until_next_due(runtime: Runtime) -> None:
    store = runtime.store
    for i in range(6):
        store.create_job(new_job(duration_s=2 + i), now=T0)
    runtime.simulator.step(T0)
    assert store.count_in_state(State.PROCESSING) == runtime.settings.workers == 4
    assert store.next_due_at() == T0 + 2
    runtime.simulator.step(T0 + 2)
    counts = store.counts_by_state()
    assert counts["completed"] == 1 and counts["processing"] == 4 and counts["queued"] == 1


def test_a_sole_writer_ends_attempts_only_once_one_is_due(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    assert store.sole_writer
    ends: list[float] = []
    finish_due = store.finish_due

    def counted(**kwargs: Any) -> list[JobRecord]:
        ends.append(kwargs["now"])
        return finish_due(**kwargs)

    monkeypatch.setattr(store, "finish_due", counted)
    first = store.create_job(new_job(duration_s=5), now=T0)[0]
    assert runtime.simulator.step(T0) >= 0 and ends == [T0]  # the first step knows nothing
    store.create_job(new_job(duration_s=3), now=T0 + 1)  # a new job wakes the scheduler
    runtime.simulator.step(T0 + 1)
    store.cancel(first.id, now=T0 + 2)
    runtime.simulator.step(T0 + 2)
    assert ends == [T0]  # nothing was due: no write transaction that would find nothing
    assert store.count_in_state(State.PROCESSING) == 1
    runtime.simulator.step(T0 + 4)  # the second job's attempt ends (1 + 3)
    assert ends == [T0, T0 + 4]
    assert store.counts_by_state()["completed"] == 1
    runtime.simulator.step(T0 + 5)  # the cancelled job's due time: nothing is due any more
    assert ends == [T0, T0 + 4]


def test_a_step_that_fails_after_its_claim_forgets_what_it_knew(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    runtime.simulator.step(T0)  # the scheduler now knows that nothing is due
    store.create_job(new_job(duration_s=1), now=T0)
    claim = store.claim

    def claim_then_fail(**kwargs: Any) -> list[JobRecord]:
        claim(**kwargs)  # committed: the job is processing, due at T0 + 1
        raise RuntimeError("failed after the claim")

    monkeypatch.setattr(store, "claim", claim_then_fail)
    with pytest.raises(RuntimeError):
        runtime.simulator.step(T0)
    monkeypatch.setattr(store, "claim", claim)
    runtime.simulator.step(T0 + 1)  # must not trust a view the failed step never updated
    assert store.counts_by_state()["completed"] == 1


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


def test_job_record_fields_follow_the_table_columns() -> None:
    # JobRecord.from_row decodes rows positionally: the two orders must stay the same.
    assert [f.name for f in dataclasses.fields(JobRecord)] == jobs.c.keys()


def test_reads_see_committed_writes_at_once(store: Store) -> None:
    job = store.create_job(new_job(), now=T0)[0]
    assert state_of(store.get_job(job.id)) is State.QUEUED
    store.claim(now=T0, limit=1)
    assert state_of(store.get_job(job.id)) is State.PROCESSING
    assert [j.state for j in store.get_jobs("cli_a", [job.id, "job_unknown"])] == [State.PROCESSING]


def test_queue_version_moves_only_with_queue_writes(store: Store) -> None:
    versions = [store.queue_version]
    job = store.create_job(new_job(duration_s=1), now=T0)[0]
    versions.append(store.queue_version)
    store.get_job(job.id)
    store.finish_due(now=T0)  # nothing due: nothing moved
    versions.append(store.queue_version)
    store.claim(now=T0, limit=1)
    versions.append(store.queue_version)
    store.finish_due(now=T0 + 1)
    versions.append(store.queue_version)
    assert versions[1] > versions[0] and versions[2] == versions[1]
    assert versions[4] > versions[3] > versions[2]


def state_of(job: JobRecord | None) -> State:
    assert job is not None
    return job.state


def reads_of(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the connections the store's single-statement reads open."""
    opened: list[int] = []
    real = store._reader.connect

    def connect() -> Any:
        opened.append(1)
        return real()

    monkeypatch.setattr(store._reader, "connect", connect)
    point = store._point  # the job-by-id read of a SQLite file (PointReader)
    if point is not None:
        real_first = point.first

        def first(sql: str, params: Any) -> Any:
            opened.append(1)
            return real_first(sql, params)

        monkeypatch.setattr(point, "first", first)
    return opened


def test_jobs_are_answered_from_memory_until_the_store_writes_them(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = store.create_job(new_job(duration_s=1), now=T0)[0]
    pending = store.create_job(new_job(duration_s=1), now=T0)[0]
    store.claim(now=T0, limit=1)
    store.finish_due(now=T0 + 1)
    opened = reads_of(store, monkeypatch)
    assert state_of(store.get_job(done.id)) is State.COMPLETED
    for _ in range(3):
        assert state_of(store.get_job(done.id, client_id="cli_a")) is State.COMPLETED
        assert state_of(store.get_job(pending.id)) is State.QUEUED
    assert len(opened) == 2  # each job once: this store is the database's only writer
    assert store.get_job(done.id, client_id="cli_other") is None  # isolation holds in memory
    assert [j.id for j in store.get_jobs("cli_a", [pending.id, done.id])] == [pending.id, done.id]
    assert store.get_jobs("cli_other", [done.id]) == []
    assert len(opened) == 2
    store.claim(now=T0 + 1, limit=1)  # a write: the job is read again, in its new state
    assert store.get_jobs("cli_a", [pending.id])[0].state is State.PROCESSING
    assert state_of(store.get_job(pending.id)) is State.PROCESSING
    assert len(opened) == 3
    store.cancel(pending.id, now=T0 + 2)
    assert state_of(store.get_job(pending.id)) is State.CANCELLED
    assert len(opened) == 4


def test_job_cache_refuses_a_read_that_overlapped_a_write() -> None:
    cache = JobCache(pending=True)
    old = job_record(State.QUEUED)
    token = cache.reading()  # a read begins, and sees the row before ...
    cache.written([old.id])  # ... a write commits
    cache.keep([old], token)
    assert cache.get(old.id) is None  # not kept: it may be older than the write
    cache.keep([old], cache.reading())
    assert cache.get(old.id) is old
    cache.written([old.id])
    assert cache.get(old.id) is None


def test_job_cache_keeps_pending_jobs_only_for_the_sole_writer() -> None:
    shared = JobCache(pending=False)  # a database other instances write too (PostgreSQL)
    queued, done = job_record(State.QUEUED, "job_q"), job_record(State.COMPLETED, "job_d")
    shared.keep([queued, done], shared.reading())
    assert shared.get(queued.id) is None and shared.get(done.id) is done
    assert not shared.keeps_pending


def test_job_cache_is_bounded_oldest_out_first() -> None:
    cache = JobCache(pending=True, final_kept=2, pending_kept=2)
    finals = [job_record(State.CANCELLED, f"job_f{n}") for n in range(3)]
    pendings = [job_record(State.PROCESSING, f"job_p{n}") for n in range(3)]
    for job in [*finals, *pendings]:
        cache.keep([job], cache.reading())
    assert [cache.get(j.id) for j in finals] == [None, finals[1], finals[2]]
    assert [cache.get(j.id) for j in pendings] == [None, pendings[1], pendings[2]]
    assert len(cache) == 4


def test_a_sqlite_database_takes_one_store_at_a_time(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    with pytest.raises(DatabaseInUse) as caught:
        Store(url)
    assert f"pid {os.getpid()}" in str(caught.value) and "one server" in str(caught.value)
    runtime.close()
    again = Store(url)  # released by close (and by the kernel when a process dies)
    try:
        assert again.jobs.keeps_pending
    finally:
        again.close()


def job_record(state: State, job_id: str = "job_x") -> JobRecord:
    """A job record as read, in ``state``."""
    fields: dict[str, Any] = dataclasses.asdict(new_job())
    fields.update(
        id=job_id,
        state=state,
        seq=1,
        version=1,
        attempts=1,
        created_at=T0,
        started_at=None,
        finished_at=None,
        due_at=None,
        progress=None,
        result=None,
        error=None,
    )
    return JobRecord(**fields)


def test_a_read_overlapping_a_write_is_answered_but_not_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = store.create_job(new_job(), now=T0)[0]
    point = store._point
    assert point is not None
    real_first = point.first

    def first_then_a_write(sql: str, params: Any) -> Any:
        row = real_first(sql, params)  # the row as it was ...
        monkeypatch.setattr(point, "first", real_first)
        store.claim(now=T0, limit=1)  # ... then the job moves on before the read is kept
        return row

    monkeypatch.setattr(point, "first", first_then_a_write)
    assert state_of(store.get_job(job.id)) is State.QUEUED  # what was read, at the time
    assert state_of(store.get_job(job.id)) is State.PROCESSING  # not the stale row


def test_a_failed_start_lets_go_of_the_database(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'failed.db'}"

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("simulated start-up failure")

    monkeypatch.setattr("translation_server.app.Simulator", broken)
    with pytest.raises(RuntimeError, match="simulated start-up failure"):
        make_app(database_url=url)
    monkeypatch.undo()
    assert make_app(database_url=url).extensions["vt"].store.sole_writer  # taken again


def test_a_refused_lock_leaves_no_descriptor_open(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(DatabaseInUse):
            DatabaseLock(url.removeprefix("sqlite:///"))
    assert len(os.listdir("/proc/self/fd")) == before
