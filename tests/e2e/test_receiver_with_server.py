"""Both services together, as ``make run`` starts them: a job's webhook reaches the receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.servers import feed_auth
from tests.support import Service, start_service, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Service, Service, Path]]:
    creds = tmp_path / "local.json"
    started: list[Service] = []
    try:
        # The receiver starts first, before the credentials file exists: it must pick up the
        # secret the server writes there at its first start.
        receiver = start_service(
            "callback_receiver",
            [
                "--database-url",
                f"sqlite:///{tmp_path / 'receiver.db'}",
                "--credentials-file",
                str(creds),
            ],
            tmp_path,
            name="receiver",
        )
        started.append(receiver)
        server = start_service(
            "translation_server",
            [
                "--database-url",
                f"sqlite:///{tmp_path / 'server.db'}",
                "--credentials-file",
                str(creds),
                "--no-demo-job",
            ],
            tmp_path,
            name="server",
        )
        started.append(server)
        yield server, receiver, creds
    finally:
        for service in started:
            if service.proc.poll() is None:
                service.stop()


def test_a_finished_job_reaches_the_feed_and_the_page(
    services: tuple[Service, Service, Path],
) -> None:
    server, receiver, creds = services
    api_key = wait_until(
        lambda: creds.exists() and json.loads(creds.read_text())["api_key"],
        timeout=10,
        message="the server's credentials file",
    )
    created = requests.post(
        f"{server.url}/v1/jobs",
        headers={"Authorization": f"Bearer {api_key}"},
        json={
            "callback_url": f"{receiver.url}/webhooks",
            "simulate": {"duration_s": 0.5, "outcome": "completed"},
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    started = time.monotonic()
    auth = feed_auth(creds)
    feed = requests.get(
        f"{receiver.url}/v1/events",
        params={"job_id": job_id, "wait": 30},
        headers=auth,
        timeout=40,
    ).json()
    assert time.monotonic() - started < 20
    assert [(e["type"], e["data"]["id"], e["data"]["status"]) for e in feed["events"]] == [
        ("job.completed", job_id, "completed")
    ]
    final = requests.get(f"{receiver.url}/v1/events/{job_id}", headers=auth, timeout=10)
    assert (
        final.status_code == 200 and final.json()["webhook_id"] == feed["events"][0]["webhook_id"]
    )
    receipts = requests.get(
        f"{receiver.url}/v1/receipts", params={"job_id": job_id}, headers=auth, timeout=10
    ).json()["receipts"]
    assert [(r["job_id"], r["result"]) for r in receipts] == [(job_id, "verified")]
