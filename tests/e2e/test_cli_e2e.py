"""The ``vt`` command line against real servers: through click's runner and as a process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from client_lib.cli import main
from tests.e2e.servers import ADMIN, Stack, start_stack

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = start_stack(tmp_path_factory.mktemp("cli"))
    yield started
    started.stop()


def vt(stack: Stack, *args: str) -> Result:
    base = [
        "--server",
        stack.server.url,
        "--receiver",
        stack.receiver.url,
        "--credentials-file",
        str(stack.creds),
        "--admin-token",
        ADMIN,
    ]
    return CliRunner().invoke(main, [*base, *args])


def assert_one_line_error(result: Result, *parts: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for part in parts:
        assert part in lines[0]


def test_status_shows_both_services(stack: Stack) -> None:
    result = vt(stack, "status")
    assert result.exit_code == 0, result.output
    assert result.output.count(" ok ") >= 2 and stack.server.url in result.output


def test_status_fails_when_a_service_is_down(stack: Stack) -> None:
    result = CliRunner().invoke(
        main, ["--server", "http://127.0.0.1:9", "--receiver", stack.receiver.url, "status"]
    )
    assert result.exit_code == 1 and "unreachable" in result.output


def test_clients_create_and_list(stack: Stack) -> None:
    created = vt(stack, "--json", "clients", "create", "acme")
    assert created.exit_code == 0, created.output
    body = json.loads(created.output)
    assert body["api_key"].startswith("vt_") and body["webhook_secret"].startswith("whsec_")
    listed = vt(stack, "clients", "list")
    assert body["id"] in listed.output and "acme" in listed.output
    assert "api_key" not in listed.output.lower()


def test_clients_need_the_admin_token(stack: Stack) -> None:
    result = CliRunner().invoke(
        main,
        [
            "--server",
            stack.server.url,
            "--credentials-file",
            str(stack.tmp_path / "nothing.json"),
            "clients",
            "list",
        ],
    )
    assert_one_line_error(result, "admin token")


def test_create_wait_get_list_and_deliveries(stack: Stack) -> None:
    created = vt(
        stack, "--json", "jobs", "create", "--duration", "0.3", "--outcome", "completed", "--wait"
    )
    assert created.exit_code == 0, created.output
    job = json.loads(created.output)
    assert job["status"] == "completed" and job["detected_by"] == "webhook"
    assert job["status_requests"] == 0
    shown = vt(stack, "jobs", "get", job["id"])
    assert shown.exit_code == 0 and "completed" in shown.output
    listed = json.loads(vt(stack, "--json", "jobs", "list", "--status", "completed").output)
    assert job["id"] in [j["id"] for j in listed]
    deliveries = vt(stack, "deliveries", job["id"])
    assert deliveries.exit_code == 0 and "delivered" in deliveries.output


def test_errors_are_one_clear_line(stack: Stack) -> None:
    assert_one_line_error(vt(stack, "jobs", "get", "job_nope"), "404", "job_not_found")
    created = json.loads(vt(stack, "--json", "jobs", "create", "--duration", "60").output)
    assert vt(stack, "jobs", "cancel", created["id"]).exit_code == 0
    assert_one_line_error(vt(stack, "jobs", "cancel", created["id"]), "409", "already cancelled")
    assert_one_line_error(vt(stack, "jobs", "wait", created["id"]), "was cancelled")
    failed = vt(stack, "jobs", "create", "--duration", "0.2", "--outcome", "error", "--wait")
    assert_one_line_error(failed, "failed after 1 attempt(s)", "translation_failed")


def test_usage_errors_exit_2_without_traceback(stack: Stack) -> None:
    result = vt(stack, "jobs", "create", "--priority", "12")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--priority" in result.output


def test_vt_as_a_real_process(stack: Stack) -> None:
    exe = shutil.which("vt", path=str(Path(sys.executable).parent)) or shutil.which("vt")
    assert exe, "the vt console script is installed by `pip install -e .`"
    proc = subprocess.run(
        [
            exe,
            "--server",
            stack.server.url,
            "--receiver",
            stack.receiver.url,
            "--credentials-file",
            str(stack.creds),
            "--json",
            "jobs",
            "create",
            "--duration",
            "0.2",
            "--outcome",
            "completed",
            "--wait",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    started = time.monotonic()
    bad = subprocess.run(
        [exe, "--server", "http://127.0.0.1:9", "--api-key", "vt_x", "jobs", "get", "job_x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ")
    assert "connection failed" in bad.stderr and "Traceback" not in bad.stderr
    assert "`make run`" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 3  # a refused connection is not retried for seconds
    missing = subprocess.run(
        [exe, "--server", "http://127.0.0.1:9", "--credentials-file", "/nonexistent/local.json",
         "jobs", "get", "job_x"],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin"},
    )  # fmt: skip
    assert missing.returncode == 1 and "VT_API_KEY" in missing.stderr
    assert "/nonexistent/local.json" in missing.stderr
    schemeless = subprocess.run(
        [exe, "--server", "localhost:9000", "status"], capture_output=True, text=True, check=False
    )
    assert schemeless.returncode == 2 and "did you mean http://localhost:9000?" in schemeless.stderr


def test_waiting_says_when_it_asks_the_server_and_when_a_job_had_already_ended(
    stack: Stack,
) -> None:
    lost = vt(stack, "--json", "jobs", "create", "--duration", "1", "--webhook", "drop", "--wait")
    assert lost.exit_code == 0, lost.output
    assert "its webhook was sent but never arrived: asking the server" in lost.output
    result = json.loads(lost.output[lost.output.index("{") :])
    assert result["detected_by"] == "poll" and result["status_requests"] == 1
    again = vt(stack, "jobs", "wait", result["id"])
    assert again.exit_code == 0 and f"{result['id']} had already ended, at" in again.output
    assert "detection_lag" not in again.output


def test_a_client_created_with_vt_gets_its_webhooks_through_the_local_receiver(
    stack: Stack,
) -> None:
    created = json.loads(vt(stack, "--json", "clients", "create", "acme-local").output)
    job = vt(
        stack, "--api-key", created["api_key"], "--json", "jobs", "create", "--duration", "0.3",
        "--outcome", "completed", "--wait",
    )  # fmt: skip
    assert job.exit_code == 0, job.output
    assert json.loads(job.output)["detected_by"] == "webhook"


def test_rotate_secret_shows_iso_times(stack: Stack) -> None:
    created = json.loads(vt(stack, "--json", "clients", "create", "rotating").output)
    rotated = json.loads(vt(stack, "--json", "clients", "rotate-secret", created["id"]).output)
    assert rotated["previous_secret_expires_at"].endswith("Z")
