"""The job API: create, read, list, cancel, and the original problem's ``GET /status``."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, request

from client_lib.models import LEGACY_RESULT
from client_lib.wire import APIProblem, invalid

from .records import ClientRecord, JobRecord, NewJob, decode_cursor, encode_cursor
from .resources import render_delivery, render_job
from .runtime import Runtime, current_runtime
from .states import InvalidTransition, states_for_status
from .store import IdempotencyConflict
from .tenants import authenticate
from .validation import (
    JOB_ID_RE,
    parse_idempotency_key,
    parse_ids,
    parse_json_object,
    parse_limit,
    parse_status,
    validate_create,
)

bp = Blueprint("jobs", __name__)

# One compact encoder for every answer (json.dumps builds a new one per call for separators).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _client(rt: Runtime) -> ClientRecord:
    return authenticate(rt.clients, rt.limiter)


def _json(body: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    data = _ENCODER.encode(body).encode()
    return Response(data, status=status, headers=headers, content_type="application/json")


def _maybe_unavailable(rt: Runtime) -> None:
    """Fault injection: answer a status request 503, as an overloaded backend would."""
    if rt.simulator.chance(rt.settings.fault_status_503):
        raise APIProblem(
            503,
            "unavailable",
            "simulated outage (--fault-status-503); retry",
            headers={"Retry-After": "1"},
        )


def _job_not_found(job_id: str) -> APIProblem:
    return APIProblem(404, "job_not_found", f"no job {job_id}")


def _owned_job(rt: Runtime, client: ClientRecord, job_id: str) -> JobRecord:
    job = rt.reads.get_job(job_id, client_id=client.id) if JOB_ID_RE.match(job_id) else None
    if job is None:
        raise _job_not_found(job_id)  # another tenant's job is 404 too: never reveal it
    return job


def _etag(jobs: Iterable[JobRecord]) -> str:
    # Weak: the body's progress and estimate move on between state changes; the tag names
    # the stored version, which is what a poller cares about.
    digest = hashlib.blake2b(
        "|".join(f"{j.id}:{j.version}" for j in jobs).encode(), digest_size=12
    ).hexdigest()
    return f'W/"{digest}"'


def _job_response(
    rt: Runtime,
    jobs: list[JobRecord],
    body_of: Any,
    status: int = 200,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """Answer with polling hints from the soonest pending job, an ETag, and 304 support."""
    now = time.time()
    estimates = [rt.estimator.estimate(j, now) for j in jobs]
    etag = _etag(jobs)
    headers = [*extra_headers, ("ETag", etag)]
    pending = [e for e in estimates if e is not None]
    if pending:
        soonest = min(pending, key=lambda e: e.poll_after_s)
        headers += [
            ("Retry-After", str(soonest.retry_after)),
            ("Poll-After-Ms", str(soonest.poll_after_ms)),
        ]
    headers.append(("Cache-Control", "no-cache"))
    if status == 200 and etag in _if_none_match():
        return Response(status=304, headers=headers)
    return _json(
        body_of([render_job(j, e) for j, e in zip(jobs, estimates, strict=True)]), status, headers
    )


def _first(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    return bodies[0]


def _if_none_match() -> set[str]:
    raw = request.environ.get("HTTP_IF_NONE_MATCH")
    if not raw:
        return set()
    return {part.strip() for part in raw.split(",") if part.strip()}


@bp.post("/v1/jobs")
def create_job() -> Response:
    """Create a job; an ``Idempotency-Key`` makes retries of this request safe."""
    rt = current_runtime()
    client = _client(rt)
    raw = request.get_data()
    body = parse_json_object(raw)
    fields = validate_create(body, rt.callback_policy.check)
    plan = rt.simulator.plan(fields.pop("simulate"))
    channel = fields.pop("channel_events")
    idem = _idempotency(client, body)
    try:
        job, created = rt.store.create_job(
            NewJob(client_id=client.id, **fields, **plan),
            now=time.time(),
            idempotency=idem,
            channel=channel,
        )
    except IdempotencyConflict:
        raise APIProblem(
            409,
            "idempotency_key_reused",
            "Idempotency-Key was already used with a different request body",
        ) from None
    if created:
        rt.simulator.wake()
    return _job_response(
        rt, [job], _first, 201 if created else 200, [("Location", f"/v1/jobs/{job.id}")]
    )


def _idempotency(client: ClientRecord, body: dict[str, Any]) -> tuple[str, str] | None:
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    if key is None:
        return None
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return key, hashlib.sha256(canonical.encode()).hexdigest()


@bp.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """One job, with polling hints while it is pending."""
    rt = current_runtime()
    client = _client(rt)
    _maybe_unavailable(rt)
    return _job_response(rt, [_owned_job(rt, client, job_id)], _first)


@bp.get("/v1/jobs")
def list_jobs() -> Response:
    """Bulk status with ``?ids=``, else the caller's jobs newest first, cursor-paginated."""
    rt = current_runtime()
    client = _client(rt)
    args = request.args
    if "ids" in args:
        unknown = sorted(set(args) - {"ids"})
        if unknown:
            raise invalid(unknown[0], "cannot be combined with ids")
        _maybe_unavailable(rt)
        jobs = rt.reads.get_jobs(client.id, parse_ids(args["ids"]))
        return _job_response(rt, jobs, lambda bodies: {"jobs": bodies})
    unknown = sorted(set(args) - {"status", "limit", "cursor"})
    if unknown:
        raise invalid(unknown[0], "unknown query parameter")
    status = parse_status(args.get("status"))
    limit = parse_limit(args.get("limit"))
    before = None
    if args.get("cursor"):
        before = decode_cursor(args["cursor"])
        if before is None:
            raise invalid("cursor", "not a cursor from this API")
    jobs = rt.reads.list_jobs(
        client.id,
        limit=limit + 1,
        before_seq=before,
        states=states_for_status(status) if status else None,
    )
    page = jobs[:limit]
    next_cursor = encode_cursor(page[-1].seq) if len(jobs) > limit else None
    return _job_response(rt, page, lambda bodies: {"jobs": bodies, "next_cursor": next_cursor})


