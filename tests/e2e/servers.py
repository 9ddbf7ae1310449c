"""Starting the services for e2e tests (through ``tests.support``), and talking to them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from client_lib import TranslationClient
from client_lib.localsetup import load_local_setup
from tests import support
from tests.support import ADMIN, Service, wait_until


def start_server(tmp_path: Path, *args: str, demo: bool = False, port: int = 0) -> Service:
    """The translation server on a free port with its own database, seeded, 1-2 s jobs."""
    e2e = ["--seed", "42", "--duration-min", "1", "--duration-max", "2"]
    return support.start_server(tmp_path, *e2e, *args, demo=demo, port=port)


def new_tenant(url: str) -> dict[str, Any]:
    """A new client: its id, API key, webhook secret and an ``auth`` header dict."""
    resp = requests.post(
        f"{url}/v1/clients",
        json={"name": "e2e"},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=5,
    )
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    body["auth"] = {"Authorization": f"Bearer {body['api_key']}"}
    return body


def get(url: str, headers: dict[str, str]) -> Any:
    """GET with a timeout."""
    return requests.get(url, headers=headers, timeout=5)


def create_job(url: str, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    """POST /v1/jobs; asserts 201."""
    resp = requests.post(f"{url}/v1/jobs", json=body, headers=auth, timeout=5)
    assert resp.status_code == 201, resp.text
    job: dict[str, Any] = resp.json()
    return job


def wait_final(
    url: str, ids: list[str], auth: dict[str, str], timeout: float = 15
) -> list[dict[str, Any]]:
    """Poll the bulk endpoint until every job is final; returns them in order."""

    def all_final() -> list[dict[str, Any]] | None:
        jobs: list[dict[str, Any]] = get(f"{url}/v1/jobs?ids={','.join(ids)}", auth).json()["jobs"]
        return jobs if all(j["status"] != "pending" for j in jobs) else None

    return wait_until(all_final, timeout=timeout, interval=0.05, message="jobs to finish")


def deliveries(url: str, job_id: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    """The job's webhook events with their attempt logs."""
    body: dict[str, Any] = get(f"{url}/v1/jobs/{job_id}/deliveries", auth).json()
    return list(body["deliveries"])


@dataclass
class Stack:
    """Both services, sharing a credentials file as ``make run`` sets them up."""

    server: Service
    receiver: Service
    creds: Path
    tmp_path: Path

    def client(self, **overrides: Any) -> TranslationClient:
        """A client of this stack (the demo client's key, the receiver as callback)."""
        kwargs: dict[str, Any] = {
            "base_url": self.server.url,
            "receiver_url": self.receiver.url,
            "credentials_file": str(self.creds),
            "seed": 7,
        }
        kwargs.update(overrides)
        return TranslationClient(**kwargs)

    def feed_auth(self) -> dict[str, str]:
        """The ``Authorization`` header of the feed (its token from the set-up file)."""
        return feed_auth(self.creds)

    def restart_receiver(self) -> Service:
        """Start the receiver again on the same port and database."""
        self.receiver = start_receiver(self.tmp_path, self.creds, port=self.receiver.port)
        return self.receiver

    def stop(self) -> None:
        for service in (self.server, self.receiver):
            if service.proc.poll() is None:
                service.stop()


def feed_auth(creds: Path) -> dict[str, str]:
    """The feed's ``Authorization`` header, its token read from the local set-up file."""
    return {"Authorization": f"Bearer {load_local_setup(creds).receiver_token}"}


def start_receiver(tmp_path: Path, creds: Path, *, port: int = 0) -> Service:
    """The callback receiver on its own database, reading secrets from ``creds``."""
    return support.start_receiver(tmp_path, creds=creds, port=port)


def start_stack(tmp_path: Path, *server_args: str) -> Stack:
    """Server and receiver on free ports; the server writes the demo credentials first."""
    server = start_server(tmp_path, *server_args)
    creds = tmp_path / "local.json"
    try:
        receiver = start_receiver(tmp_path, creds)
    except BaseException:
        server.stop()
        raise
    return Stack(server, receiver, creds, tmp_path)
