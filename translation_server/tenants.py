"""Tenants: API-key authentication, the operator's client endpoints, the local demo client."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request

from client_lib.localsetup import load_local_setup

from .config import Settings
from .errors import APIProblem
from .ratelimit import RateLimiter
from .store import ClientRecord, Store
from .validation import parse_client_name, parse_json_object

if TYPE_CHECKING:
    from .app import Runtime

log = logging.getLogger(__name__)

bp = Blueprint("tenants", __name__)

SYSTEM_CLIENT_ID = "cli_system"
_BEARER = {"WWW-Authenticate": 'Bearer realm="vt"'}


def _bearer_token() -> str:
    header = request.environ.get("HTTP_AUTHORIZATION", "")  # cheaper than request.headers
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIProblem(
            401,
            "unauthorized",
            "missing credentials: send 'Authorization: Bearer <api key>'",
            headers=_BEARER,
        )
    return token.strip()


def authenticate(store: Store, limiter: RateLimiter) -> ClientRecord:
    """The calling tenant, from its bearer API key; 401 or 429 otherwise."""
    client = store.client_by_api_key(_bearer_token())
    if client is None:
        raise APIProblem(401, "invalid_api_key", "the API key is not valid", headers=_BEARER)
    wait = limiter.acquire(client.id)
    if wait > 0:
        retry = limiter.retry_after(wait)
        raise APIProblem(
            429,
            "rate_limited",
            f"too many requests; retry after {retry} s",
            headers={"Retry-After": retry},
        )
    return client


def require_admin(admin_token: str | None) -> None:
    """401 unless the request carries the operator's token."""
    token = _bearer_token()
    if admin_token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
        raise APIProblem(
            401,
            "invalid_admin_token",
            "this endpoint needs the admin token (--admin-token / VT_ADMIN_TOKEN)",
            headers=_BEARER,
        )


def _runtime() -> Runtime:
    return current_app.extensions["vt"]  # type: ignore[no-any-return]


def client_json(client: ClientRecord) -> dict[str, object]:
    """A tenant as the admin API lists it (never its key or secret)."""
    return {"id": client.id, "name": client.name}


@bp.post("/v1/clients")
def create_client() -> tuple[dict[str, object], int]:
    """Create a tenant; its API key and webhook secret are shown only in this answer."""
    rt = _runtime()
    require_admin(rt.admin_token)
    name = parse_client_name(parse_json_object(request.get_data()))
    client, api_key = rt.store.create_client(name)
    log.info("client %s created name=%r", client.id, client.name)
    return {**client_json(client), "api_key": api_key, "webhook_secret": client.webhook_secret}, 201


@bp.get("/v1/clients")
def list_clients() -> dict[str, object]:
    """Every tenant (operator only)."""
    rt = _runtime()
    require_admin(rt.admin_token)
    clients = [c for c in rt.store.list_clients() if c.id != SYSTEM_CLIENT_ID]
    return {"clients": [client_json(c) for c in clients]}


@bp.post("/v1/clients/<client_id>/rotate-secret")
def rotate_secret(client_id: str) -> Response | tuple[dict[str, object], int]:
    """Give a tenant a new webhook secret; the old one keeps signing during the grace period."""
    rt = _runtime()
    require_admin(rt.admin_token)
    client = rt.store.rotate_secret(client_id, grace_s=rt.settings.secret_grace)
    if client is None:
        raise APIProblem(404, "client_not_found", f"no client {client_id}")
    rt.dispatcher.forget_client(client.id)
    refresh_local_setup(rt.settings, client)
    log.info("client %s webhook secret rotated", client.id)
    return {
        **client_json(client),
        "webhook_secret": client.webhook_secret,
        "previous_secret_expires_at": client.previous_secret_until,
    }, 200


def bootstrap_local_setup(store: Store, settings: Settings) -> tuple[str | None, str | None]:
    """Create the demo client once and write its credentials; returns (admin token, client id).

    The credentials file is the local set-up's hand-off: the receiver reads the webhook secret
    from it and the client library the API key, so nobody copies keys by hand.
    """
    path = settings.credentials_file
    if path is None:
        return settings.admin_token, None
    current = load_local_setup(path)
    admin_token = settings.admin_token or current.admin_token or secrets.token_urlsafe(24)
    client = store.client_by_api_key(current.api_key) if current.api_key else None
    api_key = current.api_key
    if client is None or api_key is None:
        client, api_key = store.create_client("demo")
        log.info("demo client %s created; credentials written to %s", client.id, path)
    server_url = f"http://{settings.host}:{settings.port}" if settings.port else current.server_url
    updated = dataclasses.replace(
        current,
        server_url=server_url,
        client_id=client.id,
        api_key=api_key,
        webhook_secret=client.webhook_secret,
        admin_token=admin_token,
    )
    if updated != current:
        updated.write(path)
    return admin_token, client.id


def refresh_local_setup(settings: Settings, client: ClientRecord) -> None:
    """After a secret rotation of the demo client, hand the new secret to the receiver."""
    path = settings.credentials_file
    if path is None:
        return
    current = load_local_setup(path)
    if current.client_id == client.id:
        dataclasses.replace(current, webhook_secret=client.webhook_secret).write(path)
