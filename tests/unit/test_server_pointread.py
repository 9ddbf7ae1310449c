"""The point read gives exactly what a Core ``execute`` of the same statement gives."""

from __future__ import annotations

import pytest

from tests.unit.test_server_store import T0, new_job
from translation_server.app import Runtime
from translation_server.pointread import PointRead
from translation_server.reads import _JOB_BY_ID, job_by_id

pytestmark = pytest.mark.both_engines


def test_a_point_read_matches_the_core_read(runtime: Runtime) -> None:
    job, _ = runtime.store.create_job(new_job(metadata={"k": "v"}), now=T0)
    read = PointRead(runtime.db.reader, _JOB_BY_ID)
    with runtime.db.reader.connect() as conn:
        expected = job_by_id(conn, job.id)
    row = read.first({"job_id": job.id})
    assert row is not None and runtime.reads.get_job(job.id) == expected
    assert read.first({"job_id": "job_none"}) is None


def test_a_point_read_sees_a_change_committed_after_it_was_built(runtime: Runtime) -> None:
    job, _ = runtime.store.create_job(new_job(), now=T0)
    before = runtime.reads.get_job(job.id)
    runtime.store.claim(now=T0 + 1, limit=1)
    after = runtime.reads.get_job(job.id)
    assert before is not None and after is not None
    assert (before.state.value, after.state.value) == ("queued", "processing")
