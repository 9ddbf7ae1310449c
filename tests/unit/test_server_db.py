"""The database: a SQLite file takes one server process at a time, and lets go when it stops;
the schema's version, checked and migrated at start on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from tests.support import ROOT
from tests.unit.test_server_store import new_job
from translation_server.config import Settings
from translation_server.db import Database, DatabaseInUse, DatabaseLock, make_engine
from translation_server.migrations import SCHEMA_VERSION, SchemaVersionError, version_table
from translation_server.runtime import Runtime
from translation_server.schema import jobs

T0 = 1_800_000_000.0


def test_a_sqlite_database_takes_one_server_at_a_time(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    with pytest.raises(DatabaseInUse) as caught:
        Database(url)
    assert f"pid {os.getpid()}" in str(caught.value) and "one server" in str(caught.value)
    runtime.close()
    again = Database(url)  # released by close (and by the kernel when a process dies)
    try:
        with pytest.raises(DatabaseInUse):
            Database(url)
    finally:
        again.close()


def test_a_failed_start_lets_go_of_the_database(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'failed.db'}"

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("simulated start-up failure")

    monkeypatch.setattr("translation_server.runtime.Simulator", broken)
    with pytest.raises(RuntimeError, match="simulated start-up failure"):
        make_app(database_url=url)
    monkeypatch.undo()
    make_app(database_url=url)  # taken again ...
    with pytest.raises(DatabaseInUse):
        Database(url)  # ... and held


def test_a_refused_lock_leaves_no_descriptor_open(runtime: Runtime) -> None:
    url = runtime.settings.database_url
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(DatabaseInUse):
            DatabaseLock(url.removeprefix("sqlite:///"))
    assert len(os.listdir("/proc/self/fd")) == before


def set_version(url: str, version: int) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(version_table.update().values(version=version))
    engine.dispose()


@pytest.mark.both_engines
def test_a_fresh_database_is_created_at_the_current_version(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            rows = conn.execute(select(version_table)).all()
    finally:
        db.close()
    assert [tuple(r) for r in rows] == [("server", SCHEMA_VERSION)]
    again = Database(database_url)  # a second start finds it current and changes nothing
    again.close()


@pytest.mark.both_engines
def test_a_newer_schema_is_refused_naming_both_versions(database_url: str) -> None:
    Database(database_url).close()
    set_version(database_url, SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError) as caught:
        Database(database_url)
    assert f"version {SCHEMA_VERSION + 1}, newer than this server's {SCHEMA_VERSION}" in str(
        caught.value
    )
    if database_url.startswith("sqlite"):  # refused, the file is free again
        DatabaseLock(database_url.removeprefix("sqlite:///")).release()


@pytest.mark.both_engines
def test_a_first_version_database_is_migrated_keeping_its_jobs(
    database_url: str, runtime: Runtime
) -> None:
    """Version 1: no version row, no job owner, no instances table, no triggers."""
    job = runtime.store.create_job(new_job(), now=T0)[0]
    runtime.close()
    engine = make_engine(database_url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER vt_jobs_notify ON jobs"))
            conn.execute(text("DROP TRIGGER vt_outbox_notify ON webhook_events"))
        conn.execute(text("ALTER TABLE jobs DROP COLUMN owner"))
        conn.execute(text("DROP TABLE instances"))
        conn.execute(text("DROP TABLE schema_version"))
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(select(version_table.c.version)).scalar() == SCHEMA_VERSION
            assert {"owner"} <= {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert conn.execute(select(jobs.c.id, jobs.c.owner)).all() == [(job.id, None)]
            if conn.dialect.name == "postgresql":
                triggers = conn.execute(
                    text("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'vt_%' ORDER BY 1")
                ).scalars()
                assert list(triggers) == ["vt_jobs_notify", "vt_outbox_notify"]
    finally:
        db.close()
        engine.dispose()


def test_the_server_refuses_a_newer_schema_at_start_with_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    Database(url).close()
    set_version(url, SCHEMA_VERSION + 1)
    done = subprocess.run(
        [sys.executable, "-m", "translation_server", "--database-url", url, "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VT_CREDENTIALS_FILE": str(tmp_path / "local.json")},
    )
    assert done.returncode == 1
    assert f"newer than this server's {SCHEMA_VERSION}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_lease_must_last_some_time() -> None:
    with pytest.raises(ValueError, match="lease-seconds must be > 0"):
        Settings(lease_seconds=0)
