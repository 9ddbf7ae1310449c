"""The translation server as a real process under waitress, on a free port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.e2e.servers import get, new_tenant, start_server, wait_final
from tests.support import wait_until


def test_jobs_complete_and_error_on_schedule(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--workers", "4")
    try:
        auth = new_tenant(server.url)["auth"]
        pins = [
            {"duration_s": 0.6, "outcome": "completed"},
            {"duration_s": 0.9, "outcome": "error"},
            {"duration_s": 1.2, "outcome": "completed"},
        ]
        jobs = [
            requests.post(
                f"{server.url}/v1/jobs", json={"simulate": p}, headers=auth, timeout=5
            ).json()
            for p in pins
        ]
        final = wait_final(server.url, [j["id"] for j in jobs], auth)
        assert [j["status"] for j in final] == ["completed", "error", "completed"]
        assert final[1]["error"]["code"] == "translation_failed"
        for job, pin in zip(final, pins, strict=True):
            started = _ts(job["started_at"])
            # a job ends at its pinned duration after a slot takes it, within 50 ms
            # (the wire's timestamps have millisecond precision, hence the -0.002)
            assert -0.002 <= _ts(job["finished_at"]) - started - pin["duration_s"] < 0.05
            assert started - _ts(job["created_at"]) < 0.1  # free slots: no queue wait
    finally:
        assert server.stop() == 0
    assert "stopped" in server.log()


def test_queue_wait_is_real_with_one_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--workers", "1")
    try:
        auth = new_tenant(server.url)["auth"]
        first, second = (
            requests.post(
                f"{server.url}/v1/jobs",
                headers=auth,
                timeout=5,
                json={"simulate": {"duration_s": 0.5, "outcome": "completed"}},
            ).json()
            for _ in range(2)
        )
        assert second["stage"] == "queued"
        first_done, done = wait_final(server.url, [first["id"], second["id"]], auth)
        assert first_done["status"] == done["status"] == "completed"
        assert _ts(done["started_at"]) >= _ts(first_done["finished_at"]) - 0.001
    finally:
        server.stop()


def test_demo_job_goes_from_pending_to_completed_with_retry_after(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--error-rate", "0", demo=True)
    try:
        first = requests.get(f"{server.url}/status", timeout=5)
        assert first.json()["result"] == "pending" and int(first.headers["Retry-After"]) >= 1

        def demo_final() -> requests.Response | None:
            resp = requests.get(f"{server.url}/status", timeout=5)
            return resp if resp.json()["result"] == "completed" else None

        final = wait_until(demo_final, timeout=10, message="the demo job to complete")
        assert "Retry-After" not in final.headers
        creds = json.loads((tmp_path / "local.json").read_text())
        assert creds["api_key"].startswith("vt_") and creds["webhook_secret"].startswith("whsec_")
    finally:
        server.stop()


def test_sigkill_mid_run_loses_nothing_and_resumes(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--workers", "2")
    auth = new_tenant(server.url)["auth"]
    ids = [
        requests.post(
            f"{server.url}/v1/jobs",
            headers=auth,
            timeout=5,
            json={"simulate": {"duration_s": d, "outcome": "completed"}},
        ).json()["id"]
        for d in (1.5, 1.5, 1.0, 1.0, 1.0)
    ]
    wait_until(
        lambda: get(f"{server.url}/v1/jobs/{ids[0]}", auth).json()["stage"] == "processing",
        timeout=5,
    )
    server.kill()
    # the same database, a new process: every acknowledged job is there and all finish
    server = start_server(tmp_path, "--workers", "2")
    try:
        listed = get(f"{server.url}/v1/jobs?ids={','.join(ids)}", auth).json()["jobs"]
        assert [j["id"] for j in listed] == ids
        final = wait_final(server.url, ids, auth)
        assert [j["status"] for j in final] == ["completed"] * 5
        assert all(j["attempts"] == 1 for j in final[:2])  # resumed, not restarted
    finally:
        server.stop()


def test_a_second_server_on_the_same_sqlite_database_is_refused(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "translation_server",
                "--port",
                "0",
                "--database-url",
                f"sqlite:///{tmp_path / 'server.db'}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={k: v for k, v in os.environ.items() if not k.startswith("VT_")},
        )
        assert second.returncode == 1
        assert f"is in use by another server process (pid {server.proc.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    assert server.stop(signal.SIGINT) == 0


def _ts(value: str) -> float:
    from client_lib.models import parse_time

    result = parse_time(value)
    assert result is not None
    return result
