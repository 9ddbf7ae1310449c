"""Job reads: what they see, what they keep (final jobs only), and the records they hand out."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from sqlalchemy import update

from tests.unit.test_server_store import T0, new_job, state_of
from translation_server.db import make_engine
from translation_server.reads import FinalJobs, JobReads, PendingJobs
from translation_server.records import JobRecord, decode_cursor, encode_cursor
from translation_server.runtime import Runtime
from translation_server.schema import jobs
from translation_server.simulation import attempt_end
from translation_server.states import State

pytestmark = pytest.mark.both_engines


@pytest.fixture
def reads(runtime: Runtime) -> JobReads:
    return runtime.reads


def test_job_record_fields_follow_the_table_columns() -> None:
    # JobRecord.from_row decodes rows positionally: the two orders must stay the same.
    assert [f.name for f in dataclasses.fields(JobRecord)] == jobs.c.keys()


def test_list_is_newest_first_with_cursor_and_tenant_isolation(
    runtime: Runtime, reads: JobReads
) -> None:
    store = runtime.store
    ids = [store.create_job(new_job(), now=T0 + i)[0].id for i in range(5)]
    store.create_job(new_job(client_id="cli_other"), now=T0)
    page1 = reads.list_jobs("cli_a", states=None, limit=3, before_seq=None)
    page2 = reads.list_jobs("cli_a", states=None, limit=3, before_seq=page1[-1].seq)
    assert [j.id for j in page1 + page2] == ids[::-1]
    assert reads.get_job(ids[0], client_id="cli_other") is None
    assert decode_cursor(encode_cursor(42)) == 42 and decode_cursor("garbage!") is None


def test_reads_see_committed_writes_at_once(runtime: Runtime, reads: JobReads) -> None:
    job = runtime.store.create_job(new_job(), now=T0)[0]
    assert state_of(reads.get_job(job.id)) is State.QUEUED
    runtime.store.claim(now=T0, limit=1)
    assert state_of(reads.get_job(job.id)) is State.PROCESSING
    assert [j.state for j in reads.get_jobs("cli_a", [job.id, "job_unknown"])] == [State.PROCESSING]


def test_a_pending_job_written_by_another_writer_is_seen_at_once_on_a_shared_database(
    runtime: Runtime, reads: JobReads, db_engine: str
) -> None:
    job = runtime.store.create_job(new_job(), now=T0)[0]
    assert state_of(reads.get_job(job.id)) is State.QUEUED
    # Another writer starts the job: a write this process never saw (raising the job's
    # version, as every write of a job does). On PostgreSQL, another server instance; on
    # SQLite, which takes one server process, a hand edit of the file.
    other = make_engine(runtime.settings.database_url)
    try:
        with other.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id)
                .values(
                    state=State.PROCESSING.value,
                    started_at=T0,
                    due_at=T0 + 10,
                    version=jobs.c.version + 1,
                )
            )
    finally:
        other.dispose()
    assert runtime.db.sole.sole is (db_engine == "sqlite")
    if runtime.db.sole.sole:
        # The only writer answers from what it read until it commits something itself
        assert state_of(reads.get_job(job.id)) is State.QUEUED
        runtime.store.create_job(new_job(), now=T0)
    assert state_of(reads.get_job(job.id)) is State.PROCESSING
    assert [j.state for j in reads.get_jobs("cli_a", [job.id])] == [State.PROCESSING]


def connections(reads: JobReads, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the reads that reach the database (one item each): Core reads by the
    connections they open, point reads (a row, a version) by their calls."""
    opened: list[int] = []
    engine, row, version = reads._db.reader, reads._by_id, reads._version_of
    for owner, method in ((engine, "connect"), (row, "first"), (version, "first")):
        real = getattr(owner, method)

        def counted(*args: Any, real: Any = real) -> Any:
            opened.append(1)
            return real(*args)

        monkeypatch.setattr(owner, method, counted)
    return opened


