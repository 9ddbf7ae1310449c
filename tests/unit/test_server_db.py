"""The database: a SQLite file takes one server process at a time, and lets go when it stops."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_database
from translation_server.db import Database, DatabaseInUse, DatabaseLock
from translation_server.runtime import Runtime


@pytest.fixture(autouse=True)
def sqlite_files_only(request: pytest.FixtureRequest) -> None:
    """These tests are about SQLite files: not run on a ``--server-database``."""
    if shared_database(request.config) is not None:
        pytest.skip("the lock is taken on SQLite files only")


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
