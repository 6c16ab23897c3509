"""The exception tree, and the mapping from an HTTP error response to its class.

::

    JobwatchError
    ├── InvalidJobReference(JobwatchError, ValueError)   bad guid / foreign URL
    ├── ConfigError                                      no/invalid cf CLI config
    ├── TransportError                                   connection/timeout after retries
    ├── MalformedResponse                                .status, .body excerpt
    ├── ApiError                                         .status, .errors, .request_id, .url
    │   ├── BadRequest 400      ├── Unauthorized 401   ├── Forbidden 403
    │   ├── NotFound 404        ├── Conflict 409       ├── UnprocessableEntity 422
    │   ├── RateLimited 429 (.retry_after)             ├── InternalServerError 500
    │   ├── BadGateway 502      └── ServiceUnavailable 503   (other statuses: ApiError)
    ├── JobFailed                                        .job, .errors
    └── JobTimeout(JobwatchError, TimeoutError)          .job (last seen), .timeout

Every exception keeps its context as attributes and survives pickling: the
constructor arguments are stored in `args`, so `pickle` rebuilds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._models import ErrorDetail, Job

EXCERPT_CHARS = 200


class JobwatchError(Exception):
    """The root of every error jobwatch raises."""


class InvalidJobReference(JobwatchError, ValueError):
    """A job argument that is neither a valid guid nor a job URL on the client's API."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(reference, reason)
        self.reference = reference
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid job reference {_short(self.reference)!r}: {self.reason}"


class ConfigError(JobwatchError):
    """No usable credentials or target: the cf CLI config is missing or incomplete."""


class TransportError(JobwatchError):
    """The request never got an HTTP answer (connection refused, reset, timed out)."""

    def __init__(
        self, message: str, *, url: str = "", attempts: int = 1, transient: bool = True
    ) -> None:
        super().__init__(message, url, attempts)
        self.message = message
        self.url = url
        self.attempts = attempts
        #: False for failures no retry can cure (a bad certificate).
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:
        fields = _kwargs(self, "url", "attempts", "transient")
        return (_rebuild, (type(self), (self.message,), fields))

    def __str__(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"{self.message} for GET {_path(self.url)}{tries}"


class MalformedResponse(JobwatchError):
    """The server answered, but not with something jobwatch can read."""

    def __init__(self, message: str, *, status: int, body: str = "", url: str = "") -> None:
        super().__init__(message, status, body, url)
        self.message = message
        self.status = status
        self.body = _short(body)
        self.url = url

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (self.message,), _kwargs(self, "status", "body", "url")))

    def __str__(self) -> str:
        excerpt = f": {self.body!r}" if self.body else ""
        return (
            f"malformed {self.status} response for GET {_path(self.url)}: {self.message}{excerpt}"
        )


class ApiError(JobwatchError):
    """The Cloud Controller (or the router in front of it) answered with an error status."""

    def __init__(
        self,
        status: int,
        errors: Sequence[ErrorDetail] = (),
        *,
        request_id: str | None = None,
        url: str = "",
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, tuple(errors))
        self.status = status
        self.errors = tuple(errors)
        self.request_id = request_id
        self.url = url
        self.body = "" if errors else _short(body)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        fields = _kwargs(self, "request_id", "url", "body", "retry_after")
        return (_rebuild, (type(self), (self.status, self.errors), fields))

    def __str__(self) -> str:
        what = "; ".join(map(str, self.errors)) or (repr(self.body) if self.body else "no details")
        rid = f" [request id {self.request_id}]" if self.request_id else ""
        wait = f" (retry after {self.retry_after:g} s)" if self.retry_after is not None else ""
        name = type(self).__name__
        return f"{self.status} {name} for GET {_path(self.url)}: {what}{wait}{rid}"


class BadRequest(ApiError):
    """400."""


class Unauthorized(ApiError):
    """401: the token is missing, invalid or expired and could not be refreshed."""


class Forbidden(ApiError):
    """403: the user may not see this job."""


class NotFound(ApiError):
    """404: no such job (jobs are pruned after 90 days)."""


class Conflict(ApiError):
    """409."""


class UnprocessableEntity(ApiError):
    """422."""


class RateLimited(ApiError):
    """429: the per-user rate limit is exhausted; `retry_after` says for how long."""


class InternalServerError(ApiError):
    """500."""


class BadGateway(ApiError):
    """502: the router could not reach the Cloud Controller."""


class ServiceUnavailable(ApiError):
    """503: the API is down for maintenance or overloaded."""


class JobFailed(JobwatchError):
    """The job ended FAILED; `errors` holds what the controller said (may be empty)."""

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        self.job = job
        self.errors = job.errors

    def __str__(self) -> str:
        what = "; ".join(map(str, self.errors)) or "the controller gave no error details"
        op = f" ({self.job.operation})" if self.job.operation else ""
        return f"job {self.job.guid}{op} FAILED: {what}"


class JobTimeout(JobwatchError, TimeoutError):
    """The deadline passed before the job ended; `job` is the last one seen (or None)."""

    def __init__(self, guid: str, timeout: float, job: Job | None = None) -> None:
        super().__init__(guid, timeout, job)
        self.guid = guid
        self.timeout = timeout
        self.job = job

    def __str__(self) -> str:
        state = f"; last state {self.job.state}" if self.job else "; no answer seen"
        return f"job {self.guid} did not end within {self.timeout:g} s{state}"


STATUS_ERRORS: Mapping[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: UnprocessableEntity,
    429: RateLimited,
    500: InternalServerError,
    502: BadGateway,
    503: ServiceUnavailable,
}

#: Statuses worth another attempt: the server or the path to it is having trouble.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def api_error(
    status: int,
    body: bytes,
    *,
    request_id: str | None,
    url: str,
    retry_after: float | None = None,
) -> ApiError:
    """Build the `ApiError` subclass for an error response, whatever shape its body has."""
    text = body.decode("utf-8", "replace")
    errors = parse_error_body(text)
    cls = STATUS_ERRORS.get(status, ApiError)
    return cls(status, errors, request_id=request_id, url=url, body=text, retry_after=retry_after)


def parse_error_body(text: str) -> tuple[ErrorDetail, ...]:
    """Read the `{"errors": [...]}` envelope, a bare `{code, title, detail}`, or nothing.

    The content type is ignored on purpose: the rate limiter serves its JSON as
    text/plain, and the router's plain text is simply not JSON.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        items = data["errors"]
    elif isinstance(data, dict) and ("title" in data or "code" in data):
        items = [data]
    else:
        return ()
    return tuple(_error_detail(item) for item in items if isinstance(item, dict))


def _error_detail(item: Mapping[str, Any]) -> ErrorDetail:
    code = item.get("code")
    return ErrorDetail(
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        str(item.get("title") or ""),
        str(item.get("detail") or ""),
    )


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _path(url: str) -> str:
    # Messages name the path, not the host: shorter, and nothing of the target leaks.
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return url or "?"
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def _kwargs(obj: object, *names: str) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


def _rebuild(cls: type[Exception], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception:
    return cls(*args, **kwargs)