@bp.post("/v1/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    """Cancel a pending job; a final job is 409."""
    rt = current_runtime()
    client = _client(rt)
    job = _owned_job(rt, client, job_id)
    try:
        job = rt.store.cancel(job.id, now=time.time(), fault=rt.simulator.webhook_fault)
    except InvalidTransition as exc:
        raise APIProblem(
            409,
            "job_final",
            f"job {job_id} is already {exc.current.status.value}; "
            "only a pending job can be cancelled",
        ) from None
    rt.simulator.wake()
    rt.on_final([job])
    return _job_response(rt, [job], _first)


@bp.get("/status")
def legacy_status() -> Response:
    """The original problem's endpoint: ``{"result": ...}`` plus the job's fields."""
    rt = current_runtime()
    job_id = request.args.get("job_id")
    if job_id is None:
        if rt.demo_job_id is None:
            raise APIProblem(
                404, "demo_job_disabled", "the demo job is off (--no-demo-job); pass job_id"
            )
        job = rt.reads.get_job(rt.demo_job_id)
        if job is None:
            raise _job_not_found(rt.demo_job_id)
    else:
        job = _owned_job(rt, _client(rt), job_id)
    _maybe_unavailable(rt)
    return _job_response(rt, [job], lambda bodies: _legacy_body(job, bodies[0]))


def _legacy_body(job: JobRecord, body: dict[str, Any]) -> dict[str, Any]:
    """``result`` is the original problem's status word; the job's own result is ``output``."""
    output = body.pop("result")
    return {"result": LEGACY_RESULT[job.state.status], **body, "output": output}


@bp.get("/v1/jobs/<job_id>/deliveries")
def deliveries(job_id: str) -> Response:
    """The job's webhook events and every delivery attempt: time, status or error, latency."""
    rt = current_runtime()
    job = _owned_job(rt, _client(rt), job_id)
    events = rt.dispatcher.outbox.deliveries(job.id)
    return _json({"job_id": job.id, "deliveries": [render_delivery(e) for e in events]})


@bp.post("/v1/jobs/<job_id>/redeliver")
def redeliver(job_id: str) -> Response:
    """Send the job's final webhook again, with the same ``webhook-id``."""
    rt = current_runtime()
    job = _owned_job(rt, _client(rt), job_id)
    queued = rt.dispatcher.outbox.redeliver(job.id, now=time.time())
    if queued is None:
        reason = "it has no callback_url" if not job.callback_url else "it is not final yet"
        raise APIProblem(409, "no_webhook", f"job {job_id} has no webhook to send: {reason}")
    rt.dispatcher.wake()
    return _json(
        {"job_id": job.id, "webhook_id": queued["webhook_id"], "state": "pending"},
        202,
        [("Location", f"/v1/jobs/{job.id}/deliveries")],
    )
