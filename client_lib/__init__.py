"""Client library for the video translation server: create jobs, learn when they end.

    from client_lib import TranslationClient
    with TranslationClient() as client:
        job = client.create_job(target_language="es")
        done = client.wait(job.id, timeout=120)

Names are loaded on first use, so the wire contract's modules (``models``, ``errors``,
``webhooks``, ``localsetup``) import without requests or the clients: the two services
import only those.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "AsyncJobHandle": "aio",
    "AsyncTranslationClient": "aio",
    "ClientStats": "client",
    "TranslationClient": "client",
    "APIError": "errors",
    "AuthenticationError": "errors",
    "InvalidRequest": "errors",
    "JobCancelled": "errors",
    "JobFailed": "errors",
    "JobNotFound": "errors",
    "RateLimited": "errors",
    "TranslationError": "errors",
    "TransportError": "errors",
    "WaitTimeout": "errors",
    "WebhookVerificationError": "errors",
    "Event": "models",
    "EventType": "models",
    "Job": "models",
    "JobError": "models",
    "JobStatus": "models",
    "Stage": "models",
    "Detection": "waitpolicy",
    "WaitPolicy": "waitpolicy",
}

__all__ = [
    "APIError",
    "AsyncJobHandle",
    "AsyncTranslationClient",
    "AuthenticationError",
    "ClientStats",
    "Detection",
    "Event",
    "EventType",
    "InvalidRequest",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobStatus",
    "RateLimited",
    "Stage",
    "TranslationClient",
    "TranslationError",
    "TransportError",
    "WaitPolicy",
    "WaitTimeout",
    "WebhookVerificationError",
]

if TYPE_CHECKING:
    from .aio import AsyncJobHandle, AsyncTranslationClient
    from .client import ClientStats, TranslationClient
    from .errors import (
        APIError,
        AuthenticationError,
        InvalidRequest,
        JobCancelled,
        JobFailed,
        JobNotFound,
        RateLimited,
        TranslationError,
        TransportError,
        WaitTimeout,
        WebhookVerificationError,
    )
    from .models import Event, EventType, Job, JobError, JobStatus, Stage
    from .waitpolicy import Detection, WaitPolicy


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'client_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
