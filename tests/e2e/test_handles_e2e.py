"""A job handle resumed in another process from its continuation token, on real services."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import Stack, start_stack
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

RESUME = """
import json, sys
from client_lib import TranslationClient
with TranslationClient(credentials_file=sys.argv[1], base_url=sys.argv[2],
                       receiver_url=sys.argv[3]) as client:
    handle = client.resume(sys.argv[4])
    job = handle.result(timeout=30)
    print(json.dumps({"status": job.status.value, "path": client.detection(job.id).path,
                      "status_requests": client.stats.status_requests}))
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    started = start_stack(tmp_path)
    yield started
    started.stop()


def resume_elsewhere(stack: Stack, token: str) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RESUME,
            str(stack.creds),
            stack.server.url,
            stack.receiver.url,
            token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_job_that_ended_is_resumed_with_no_status_request(stack: Stack) -> None:
    with stack.client() as client:
        handle = client.submit(simulate={"duration_s": 0.3, "outcome": "completed"})
        handle.result(timeout=30)
        token = handle.continuation_token()
    assert resume_elsewhere(stack, token) == {
        "status": "completed",
        "path": "webhook",
        "status_requests": 0,
    }


def test_a_running_job_is_followed_to_its_end_in_another_process(stack: Stack) -> None:
    with stack.client() as client:
        handle = client.submit(simulate={"duration_s": 3.0, "outcome": "completed"})
        token = handle.continuation_token()
        assert not handle.done()
    result = resume_elsewhere(stack, token)
    assert result["status"] == "completed" and result["path"] == "webhook"
    assert result["status_requests"] == 1  # the first look, then the end by webhook


def test_done_callbacks_fire_on_real_services(stack: Stack) -> None:
    with stack.client() as client:
        handle = client.submit(simulate={"duration_s": 0.5, "outcome": "completed"})
        seen: list[str] = []
        handle.add_done_callback(lambda h: seen.append(h.result().status.value))
        wait_until(lambda: seen, timeout=20, message="the done callback")
        assert seen == ["completed"] and handle.done()