def test_final_jobs_are_answered_from_memory_pending_ones_from_the_database(
    runtime: Runtime, reads: JobReads, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a shared database (PostgreSQL) a pending job is checked on every read; its only
    # writer (SQLite) reads it once while it commits nothing.
    pending_reads = 1 if runtime.db.sole.sole else 3
    store = runtime.store
    done = store.create_job(new_job(duration_s=1), now=T0)[0]
    pending = store.create_job(new_job(duration_s=1), now=T0)[0]
    store.claim(now=T0, limit=1)
    store.finish_due(now=T0 + 1, end=attempt_end)
    opened = connections(reads, monkeypatch)
    for _ in range(3):
        assert state_of(reads.get_job(done.id, client_id="cli_a")) is State.COMPLETED
        assert state_of(reads.get_job(pending.id)) is State.QUEUED
    assert len(opened) == 1 + pending_reads  # the final job once
    assert reads.get_job(done.id, client_id="cli_other") is None  # isolation holds in memory
    assert [j.id for j in reads.get_jobs("cli_a", [pending.id, done.id])] == [pending.id, done.id]
    assert reads.get_jobs("cli_other", [done.id]) == []
    assert len(opened) == 2 + pending_reads  # only the pending job was read
    store.cancel(pending.id, now=T0 + 2)
    assert [j.state for j in reads.get_jobs("cli_a", [pending.id])] == [State.CANCELLED]
    assert state_of(reads.get_job(pending.id)) is State.CANCELLED
    assert len(opened) == 3 + pending_reads  # read once more, final: kept from then on


def test_a_pending_job_is_read_whole_only_when_its_version_moved(
    runtime: Runtime, reads: JobReads, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    job = store.create_job(new_job(duration_s=1), now=T0)[0]
    whole: list[str] = []
    real = reads._by_id.first

    def counted(params: Any) -> Any:
        whole.append(params["job_id"])
        return real(params)

    monkeypatch.setattr(reads._by_id, "first", counted)
    first = reads.get_job(job.id)
    assert reads.get_job(job.id) is first and reads.get_job(job.id, client_id="cli_a") is first
    assert whole == [job.id] and reads.pending.get(job.id) == (first, runtime.db.sole.mark())
    store.claim(now=T0, limit=1)
    started = reads.get_job(job.id)
    assert state_of(started) is State.PROCESSING and started is not None
    assert started.version == first.version + 1 and whole == [job.id] * 2
    assert reads.get_job(job.id, client_id="cli_other") is None  # isolation holds when kept
    store.finish_due(now=T0 + 1, end=attempt_end)
    assert state_of(reads.get_job(job.id)) is State.COMPLETED
    assert reads.pending.get(job.id) is None and reads.final.get(job.id) is not None
    assert reads.get_job("job_unknown") is None and len(reads.pending) == 0


def test_pending_jobs_are_bounded_oldest_out_first() -> None:
    kept = PendingJobs(kept=2)
    a, b, c = (job_record(State.QUEUED, i) for i in ("job_a", "job_b", "job_c"))
    a2 = dataclasses.replace(a, version=2)
    for mark, job in enumerate((a, b, a2, c)):
        kept.keep(job, mark)
    assert kept.get("job_a") == (a2, 2) and kept.get("job_b") is None  # a renewed: b went first
    assert kept.get("job_c") == (c, 3) and len(kept) == 2
    kept.drop("job_c")
    assert kept.get("job_c") is None and len(kept) == 1


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
        owner=None,
    )
    return JobRecord(**fields)


def test_final_jobs_keeps_final_jobs_only() -> None:
    kept = FinalJobs()
    queued, processing = job_record(State.QUEUED, "job_q"), job_record(State.PROCESSING, "job_p")
    done = job_record(State.COMPLETED, "job_d")
    kept.keep([queued, processing, done])
    assert [kept.get(j.id) for j in (queued, processing, done)] == [None, None, done]
    assert len(kept) == 1


def test_final_jobs_are_bounded_oldest_out_first() -> None:
    kept = FinalJobs(kept=2)
    finals = [job_record(State.CANCELLED, f"job_f{n}") for n in range(3)]
    for job in finals:
        kept.keep([job])
    kept.keep([finals[1]])  # kept already: stays where it was
    assert [kept.get(j.id) for j in finals] == [None, finals[1], finals[2]]
    assert len(kept) == 2


def test_every_request_thread_keeps_a_reader_connection_and_others_still_get_one(
    make_app: Any,
) -> None:
    threads = 24  # more than the reader pool would hold without room for each request thread
    runtime: Runtime = make_app(threads=threads).extensions["vt"]
    job = runtime.store.create_job(new_job(), now=T0)[0]
    holding = threading.Barrier(threads + 1, timeout=20)
    release = threading.Event()

    def request_thread() -> None:
        assert runtime.reads.get_job(job.id) is not None  # the row, then kept
        assert runtime.reads.get_job(job.id) is not None  # its version alone
        holding.wait()  # every thread holds its point-read connection now
        release.wait(20)

    workers = [threading.Thread(target=request_thread, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        holding.wait()
        # a read of another kind (the scheduler's, a list) still finds a connection
        assert [j.id for j in runtime.reads.list_jobs("cli_a", states=None, limit=5,
                                                      before_seq=None)] == [job.id]  # fmt: skip
    finally:
        release.set()
        for worker in workers:
            worker.join(20)


def test_the_only_writer_reads_a_pending_job_again_only_after_a_commit(
    runtime: Runtime, reads: JobReads, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, sole = runtime.store, runtime.db.sole
    job = store.create_job(new_job(duration_s=1), now=T0)[0]
    other = store.create_job(new_job(duration_s=1), now=T0)[0]
    opened = connections(reads, monkeypatch)
    for _ in range(3):
        assert state_of(reads.get_job(job.id)) is State.QUEUED
    assert len(opened) == (1 if sole.sole else 3)
    store.cancel(other.id, now=T0)  # a commit, though not of this job: asked about once more
    assert state_of(reads.get_job(job.id)) is State.QUEUED
    assert state_of(reads.get_job(job.id)) is State.QUEUED
    assert len(opened) == (2 if sole.sole else 5)
    store.cancel(job.id, now=T0)  # its own change is seen at the next read, on either engine
    assert state_of(reads.get_job(job.id)) is State.CANCELLED


def test_a_commit_under_way_when_a_read_is_marked_makes_the_next_read_ask(
    runtime: Runtime,
) -> None:
    sole = runtime.db.sole
    before = sole.mark()
    with runtime.db.writer.begin():
        marked_inside = sole.mark()
    assert not sole.unchanged_since(before) and not sole.unchanged_since(marked_inside)
    after = sole.mark()
    assert sole.unchanged_since(after) is sole.sole  # never on a shared database
    with pytest.raises(RuntimeError), runtime.db.writer.begin():
        raise RuntimeError("rolled back")
    assert not sole.unchanged_since(after)  # counted too: a mark is only ever conservative
