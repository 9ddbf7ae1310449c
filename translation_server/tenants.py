"""Tenants: API-key authentication and the operator's client endpoints."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, request

from client_lib.wire import APIProblem

from .clients import Clients
from .demo import SYSTEM_CLIENT_ID, refresh_local_setup
from .ratelimit import RateLimiter
from .records import ClientRecord
from .runtime import current_runtime
from .validation import parse_client_name, parse_json_object

log = logging.getLogger(__name__)

bp = Blueprint("tenants", __name__)

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


def authenticate(clients: Clients, limiter: RateLimiter) -> ClientRecord:
    """The calling tenant, from its bearer API key; 401 or 429 otherwise."""
    client = clients.by_api_key(_bearer_token())
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


def client_json(client: ClientRecord) -> dict[str, object]:
    """A tenant as the admin API lists it (never its key or secret)."""
    return {"id": client.id, "name": client.name}


@bp.post("/v1/clients")
def create_client() -> tuple[dict[str, object], int]:
    """Create a tenant; its API key and webhook secret are shown only in this answer."""
    rt = current_runtime()
    require_admin(rt.admin_token)
    name = parse_client_name(parse_json_object(request.get_data()))
    client, api_key = rt.clients.create(name)
    refresh_local_setup(rt.settings, client)
    log.info("client %s created name=%r", client.id, client.name)
    return {**client_json(client), "api_key": api_key, "webhook_secret": client.webhook_secret}, 201


@bp.get("/v1/clients")
def list_clients() -> dict[str, object]:
    """Every tenant (operator only)."""
    rt = current_runtime()
    require_admin(rt.admin_token)
    clients = [c for c in rt.clients.all() if c.id != SYSTEM_CLIENT_ID]
    return {"clients": [client_json(c) for c in clients]}


@bp.post("/v1/clients/<client_id>/rotate-secret")
def rotate_secret(client_id: str) -> Response | tuple[dict[str, object], int]:
    """Give a tenant a new webhook secret; the old one keeps signing during the grace period."""
    rt = current_runtime()
    require_admin(rt.admin_token)
    client = rt.clients.rotate_secret(client_id, grace_s=rt.settings.secret_grace)
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
