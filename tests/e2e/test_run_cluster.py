"""``make run-cluster``'s launcher: two servers and two receivers behind nginx on free ports, a
job created through nginx ends with its webhook in the feed read through nginx (a long-poll),
and SIGINT stops every process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from client_lib.localsetup import load_local_setup
from tests.pgsupport import fresh_database
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_cluster_serves_a_job_end_to_end_behind_nginx_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port, receiver_port = free_port(), free_port()
    ready, creds = tmp_path / "ready.json", tmp_path / "local.json"
    with fresh_database("vt_run_cluster") as url:
        log = (tmp_path / "cluster.log").open("wb")
        launcher = subprocess.Popen(
            [sys.executable, "scripts/run_cluster.py", "--port", str(port),
             "--receiver-port", str(receiver_port), "--database-url", url,
             "--credentials-file", str(creds), "--workdir", str(tmp_path / "cluster"),
             "--ready-file", str(ready), "--", "--no-demo-job", "--duration-min", "0.5",
             "--duration-max", "0.5", "--error-rate", "0", "--seed", "3"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(ready.exists, timeout=60, message="the cluster to start")
            started = json.loads(ready.read_text())
            assert len(started["servers"]) == 2 and len(started["receivers"]) == 2
            server, receiver = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{receiver_port}"

            def answers() -> bool:
                try:
                    return requests.get(f"{receiver}/healthz", timeout=2).status_code == 200
                except requests.ConnectionError:
                    return False

            wait_until(answers, timeout=20, message="nginx to listen")
            setup = load_local_setup(creds)
            feed_auth = {"Authorization": f"Bearer {setup.receiver_token}"}
            cursor = requests.get(
                f"{receiver}/v1/events?after=latest", headers=feed_auth, timeout=5
            ).json()["cursor"]
            created = requests.post(
                f"{server}/v1/jobs",
                json={"callback_url": f"{receiver}/webhooks"},
                headers={"Authorization": f"Bearer {setup.api_key}"},
                timeout=5,
            )
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            page = requests.get(
                f"{receiver}/v1/events",
                params={"after": cursor, "job_id": job_id, "wait": 20},
                headers=feed_auth,
                timeout=30,
            )
            assert page.status_code == 200
            events = page.json()["events"]
            assert [(e["type"], e["data"]["id"]) for e in events] == [("job.completed", job_id)]
        finally:
            launcher.send_signal(signal.SIGINT)
            code = launcher.wait(timeout=60)
            log.close()
    output = (tmp_path / "cluster.log").read_text(errors="replace")
    assert code == 0, output
    assert "stopped: {'server1': 0, 'server2': 0, 'receiver1': 0, 'receiver2': 0, 'nginx': 0}" in (
        output
    )


def test_the_cluster_refuses_to_start_without_postgresql_naming_it(tmp_path: Path) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:1/vt_cluster"
    done = subprocess.run(
        [sys.executable, "scripts/run_cluster.py", "--database-url", nowhere,
         "--credentials-file", str(tmp_path / "local.json"), "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "PostgreSQL is not reachable at postgresql+psycopg://postgres@127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
