"""The translation server as a real process under waitress, on a free port."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import requests

from tests.support import Service, start_service, wait_until

ADMIN = "e2e-admin"


def start_server(tmp_path: Path, *args: str, demo: bool = False) -> Service:
    return start_service("translation_server", [
        "--demo-job" if demo else "--no-demo-job",
        "--database-url", f"sqlite:///{tmp_path / 'server.db'}", "--admin-token", ADMIN,
        "--credentials-file", str(tmp_path / "local.json"), "--seed", "42",
        "--duration-min", "1", "--duration-max", "2", *args], tmp_path, name="server")


def new_tenant(url: str) -> dict[str, str]:
    resp = requests.post(f"{url}/v1/clients", json={"name": "e2e"},
                         headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['api_key']}"}


def get(url: str, headers: dict[str, str]) -> Any:
    return requests.get(url, headers=headers, timeout=5)


def wait_final(url: str, ids: list[str], auth: dict[str, str],
               timeout: float = 15) -> list[dict[str, Any]]:
    """Poll the bulk endpoint until every job is final; returns them in order."""

    def all_final() -> list[dict[str, Any]] | None:
        jobs: list[dict[str, Any]] = get(f"{url}/v1/jobs?ids={','.join(ids)}", auth).json()[
            "jobs"]
        return jobs if all(j["status"] != "pending" for j in jobs) else None

    return wait_until(all_final, timeout=timeout, interval=0.05, message="jobs to finish")


def test_jobs_complete_and_error_on_schedule(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--workers", "4")
    try:
        auth = new_tenant(server.url)
        pins = [{"duration_s": 0.6, "outcome": "completed"},
                {"duration_s": 0.9, "outcome": "error"},
                {"duration_s": 1.2, "outcome": "completed"}]
        jobs = [requests.post(f"{server.url}/v1/jobs", json={"simulate": p}, headers=auth,
                              timeout=5).json() for p in pins]
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
        auth = new_tenant(server.url)
        first, second = (requests.post(f"{server.url}/v1/jobs", headers=auth, timeout=5,
                                       json={"simulate": {"duration_s": 0.5,
                                                          "outcome": "completed"}}).json()
                         for _ in range(2))
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
    auth = new_tenant(server.url)
    ids = [requests.post(f"{server.url}/v1/jobs", headers=auth, timeout=5,
                         json={"simulate": {"duration_s": d, "outcome": "completed"}}).json()["id"]
           for d in (1.5, 1.5, 1.0, 1.0, 1.0)]
    wait_until(lambda: get(f"{server.url}/v1/jobs/{ids[0]}", auth).json()["stage"]
               == "processing", timeout=5)
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


def test_sigint_stops_cleanly(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    assert server.stop(signal.SIGINT) == 0


def _ts(value: str) -> float:
    from client_lib.models import parse_time

    result = parse_time(value)
    assert result is not None
    return result


