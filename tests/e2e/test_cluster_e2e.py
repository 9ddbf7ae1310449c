"""Three translation servers and two receivers on one PostgreSQL database, one server killed
with SIGKILL mid-run: every job ends once, its webhook reaches the shared feed exactly once, and
the killed instance's jobs are ended by the others only after its lease has passed."""

from __future__ import annotations

import collections
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from client_lib.localsetup import load_local_setup
from tests.pgsupport import fresh_database, query
from tests.support import ADMIN, Service, start_service, wait_until

pytestmark = pytest.mark.timeout(120)

JOBS = 1000
LEASE_S = 2.0
FEED_TOKEN = "cluster-e2e-feed-token-0123456789"
FEED_AUTH = {"Authorization": f"Bearer {FEED_TOKEN}"}
SERVER_ARGS = ("--no-demo-job", "--admin-token", ADMIN, "--seed", "16", "--workers", "60",
               "--duration-min", "0.3", "--duration-max", "0.8", "--error-rate", "0",
               "--lease-seconds", str(LEASE_S), "--webhook-timeout", "2",
               "--webhook-retry-schedule", "0.2,0.5,1,2,4",
               "--heartbeat-interval", "0", "--threads", "8", "--log-level", "WARNING")  # fmt: skip


def start_cluster(
    workdir: Path, url: str, servers: int, receivers: int
) -> tuple[list[Service], list[Service]]:
    started: list[Service] = []
    creds = workdir / "local.json"
    try:
        for n in range(servers):  # one after another: the first creates the demo client
            args = [*SERVER_ARGS, "--database-url", url, "--credentials-file", str(creds)]
            started.append(start_service("translation_server", args, workdir, name=f"server{n}"))
        for n in range(receivers):
            args = ["--database-url", url, "--credentials-file", str(creds),
                    "--feed-token", FEED_TOKEN, "--log-level", "WARNING"]  # fmt: skip
            started.append(start_service("callback_receiver", args, workdir, name=f"receiver{n}"))
    except BaseException:
        for service in started:
            service.stop()
        raise
    return started[:servers], started[servers:]


def feed_job_events(receiver: Service) -> list[str]:
    """The job id of every job event in the shared feed, read page by page."""
    seen, cursor = [], "0"
    with requests.Session() as http:
        while True:
            page = http.get(
                f"{receiver.url}/v1/events",
                params={"after": cursor, "limit": 500},
                headers=FEED_AUTH,
                timeout=10,
            ).json()
            seen += [e["data"]["id"] for e in page["events"] if e["type"].startswith("job.")]
            if not page["events"]:
                return seen
            cursor = page["cursor"]


def test_a_killed_server_s_jobs_end_once_after_its_lease(tmp_path: Path) -> None:
    with fresh_database("vt_cluster") as url:
        servers, receivers = start_cluster(tmp_path, url, servers=3, receivers=2)
        try:
            run_cluster_test(tmp_path, url, servers, receivers)
        finally:
            for service in servers + receivers:
                service.stop()


def run_cluster_test(
    workdir: Path, url: str, servers: list[Service], receivers: list[Service]
) -> None:
    setup = load_local_setup(workdir / "local.json")
    auth = {"Authorization": f"Bearer {setup.api_key}"}
    victim = servers[2]
    alive = list(servers)  # where creates go; the victim leaves it when killed
    created = threading.Semaphore(0)

    def create(n: int) -> str:
        """Create job n, retried on a live server under the same Idempotency-Key when the
        victim dies with the request: a job is never created twice."""
        body: dict[str, Any] = {"callback_url": f"{receivers[n % 2].url}/webhooks"}
        headers = {**auth, "Idempotency-Key": f"cluster-e2e-{n}"}
        for _ in range(5):
            targets = list(alive)
            target = targets[n % len(targets)]
            try:
                resp = requests.post(
                    f"{target.url}/v1/jobs", json=body, headers=headers, timeout=10
                )
            except requests.RequestException:  # the victim died with it: no answer, or half
                continue
            assert resp.status_code in (200, 201), resp.text
            created.release()
            return str(resp.json()["id"])
        raise AssertionError(f"job {n} could not be created")

    victim_id = wait_until(
        lambda: query(url, "SELECT id FROM instances WHERE pid = %s", victim.proc.pid),
        timeout=10,
        message="the victim's instance row",
    )[0][0]
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(create, n) for n in range(JOBS)]
        # mid-run, while jobs keep coming: once the victim runs jobs, it dies without a word
        for _ in range(JOBS // 2):
            assert created.acquire(timeout=60)
        wait_until(
            lambda: query(
                url, "SELECT 1 FROM jobs WHERE owner = %s AND state = 'processing'", victim_id
            ),
            timeout=20,
            message="the victim to run jobs",
        )
        alive.remove(victim)
        victim.stop(signal.SIGKILL)
        killed_at = time.time()
        # a transaction whose COMMIT left the victim before it died still commits: take the
        # snapshot once PostgreSQL has closed every connection of the victim
        wait_until(
            lambda: (
                not query(
                    url,
                    "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE %s",
                    f"{victim_id}%",
                )
            ),
            timeout=20,
            message="the victim's connections to close",
        )
        orphans = {
            row[0]
            for row in query(
                url, "SELECT id FROM jobs WHERE owner = %s AND state = 'processing'", victim_id
            )
        }
        ids = {future.result() for future in futures}
    assert len(ids) == JOBS and orphans

    def all_final() -> bool:
        rows = query(url, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'processing')")
        return rows[0][0] == 0

    wait_until(all_final, timeout=60, interval=0.2, message="every job to end")

    def all_in_feed() -> list[str] | None:
        events = feed_job_events(receivers[0])
        return events if len(set(events)) >= JOBS else None

    events = wait_until(all_in_feed, timeout=60, interval=0.5, message="every event in the feed")
    assert set(events) == ids
    assert [job for job, n in collections.Counter(events).items() if n != 1] == []
    assert sorted(feed_job_events(receivers[1])) == sorted(events)  # one feed, either receiver

    # Ended once: one final state and one outbox row per job, each delivered.
    final = query(url, "SELECT state, count(*) FROM jobs GROUP BY state")
    assert final == [("completed", JOBS)]
    outbox = query(url, "SELECT job_id, state FROM webhook_events")
    assert len(outbox) == JOBS and {job for job, _ in outbox} == ids
    # stored by a receiver before its sender recorded it: delivered a moment later
    wait_until(
        lambda: query(url, "SELECT DISTINCT state FROM webhook_events") == [("delivered",)],
        timeout=30,
        message="every delivery recorded",
    )
    assert query(url, "SELECT count(*) FROM jobs WHERE version <> 3") == [(0,)]

    # The victim's running jobs were ended by another instance, after its lease had passed.
    lease_until = query(url, "SELECT lease_until FROM instances WHERE id = %s", victim_id)[0][0]
    assert isinstance(lease_until, float) and lease_until < killed_at + LEASE_S + 0.5
    ended = query(
        url,
        "SELECT id, finished_at FROM jobs WHERE id = ANY(%s)",
        list(orphans),
    )
    assert len(ended) == len(orphans)
    assert min(finished for _, finished in ended) >= lease_until  # type: ignore[operator]
    # ... and their webhooks reached the receivers (whose events share the database) after it
    received = query(
        url, "SELECT min(received_at) FROM events WHERE job_id = ANY(%s)", list(orphans)
    )
    assert received[0][0] >= lease_until  # type: ignore[operator]
