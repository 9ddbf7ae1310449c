"""The client's exceptions: one tree, so ``except TranslationError`` catches everything.

    TranslationError            root: catch this to catch everything
    ├── ConfigurationError      a setting is unusable (also a ValueError)
    ├── TransportError          connection failed or timed out (wraps requests' errors)
    ├── APIError                non-2xx answer: .status_code, .code, .detail, .request_id
    │   ├── AuthenticationError 401
    │   ├── JobNotFound         404
    │   ├── InvalidRequest      400 / 409 / 413 / 422
    │   └── RateLimited         429: .retry_after
    ├── JobFailed               the job ended in error: .job
    ├── JobCancelled            the job was cancelled: .job
    ├── WaitTimeout             the caller's deadline passed: .job_id, .last_status
    └── WebhookVerificationError  a webhook not authentic or malformed: .status, .code

Lower-level errors are translated in one place (``transport.py``) and re-raised ``from`` the
original, so the cause is never lost and no raw ``requests`` exception reaches the caller.
"""

from __future__ import annotations

from typing import Any

from .models import Job, JobStatus


class TranslationError(Exception):
    """The root of every error this library raises."""


class ConfigurationError(TranslationError, ValueError):
    """A setting is unusable (a URL without http://, say); the message says how to fix it."""


class TransportError(TranslationError):
    """The request never got an HTTP answer: connection refused, reset, or timed out."""

    def __init__(self, message: str, *, method: str, url: str) -> None:
        super().__init__(f"{method} {url}: {message}")
        self.method = method
        self.url = url


class APIError(TranslationError):
    """The service answered with an error status (a problem+json body, RFC 9457)."""

    def __init__(
        self,
        *,
        status_code: int,
        method: str,
        url: str,
        code: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.retry_after = retry_after  # seconds, when the answer said (429, 503)
        self.method = method
        self.url = url
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.body = body
        where = f"{method} {url}"
        what = f"{status_code} {code or ''}".strip()
        super().__init__(f"{where}: {what}: {detail or 'no detail'} (request {request_id})")


class AuthenticationError(APIError):
    """401: the API key (or admin token) is missing or wrong."""


class JobNotFound(APIError):
    """404: no such job for this client (another client's job looks the same)."""

    @classmethod
    def invisible(cls, job_id: str) -> JobNotFound:
        """A job a bulk status answer left out: not this client's, or no such job."""
        detail = f"job {job_id} is not visible to this client"
        return cls(
            status_code=404, method="GET", url="/v1/jobs", code="job_not_found", detail=detail
        )


class InvalidRequest(APIError):
    """400, 409, 413 or 422: the request was refused; ``detail`` names the field."""


class RateLimited(APIError):
    """429: too many requests; ``retry_after`` says how long to wait, in seconds."""


class JobFailed(TranslationError):
    """The job ended in error; ``job.error`` says why."""

    def __init__(self, job: Job) -> None:
        err = job.error
        reason = f"{err.code}: {err.message}" if err else "no error detail"
        super().__init__(f"job {job.id} failed after {job.attempts} attempt(s): {reason}")
        self.job = job


class JobCancelled(TranslationError):
    """The job was cancelled before it finished."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} was cancelled")
        self.job = job


class WaitTimeout(TranslationError, TimeoutError):
    """The caller's deadline passed before the job ended (also a builtin ``TimeoutError``)."""

    def __init__(self, job_id: str, last_status: JobStatus | None, waited_s: float) -> None:
        status = last_status.value if last_status else "unknown"
        super().__init__(f"job {job_id} still {status} after waiting {waited_s:.1f}s")
        self.job_id = job_id
        self.last_status = last_status
        self.waited_s = waited_s


def error_for_status(status_code: int, **kwargs: Any) -> APIError:
    """The APIError subclass for an HTTP status."""
    if status_code == 401:
        return AuthenticationError(status_code=status_code, **kwargs)
    if status_code == 404:
        return JobNotFound(status_code=status_code, **kwargs)
    if status_code in (400, 409, 413, 422):
        return InvalidRequest(status_code=status_code, **kwargs)
    if status_code == 429:
        return RateLimited(status_code=status_code, **kwargs)
    return APIError(status_code=status_code, **kwargs)


class WebhookVerificationError(TranslationError):
    """A webhook that is not authentic, stale, or malformed: ``status`` 400 or 401, ``code``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def job_outcome(job: Job) -> Job:
    """The job if it completed; JobFailed or JobCancelled if it ended otherwise."""
    if job.status is JobStatus.ERROR:
        raise JobFailed(job)
    if job.status is JobStatus.CANCELLED:
        raise JobCancelled(job)
    return job
