"""Client library for the video translation server: create jobs, learn when they end.

from client_lib import TranslationClient
with TranslationClient() as client:
    job = client.create_job(target_language="es")
    done = client.wait(job.id, timeout=120)
"""

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
)
from .models import Event, EventType, Job, JobError, JobStatus, Stage
from .waiting import Detection, WaitPolicy

__all__ = [
    "APIError",
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
]
