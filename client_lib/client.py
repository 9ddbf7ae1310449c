"""``TranslationClient``: create jobs with a callback URL and learn when they end.

    from client_lib import TranslationClient
    with TranslationClient() as client:          # the local set-up's URLs and key by default
        job = client.create_job(target_language="es")
        done = client.wait(job.id, timeout=120, on_update=print)

Waiting follows the callback receiver's change feed and falls back to slow, server-guided
polling only when webhooks do not come (see ``waiting.py``). Thread-safe: several threads may
wait at once; one of them at a time drives the shared feed connection, the others sleep.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn

from .actions import Action, Lookup, PinFeed, ReadFeed, Sleep
from .backend import Services
from .clock import Clock, SystemClock
from .errors import JobCancelled, JobFailed, TranslationError, WaitTimeout
from .localsetup import LocalSetup, load_local_setup
from .models import BULK_IDS_MAX, Job, JobStatus
from .stats import ClientStats
from .transport import Request, RequestsTransport, Response, Transport, raise_for_problem
from .waiting import WaitCore
from .waitpolicy import Detection, WaitPolicy

_UNSET: Any = object()
_ETAG_CACHE_MAX = 256


class TranslationClient:
    """A client of the translation server and of the callback receiver."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        receiver_url: str | None = _UNSET,
        timeout: float = 10.0,
        credentials_file: str | None = None,
        transport: Transport | None = None,
        clock: Clock | None = None,
        policy: WaitPolicy | None = None,
        seed: int | None = None,
        admin_token: str | None = None,
    ) -> None:
        """Every argument defaults to the local set-up (``make run``); pass them to override.

        ``receiver_url=None`` means no receiver: waiting polls the server from the start.
        """
        local: LocalSetup = load_local_setup(credentials_file)
        self.base_url = (base_url or local.server_url).rstrip("/")
        self.api_key = api_key or local.api_key
        self.receiver_url = local.receiver_url if receiver_url is _UNSET else receiver_url
        if self.receiver_url:
            self.receiver_url = self.receiver_url.rstrip("/")
        self.admin_token = admin_token or local.admin_token
        self.timeout = timeout
        self._transport = transport or RequestsTransport()
        self._clock = clock or SystemClock()
        self._backend = Services(self)
        self._core = WaitCore(endpoint=self.default_callback_url, policy=policy, seed=seed)
        self._lock = threading.RLock()  # guards the core; I/O happens outside it
        self.stats = ClientStats(self._core.stats)
        self._driving = False
        self._cond = threading.Condition()
        self._etags: dict[str, tuple[str, list[Job]]] = {}

    def __enter__(self) -> TranslationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections."""
        self._transport.close()

    @property
    def default_callback_url(self) -> str | None:
        """The receiver's webhook endpoint, used when ``create_job`` is given none."""
        return f"{self.receiver_url}/webhooks" if self.receiver_url else None

    # ------------------------------------------------------------------ HTTP

    def _call(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        timeout: float | None = None,
        auth: bool = True,
    ) -> Response:
        """Send one request; every error of the library is raised from here."""
        all_headers = dict(headers or {})
        if auth and self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        all_headers.setdefault("X-Request-ID", uuid.uuid4().hex)
        request = Request(method, url, all_headers, params, json, timeout or self.timeout, retry)
        self.stats.count(endpoint)
        response = self._transport.send(request)
        raise_for_problem(request, response)
        return response

    def _server(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Any:
        return self._call(method, self.base_url + path, endpoint, **kwargs).json()

    # ------------------------------------------------------------------ jobs

    def create_job(
        self,
        *,
        source_url: str | None = None,
        target_language: str | None = None,
        priority: int | None = None,
        callback_url: str | None = _UNSET,
        metadata: dict[str, Any] | None = None,
        simulate: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Create a job; ``callback_url`` defaults to the receiver's (None: no webhook).

        An ``Idempotency-Key`` is always sent (generated unless given), so the request is
        retried safely on transient failures and never creates two jobs.
        """
        if callback_url is _UNSET:
            callback_url = self.default_callback_url
        body = {
            k: v
            for k, v in {
                "source_url": source_url,
                "target_language": target_language,
                "priority": priority,
                "callback_url": callback_url,
                "metadata": metadata,
                "simulate": simulate,
            }.items()
            if v is not None
        }
        if callback_url and callback_url == self.default_callback_url:
            body["channel_events"] = True  # numbered events and heartbeats (see waiting.py)
            self._pin_feed()  # so the feed cannot miss this job's events
        key = idempotency_key or f"vt-{uuid.uuid4()}"
        data = self._server(
            "POST", "/v1/jobs", "POST /v1/jobs", json=body, headers={"Idempotency-Key": key}
        )
        job = Job.from_dict(data)
        with self._lock:  # followed from now on: its events are kept until it is waited on
            self._core.track(job, self._clock.now())
        return job

    def get_job(self, job_id: str) -> Job:
        """One job's current state."""
        return Job.from_dict(self._server("GET", f"/v1/jobs/{job_id}", "GET /v1/jobs/{id}"))

    def get_jobs(self, job_ids: Sequence[str], *, retry: bool = True) -> list[Job]:
        """Several jobs in one request per 100 (ids this client cannot see are left out).

        Each answer's ETag is kept: asking again for the same ids sends ``If-None-Match``
        and a 304 reuses the jobs already seen.
        """
        jobs: list[Job] = []
        for i in range(0, len(job_ids), BULK_IDS_MAX):
            chunk = ",".join(job_ids[i : i + BULK_IDS_MAX])
            etag, cached = self._etags.get(chunk, (None, []))
            resp = self._call(
                "GET",
                f"{self.base_url}/v1/jobs",
                "GET /v1/jobs?ids",
                params={"ids": chunk},
                retry=retry,
                headers={"If-None-Match": etag} if etag else None,
            )
            if resp.status_code == 304:
                jobs.extend(cached)
                continue
            found = [Job.from_dict(j) for j in resp.json()["jobs"]]
            if resp.headers.get("ETag"):
                if len(self._etags) >= _ETAG_CACHE_MAX:
                    self._etags.pop(next(iter(self._etags)))
                self._etags[chunk] = (resp.headers["ETag"], found)
            jobs.extend(found)
        return jobs

    def list_jobs(self, *, status: JobStatus | str | None = None, limit: int = 20) -> Iterator[Job]:
        """This client's jobs, newest first, following the cursor across pages."""
        params: dict[str, str] = {"limit": str(limit)}
        if status:
            params["status"] = JobStatus(status).value
        while True:
            data = self._server("GET", "/v1/jobs", "GET /v1/jobs", params=params)
            yield from (Job.from_dict(j) for j in data["jobs"])
            if not data.get("next_cursor"):
                return
            params["cursor"] = data["next_cursor"]

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a pending job (InvalidRequest, 409, when it already ended)."""
        data = self._server(
            "POST", f"/v1/jobs/{job_id}/cancel", "POST /v1/jobs/{id}/cancel", retry=False
        )
        return Job.from_dict(data)

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's webhook events and their delivery attempts."""
        data = self._server("GET", f"/v1/jobs/{job_id}/deliveries", "GET /v1/jobs/{id}/deliveries")
        return list(data["deliveries"])

    def redeliver(self, job_id: str) -> dict[str, Any]:
        """Ask the server to send the job's final webhook again."""
        return dict(
            self._server(
                "POST", f"/v1/jobs/{job_id}/redeliver", "POST /v1/jobs/{id}/redeliver", retry=False
            )
        )

    def health(self) -> dict[str, Any]:
        """Both services' health: ``{"server": {...}, "receiver": {...}}`` (errors as text)."""
        out: dict[str, Any] = {}
        targets = {"server": self.base_url, "receiver": self.receiver_url}
        for name, url in targets.items():
            if not url:
                out[name] = {"status": "not configured"}
                continue
            try:
                out[name] = self._call(
                    "GET",
                    f"{url}/healthz",
                    f"GET {name} /healthz",
                    auth=False,
                    retry=False,
                    timeout=3,
                ).json()
            except TranslationError as exc:
                out[name] = {"status": "unreachable", "error": str(exc)}
        return out

    # ----------------------------------------------------------------- admin

    def _admin(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Any:
        if not self.admin_token:
            raise TranslationError("this needs the admin token (VT_ADMIN_TOKEN or --admin-token)")
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return self._call(
            method, self.base_url + path, endpoint, auth=False, headers=headers, **kwargs
        ).json()

    def create_client(self, name: str) -> dict[str, Any]:
        """Operator: create a client; its API key and webhook secret are shown only here."""
        return dict(
            self._admin("POST", "/v1/clients", "POST /v1/clients", json={"name": name}, retry=False)
        )

    def list_clients(self) -> list[dict[str, Any]]:
        """Operator: every client (ids and names)."""
        return list(self._admin("GET", "/v1/clients", "GET /v1/clients")["clients"])

    def rotate_secret(self, client_id: str) -> dict[str, Any]:
        """Operator: a new webhook secret for a client (the old one signs during the grace)."""
        return dict(
            self._admin(
                "POST",
                f"/v1/clients/{client_id}/rotate-secret",
                "POST /v1/clients/{id}/rotate-secret",
                retry=False,
            )
        )

    # --------------------------------------------------------------- waiting

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Block until the job ends; return it completed, else raise JobFailed/JobCancelled.

        Raises WaitTimeout (with the last status seen) when ``timeout`` seconds pass first.
        """
        return _outcome(self._wait_for(job_id, timeout=timeout, on_update=on_update).job)

    def as_completed(
        self, job_ids: Iterable[str], *, timeout: float | None = None
    ) -> Iterator[Job]:
        """Yield each job as it ends (completed, error or cancelled), in the order they end.

        All jobs share one feed connection and one ``?ids=`` poll; raises WaitTimeout for the
        first job still pending when ``timeout`` passes.
        """
        ids = list(dict.fromkeys(job_ids))
        started = self._clock.now()
        deadline = None if timeout is None else started + timeout
        with self._lock:
            mark = self._core.finished_since(0)[1]
        self._track_ids(ids)
        remaining = set(ids)
        ready = list(ids)  # some may have ended before
        while True:
            for job_id in ready:
                if job_id not in remaining:
                    continue
                with self._lock:
                    detection = self._core.result(job_id)  # raises if it vanished
                if detection is not None:
                    remaining.discard(job_id)
                    yield detection.job
            if not remaining:
                return
            with self._lock:
                ready, mark = self._core.finished_since(mark)
            if ready:
                continue
            now = self._clock.now()
            if deadline is not None and now >= deadline:
                self._timeout(sorted(remaining)[0], now - started)
            self._drive(None if deadline is None else deadline - now)

    def detection(self, job_id: str) -> Detection | None:
        """How and when waiting learned that this job ended (path and lag)."""
        return self._core.stats.detections.get(job_id)

    def forget(self, job_id: str) -> None:
        """Stop following a job this client created or waited on, and drop what it kept."""
        with self._lock:
            self._core.forget(job_id)

    def _pin_feed(self) -> None:
        """Pin the feed position before creating a job, so none of its events is missed."""
        with self._lock:
            needed = self._core.needs_pin(self._clock.now())
        if needed:
            self._run(PinFeed())

    def _track_ids(self, ids: Sequence[str]) -> None:
        """Follow these jobs; only those the client never saw cost a first request."""
        with self._lock:
            unknown = [i for i in ids if not self._core.knows(i, self._clock.now())]
        if not unknown:
            return
        self._pin_feed()  # before the look-up: an end after it is then in the feed
        fetched = {j.id: j for j in self.get_jobs(unknown)}
        for job_id in unknown:
            if job_id not in fetched:
                self.get_job(job_id)  # not visible to this client: raises JobNotFound
        with self._lock:
            for job in fetched.values():
                self._core.track(job, self._clock.now())

    def _wait_for(
        self, job_id: str, *, timeout: float | None, on_update: Callable[[Job], None] | None
    ) -> Detection:
        """Drive, or wait for whoever drives, until the job ended."""
        started = self._clock.now()
        deadline = None if timeout is None else started + timeout
        self._track_ids([job_id])
        shown: tuple[Any, ...] | None = None
        while True:
            with self._lock:
                detection = self._core.result(job_id)
                last = self._core.last_known(job_id)
            if on_update is not None and last is not None:
                state = (last.status, last.stage, round(last.progress, 2))
                if state != shown:
                    shown = state
                    on_update(last)
            if detection is not None:
                return detection
            now = self._clock.now()
            if deadline is not None and now >= deadline:
                self._timeout(job_id, now - started)
            self._drive(None if deadline is None else deadline - now)

    def _timeout(self, job_id: str, waited: float) -> NoReturn:
        with self._lock:
            last = self._core.last_known(job_id)
        raise WaitTimeout(job_id, last.status if last else None, waited)

    def _drive(self, budget: float | None) -> None:
        """Carry out the core's next action, unless another thread is already driving it."""
        with self._cond:
            if self._driving:
                self._cond.wait(timeout=min(budget or 1.0, 1.0))
                return
            self._driving = True
        try:
            with self._lock:
                action = self._core.next_action(self._clock.now(), max_block=budget)
            self._run(action)
        finally:
            with self._cond:
                self._driving = False
                self._cond.notify_all()

    def _run(self, action: Action) -> None:
        """One action of the core, its I/O here, its outcome fed back."""
        backend = self._backend
        core = self._core
        try:
            if isinstance(action, Sleep):
                self._clock.sleep(action.seconds)
            elif isinstance(action, PinFeed):
                cursor = backend.feed_latest()
                with self._lock:
                    core.feed_pinned(cursor, self._clock.now())
            elif isinstance(action, ReadFeed):
                events, cursor, channels = backend.feed(action.after, action.wait)
                with self._lock:
                    core.on_feed(events, cursor, self._clock.now(), channels)
            elif isinstance(action, Lookup):
                final = backend.final_event(action.job_id)
                with self._lock:
                    core.on_lookup(action.job_id, final, self._clock.now())
            else:
                try:
                    jobs = backend.status_many(action.job_ids)
                except TranslationError as exc:
                    with self._lock:
                        core.on_status_error(action.job_ids, exc, self._clock.now())
                    return
                with self._lock:
                    core.on_statuses(action.job_ids, jobs, self._clock.now())
        except TranslationError as exc:  # the receiver's (a status failure is handled above)
            with self._lock:
                core.on_feed_error(exc, self._clock.now())


def _outcome(job: Job) -> Job:
    if job.status is JobStatus.ERROR:
        raise JobFailed(job)
    if job.status is JobStatus.CANCELLED:
        raise JobCancelled(job)
    return job


__all__ = ["ClientStats", "TranslationClient"]
