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

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .backend import Services
from .calls import ETags, checked, create_body, idempotency_headers, prepare
from .clock import Clock, SystemClock
from .config import UNSET, resolve
from .driver import Waiting
from .errors import TranslationError, job_outcome
from .handles import JobHandle, decode_token
from .models import BULK_IDS_MAX, Job, JobStatus
from .stats import ClientStats
from .transport import RequestsTransport, Response, Transport
from .waiting import WaitCore
from .waitpolicy import Detection, WaitPolicy


class TranslationClient:
    """A client of the translation server and of the callback receiver."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        receiver_url: str | None = UNSET,
        receiver_token: str | None = None,
        timeout: float = 10.0,
        credentials_file: str | None = None,
        transport: Transport | None = None,
        clock: Clock | None = None,
        policy: WaitPolicy | None = None,
        seed: int | None = None,
        admin_token: str | None = None,
        callback_url: str | None = None,
    ) -> None:
        """Each setting: the argument, else its ``VT_`` environment variable, else the local
        set-up file, else the default (``config.py``).

        ``receiver_url=None`` means no receiver: waiting polls the server from the start.
        ``callback_url``: the address the server posts this client's webhooks to, when the
        receiver is reached there by another than ``receiver_url`` (a tunnel, a load balancer).
        """
        self.config = resolve(
            base_url=base_url,
            receiver_url=receiver_url,
            api_key=api_key,
            receiver_token=receiver_token,
            admin_token=admin_token,
            credentials_file=credentials_file,
            callback_url=callback_url,
        )
        self.base_url = self.config.server_url
        self.api_key = self.config.api_key
        self.receiver_url = self.config.receiver_url
        self.receiver_token = self.config.receiver_token
        self.admin_token = self.config.admin_token
        self.timeout = timeout
        self._transport = transport or RequestsTransport()
        self._clock = clock or SystemClock()
        self._core = WaitCore(endpoint=self.default_callback_url, policy=policy, seed=seed)
        self._waiting = Waiting(
            self._core, Services(self), self._clock, get_jobs=self.get_jobs, get_job=self.get_job
        )
        self.stats = ClientStats(self._core.stats)
        self._etags = ETags()

    def __enter__(self) -> TranslationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections."""
        self._transport.close()

    @property
    def channel_regime(self) -> str:
        """How waiting follows jobs now: ``channel``, ``silent`` or ``receiver down``."""
        return self._core.regime

    @property
    def default_callback_url(self) -> str | None:
        """Where this client's jobs send their webhooks unless ``create_job`` is given another:
        ``callback_url`` (``VT_CALLBACK_URL``), else the receiver's ``/webhooks``."""
        return self.config.callback_url

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
        request = prepare(
            self.config,
            method,
            url,
            json=json,
            params=params,
            headers=headers,
            retry=retry,
            timeout=timeout or self.timeout,
            auth=auth,
        )
        self.stats.count(endpoint)
        return checked(self.config, request, self._transport.send(request), auth=auth)

    def _server(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Any:
        return self._call(method, self.base_url + path, endpoint, **kwargs).json()

    # ------------------------------------------------------------------ jobs

    def create_job(
        self,
        *,
        source_url: str | None = None,
        target_language: str | None = None,
        priority: int | None = None,
        callback_url: str | None = UNSET,
        metadata: dict[str, Any] | None = None,
        simulate: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Create a job; ``callback_url`` defaults to the receiver's (None: no webhook).

        An ``Idempotency-Key`` is always sent (generated unless given), so the request is
        retried safely on transient failures and never creates two jobs.
        """
        if callback_url is UNSET:
            callback_url = self.default_callback_url
        channel = bool(callback_url) and callback_url == self.default_callback_url
        fields = dict(
            source_url=source_url,
            target_language=target_language,
            priority=priority,
            callback_url=callback_url,
            metadata=metadata,
            simulate=simulate,
        )
        mark = self._waiting.pin_feed() if channel else None  # the feed misses none of its events
        data = self._server(
            "POST",
            "/v1/jobs",
            "POST /v1/jobs",
            json=create_body(fields, channel=channel),
            headers=idempotency_headers(idempotency_key),
        )
        job = Job.from_dict(data)
        self._waiting.track(job, mark)  # followed from now on: its events kept until waited on
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
            resp = self._call(
                "GET",
                f"{self.base_url}/v1/jobs",
                "GET /v1/jobs?ids",
                params={"ids": chunk},
                retry=retry,
                headers=self._etags.headers(chunk),
            )
            jobs.extend(self._etags.jobs(chunk, resp))
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
        return job_outcome(self._waiting.wait_for(job_id, timeout, on_update).job)

    def as_completed(
        self, job_ids: Iterable[str], *, timeout: float | None = None
    ) -> Iterator[Job]:
        """Yield each job as it ends (completed, error or cancelled), in the order they end.

        All jobs share one feed connection and one ``?ids=`` poll; raises WaitTimeout for the
        first job still pending when ``timeout`` passes.
        """
        return self._waiting.as_completed(list(dict.fromkeys(job_ids)), timeout)

    def submit(self, **fields: Any) -> JobHandle:
        """Create a job (``create_job``'s arguments) and return its handle."""
        return JobHandle(self, self.create_job(**fields).id)

    def resume(self, continuation_token: str) -> JobHandle:
        """The handle of a job from its continuation token, in this process or any other."""
        return JobHandle(self, decode_token(continuation_token, self.base_url))

    def last_known(self, job_id: str) -> Job | None:
        """The latest state this client saw of a job (no request)."""
        with self._waiting.lock:
            return self._core.last_known(job_id)

    def detection(self, job_id: str) -> Detection | None:
        """How and when waiting learned that this job ended (path and lag)."""
        return self._core.stats.detections.get(job_id)

    def forget(self, job_id: str) -> None:
        """Stop following a job this client created or waited on, and drop what it kept."""
        self._waiting.forget(job_id)


__all__ = ["ClientStats", "TranslationClient"]
