"""The dashboard's JSON endpoints: one view of the jobs, one job's deliveries, its actions.

Each takes ``Authorization: Bearer`` with either a client's API key (that client's jobs only:
another client's job is 404, as everywhere) or the admin token (every client's jobs). The
two reads answer 304 to an ``If-None-Match`` naming their current tag (see ``snapshot``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Response, request

from client_lib.fields import Field
from client_lib.models import JobStatus
from client_lib.wire import APIProblem, invalid

from ..records import JobRecord
from ..resources import render_delivery, render_job
from ..runtime import Runtime, current_runtime
from ..states import InvalidTransition
from ..tenants import authenticate, require_admin
from ..validation import JOB_ID_RE
from .snapshot import Snapshots, View, Viewer, etag_of

bp = Blueprint("dashboard_api", __name__)

DASHBOARD_QUERY = (
    Field("status", "string", "Only jobs in this status (the other lists are empty)",
          enum=tuple(s.value for s in JobStatus)),
    Field("client_id", "string", "Admin token: only this client's jobs and figures; an API "
          "key may name only its own client", max_length=40),
    Field("limit", "integer", "Jobs per list", default=50, minimum=1, maximum=100),
)  # fmt: skip
_QUERY = {f.name: f for f in DASHBOARD_QUERY}


def viewer(rt: Runtime) -> Viewer:
    """The caller: the operator with the admin token, else the client of an API key."""
    try:
        require_admin(rt.admin_token)
    except APIProblem as exc:
        if exc.code != "invalid_admin_token":
            raise  # no bearer token at all
        return Viewer(authenticate(rt.clients, rt.limiter))
    return Viewer(None)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, separators=(",", ":"))
    return Response(data, status=status, headers=headers, mimetype="application/json")


def _conditional(view: View) -> Response:
    """200 with the body and its tag, or 304 (nothing rendered) when the caller holds the tag."""
    headers = {"ETag": view.tag, "Cache-Control": "no-cache"}
    held = {part.strip() for part in request.headers.get("If-None-Match", "").split(",")}
    if view.tag in held:
        return Response(status=304, headers=headers)
    return _json(view.build(), headers=headers)


def _job(rt: Runtime, who: Viewer, job_id: str) -> JobRecord:
    """The job, when the caller may see it; 404 otherwise (never revealing that it exists)."""
    job = rt.reads.get_job(job_id, client_id=who.client_id) if JOB_ID_RE.match(job_id) else None
    if job is None:
        raise APIProblem(404, "job_not_found", f"no job {job_id}")
    return job


@bp.get("/v1/dashboard")
def dashboard() -> Response:
    """Summary figures, the active, completed and failed jobs, and (admin) the clients."""
    rt = current_runtime()
    who = viewer(rt)
    unknown = sorted(set(request.args) - set(_QUERY))
    if unknown:
        raise invalid(unknown[0], "unknown query parameter")
    query = {name: field.parse(request.args.get(name)) for name, field in _QUERY.items()}
    snapshots = Snapshots(rt)
    client_id = query["client_id"]
    if client_id is not None:
        # the same answer whether another client exists or not
        known = {c.id for c in snapshots.clients()} if who.is_admin else {who.client_id}
        if client_id not in known:
            raise APIProblem(404, "client_not_found", f"no client {client_id}")
    status = JobStatus(query["status"]) if query["status"] else None
    view = snapshots.view(
        who, client_id=client_id, status=status, limit=query["limit"], now=time.time()
    )
    return _conditional(view)


@bp.get("/v1/dashboard/jobs/<job_id>")
def job_detail(job_id: str) -> Response:
    """One job as the dashboard shows it, with its webhook events and every attempt."""
    rt = current_runtime()
    who = viewer(rt)
    job = _job(rt, who, job_id)
    snapshots = Snapshots(rt)
    deliveries = [render_delivery(e) for e in rt.dispatcher.outbox.deliveries(job.id)]
    latest = deliveries[-1] if deliveries else None
    webhook = (
        {k: latest[k] for k in ("webhook_id", "state", "attempts")} if latest is not None else None
    )
    name = who.client.name if who.client is not None else None
    body = {
        "job": snapshots.render(job, time.time(), name, webhook),
        "deliveries": deliveries,
    }
    return _conditional(View(tag=etag_of(body), build=lambda: body))


@bp.post("/v1/dashboard/jobs/<job_id>/cancel")
def cancel(job_id: str) -> Response:
    """Cancel a pending job (409 ``job_final`` once it has ended)."""
    rt = current_runtime()
    job = _job(rt, viewer(rt), job_id)
    try:
        job = rt.store.cancel(job.id, now=time.time(), fault=rt.simulator.webhook_fault)
    except InvalidTransition as exc:
        raise APIProblem(
            409, "job_final", f"job {job_id} is already {exc.current.status.value}"
        ) from None
    rt.simulator.wake()
    rt.on_final([job])
    return _json(render_job(job, None))


@bp.post("/v1/dashboard/jobs/<job_id>/redeliver")
def redeliver(job_id: str) -> Response:
    """Queue the job's final webhook again (409 ``no_webhook`` when it has none)."""
    rt = current_runtime()
    job = _job(rt, viewer(rt), job_id)
    queued = rt.dispatcher.outbox.redeliver(job.id, now=time.time())
    if queued is None:
        reason = "it has no callback_url" if not job.callback_url else "it is not final yet"
        raise APIProblem(409, "no_webhook", f"job {job_id} has no webhook to send: {reason}")
    rt.dispatcher.wake()
    body = {"job_id": job.id, "webhook_id": queued["webhook_id"], "state": "pending"}
    return _json(body, 202, {"Location": f"/v1/dashboard/jobs/{job.id}"})
