"""The two services as the sync client's waiting needs them: the feed, look-ups, status;
and the parsing of a feed page, which the async client's driver shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .errors import JobNotFound, TranslationError
from .models import ChannelStatus, Event, Job
from .transport import Response


def feed_page(data: Any) -> tuple[list[Event], str, list[ChannelStatus]]:
    """A feed page's events, its cursor and the channels' liveness (both clients' drivers)."""
    events = [Event.from_dict(e) for e in data["events"]]
    channels = [ChannelStatus.from_dict(c) for c in data.get("channels") or ()]
    return events, str(data["cursor"]), channels


class HTTPClient(Protocol):
    """What the services need of the client: its receiver, timeout and requests."""

    receiver_url: str | None
    receiver_token: str | None
    timeout: float

    def _call(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        json: Any = ...,
        params: dict[str, str] | None = ...,
        headers: dict[str, str] | None = ...,
        retry: bool = ...,
        timeout: float | None = ...,
        auth: bool = ...,
    ) -> Response: ...

    def get_jobs(self, job_ids: Sequence[str], *, retry: bool = True) -> list[Job]: ...


class Services:
    """The services as the waiting core's driver needs them, over the client's HTTP."""

    def __init__(self, client: HTTPClient) -> None:
        self._client = client

    def _receiver(self, path: str, endpoint: str, **kwargs: Any) -> Any:
        c = self._client
        if not c.receiver_url:
            raise TranslationError("no receiver configured")
        token = c.receiver_token  # the feed's bearer token, when the receiver asks for one
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return c._call(
            "GET",
            c.receiver_url + path,
            endpoint,
            auth=False,
            retry=False,
            headers=headers,
            **kwargs,
        ).json()

    def feed_latest(self) -> str:
        """The feed's current end."""
        return str(
            self._receiver("/v1/events", "GET receiver /v1/events", params={"after": "latest"})[
                "cursor"
            ]
        )

    def feed(
        self, after: str, wait: float, jobs: Sequence[str] | None = None
    ) -> tuple[list[Event], str, list[ChannelStatus]]:
        """Events after the cursor (only these jobs' and heartbeats, when given), long-polling
        up to ``wait`` seconds, and the channels."""
        params = {"after": after, "wait": f"{wait:.3f}"}
        if jobs is not None:
            params["jobs"] = ",".join(jobs)
        data = self._receiver(
            "/v1/events",
            "GET receiver /v1/events",
            params=params,
            timeout=wait + self._client.timeout,
        )
        return feed_page(data)

    def final_event(self, job_id: str) -> Job | None:
        """The final job the receiver has a webhook for, if any."""
        try:
            data = self._receiver(f"/v1/events/{job_id}", "GET receiver /v1/events/{job_id}")
        except JobNotFound:
            return None
        return Event.from_dict(data).final_job

    def status_many(self, ids: Sequence[str]) -> list[Job]:
        """One bulk status request (no transport retries: the waiter reschedules itself)."""
        return self._client.get_jobs(list(ids), retry=False)
