"""The local demo: the demo client, whose credentials go to the set-up file, and the demo job.

The credentials file is the local set-up's hand-off: the receiver reads the webhook secret
and its feed token from it and the client library the API key and that token, so nobody
copies keys by hand. The demo job is the one ``GET /status`` names without a ``job_id``; it
belongs to the server's own tenant.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from typing import Any

from client_lib.localsetup import load_local_setup, new_token, remember_secret

from .clients import Clients
from .config import Settings
from .records import ClientRecord, NewJob
from .store import Store

log = logging.getLogger(__name__)

SYSTEM_CLIENT_ID = "cli_system"


def bootstrap_local_setup(clients: Clients, settings: Settings) -> tuple[str | None, str | None]:
    """Create the demo client once and write its credentials; returns (admin token, client id)."""
    path = settings.credentials_file
    if path is None:
        return settings.admin_token, None
    current = load_local_setup(path)
    admin_token = settings.admin_token or current.admin_token or secrets.token_urlsafe(24)
    client = clients.by_api_key(current.api_key) if current.api_key else None
    api_key = current.api_key
    if client is None or api_key is None:
        client, api_key = clients.create("demo")
        log.info("demo client %s created; credentials written to %s", client.id, path)
    server_url = f"http://{settings.host}:{settings.port}" if settings.port else current.server_url
    updated = dataclasses.replace(
        current,
        server_url=server_url,
        client_id=client.id,
        api_key=api_key,
        webhook_secret=client.webhook_secret,
        admin_token=admin_token,
        receiver_token=current.receiver_token or new_token(),  # the local receiver's feed
    )
    if updated != current:
        updated.write(path)
    return admin_token, client.id


def refresh_local_setup(settings: Settings, client: ClientRecord) -> None:
    """A client was created or given a new secret: hand its secret to the local receiver
    (the demo client's as the set-up's own, any other's beside it)."""
    path = settings.credentials_file
    if path is None:
        return
    current = load_local_setup(path)
    if current.client_id == client.id:
        dataclasses.replace(current, webhook_secret=client.webhook_secret).write(path)
    else:
        remember_secret(path, client.webhook_secret)


def create_demo_job(clients: Clients, store: Store, plan: dict[str, Any]) -> str:
    """Create the demo job (and the server's own tenant, once); returns the job's id."""
    if clients.get(SYSTEM_CLIENT_ID) is None:
        clients.create("system", client_id=SYSTEM_CLIENT_ID)
    job, _ = store.create_job(
        NewJob(
            client_id=SYSTEM_CLIENT_ID,
            priority=0,
            target_language="es",
            source_url=None,
            callback_url=None,
            metadata={"demo": True},
            **plan,
        ),
        now=time.time(),
    )
    log.info("%s is the demo job (GET /status)", job.id)
    return job.id
