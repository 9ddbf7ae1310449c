"""A job as a handle, as Azure's ``LROPoller`` and Google's ``Operation`` have it.

    handle = client.submit(target_language="es")
    token = handle.continuation_token()      # store it; any process can resume from it
    handle = client.resume(token)            # costs no status request if the receiver
    job = handle.result(timeout=120)         # already holds the job's event

``result`` returns the completed job or raises ``JobFailed``, ``JobCancelled`` or
``WaitTimeout`` (also a ``TimeoutError``); ``done`` and ``status`` answer from what the
client knows; ``add_done_callback`` calls back once the job ended.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable
from typing import Any, Protocol

from .errors import ConfigurationError, TranslationError
from .models import Job, JobStatus
from .waitpolicy import Detection


class _Client(Protocol):
    base_url: str

    def wait(self, job_id: str, *, timeout: float | None = None) -> Job: ...
    def detection(self, job_id: str) -> Detection | None: ...
    def last_known(self, job_id: str) -> Job | None: ...
    def get_job(self, job_id: str) -> Job: ...
    def cancel_job(self, job_id: str) -> Job: ...


TOKEN_VERSION = 1


def encode_token(job_id: str, server_url: str) -> str:
    """A continuation token: which job, on which server (opaque to callers)."""
    raw = json.dumps({"v": TOKEN_VERSION, "job": job_id, "server": server_url})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, server_url: str) -> str:
    """The job id of a token made for ``server_url``; ConfigurationError if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        job_id, server = str(data["job"]), str(data["server"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError("not a continuation token of this library") from exc
    if data.get("v") != TOKEN_VERSION:
        raise ConfigurationError(f"continuation token version {data.get('v')!r} is not known")
    if server.rstrip("/") != server_url.rstrip("/"):
        raise ConfigurationError(f"continuation token for {server}, not for {server_url}")
    return job_id


class JobHandle:
    """One job of a ``TranslationClient``: wait for it, ask about it, resume it elsewhere."""

    def __init__(self, client: _Client, job_id: str) -> None:
        self._client = client
        self.id = job_id
        self._callbacks: list[Callable[[JobHandle], Any]] = []
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.status().value}>"

    def result(self, timeout: float | None = None) -> Job:
        """The completed job, waiting up to ``timeout`` seconds (None: as long as it takes)."""
        return self._client.wait(self.id, timeout=timeout)

    def done(self) -> bool:
        """Whether the job is known to have ended (no request is made)."""
        return self._client.detection(self.id) is not None

    def status(self) -> JobStatus:
        """The latest status known; one request when this client knows nothing of the job."""
        job = self._client.last_known(self.id)
        return (job or self._client.get_job(self.id)).status

    def cancel(self) -> Job:
        """Cancel the job (InvalidRequest, 409, when it already ended)."""
        return self._client.cancel_job(self.id)

    def continuation_token(self) -> str:
        """A token from which ``client.resume`` gives this handle back, in any process."""
        return encode_token(self.id, self._client.base_url)

    def add_done_callback(self, fn: Callable[[JobHandle], Any]) -> None:
        """Call ``fn(handle)`` once the job ended (at once if it has), from a waiting thread."""
        with self._lock:
            self._callbacks.append(fn)
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name=f"vt-handle-{self.id}", daemon=True
                )
                self._watcher.start()

    def _watch(self) -> None:
        try:
            self.result()
        except TranslationError:
            pass  # failed, cancelled or unreachable: the callbacks run and can ask result()
        finally:
            with self._lock:
                callbacks, self._callbacks = self._callbacks, []
                self._watcher = None
            for fn in callbacks:
                fn(self)
