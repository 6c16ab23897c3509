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
    ├── JobTimeout(JobwatchError, TimeoutError)          .job (last seen), .timeout
    └── ClientClosed                                     a call on (or a wait cut by) closing

Every exception keeps its context as attributes and survives pickling: the
constructor arguments are stored in `args`, so `pickle` rebuilds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._models import ErrorDetail, Job

#: A body excerpt in a message: the start of a page, enough to recognise it.
EXCERPT_CHARS = 200
#: A message quotes at most this many entries of an `errors` list, each cut to
#: `DETAIL_CHARS`: with the other fields, about 1 KB of server text at most.
QUOTED_ERRORS = 3
DETAIL_CHARS = 250
#: A guid (at most 255 characters, see `_refs`) is quoted whole.
GUID_CHARS = 256
#: Any other server text a message quotes: a request id, a state, an operation.
FIELD_CHARS = 100
#: jobwatch's own text may carry some of the server's (an aiohttp parser error,
#: a decoder's complaint): bounded too.
MESSAGE_CHARS = 300


class JobwatchError(Exception):
    """The root of every error jobwatch raises."""

    #: True when another attempt may cure it (DESIGN.md section 3); the one place
    #: that rule lives, so everything else asks the error.
    transient: bool = False

    def __repr__(self) -> str:
        # The bounded message, not `args`: those may hold a whole hostile body,
        # a 5,000-entry errors list or a 100 KB reference.
        return f"{type(self).__name__}({str(self)!r})"


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
        return f"{_short(self.message, MESSAGE_CHARS)} for GET {_path(self.url)}{tries}"


class MalformedResponse(JobwatchError):
    """The server answered, but not with something jobwatch can read."""

    def __init__(self, message: str, *, status: int, body: str = "", url: str = "") -> None:
        # Only the excerpt is kept, in `args` too: not a whole 1 MB body per error.
        body = _short(body)
        super().__init__(message, status, body, url)
        self.message = message
        self.status = status
        self.body = body
        self.url = url

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), (self.message,), _kwargs(self, "status", "body", "url")))

    def __str__(self) -> str:
        excerpt = f": {self.body!r}" if self.body else ""
        message = _short(self.message, MESSAGE_CHARS)
        return f"malformed {self.status} response for GET {_path(self.url)}: {message}{excerpt}"


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
        router_error: str | None = None,
    ) -> None:
        super().__init__(status, tuple(errors))
        self.status = status
        self.errors = tuple(errors)
        self.request_id = request_id
        self.url = url
        self.body = "" if errors else _short(body)
        self.retry_after = retry_after
        #: The gorouter's `X-Cf-Routererror` (e.g. `unknown_route`): the router
        #: answered, not the Cloud Controller.
        self.router_error = router_error
        self.transient = is_transient_status(status) or (
            status == 404 and (router_error is not None or not self.errors)
        )

    def __reduce__(self) -> tuple[Any, ...]:
        fields = _kwargs(self, "request_id", "url", "body", "retry_after", "router_error")
        return (_rebuild, (type(self), (self.status, self.errors), fields))

    def __str__(self) -> str:
        what = _quote_errors(self.errors) or (repr(self.body) if self.body else "no details")
        rid = f" [request id {_short(self.request_id, FIELD_CHARS)}]" if self.request_id else ""
        wait = f" (retry after {self.retry_after:g} s)" if self.retry_after is not None else ""
        name = type(self).__name__
        router = (
            f" (router: {_short(self.router_error, FIELD_CHARS)})" if self.router_error else ""
        )
        return f"{self.status} {name} for GET {_path(self.url)}: {what}{router}{wait}{rid}"


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

    @property
    def reason(self) -> str:
        """What the controller said, bounded, without naming the job: the message's tail."""
        return _quote_errors(self.errors) or "the controller gave no error details"

    def __str__(self) -> str:
        op = f" ({_short(self.job.operation, FIELD_CHARS)})" if self.job.operation else ""
        return f"job {_short(self.job.guid, GUID_CHARS)}{op} FAILED: {self.reason}"


class JobTimeout(JobwatchError, TimeoutError):
    """The deadline passed before the job ended; `job` is the last one seen (or None)."""

    def __init__(self, guid: str, timeout: float, job: Job | None = None) -> None:
        super().__init__(guid, timeout, job)
        self.guid = guid
        self.timeout = timeout
        self.job = job

    @property
    def reason(self) -> str:
        """How long was waited and the last state seen, without naming the job."""
        seen = (
            f"last state {_short(self.job.state, FIELD_CHARS)}" if self.job else "no answer seen"
        )
        return f"did not end within {self.timeout:g} s; {seen}"

    def __str__(self) -> str:
        return f"job {_short(self.guid, GUID_CHARS)} {self.reason}"


class ClientClosed(JobwatchError):
    """A call on a closed client, or a wait (or token refresh) going on when it closed.

    The one place that says so: every check of a closed client raises this.
    """

    def __init__(self, during: str = "") -> None:
        super().__init__(during)
        #: What was going on when the client closed ("" : the call came after).
        self.during = during

    def __str__(self) -> str:
        if self.during:
            return f"the jobwatch client was closed during {self.during}"
        return "this jobwatch client is closed; make a new one"


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


def is_transient_status(status: int) -> bool:
    """True for statuses worth another attempt: the server or the path to it is in trouble.

    408 and 429, and every 5xx but 501 (Not Implemented) and 505 (HTTP Version
    Not Supported), which no retry changes. Load balancers and CDNs in front of
    the API add their own (520-524, 507, ...). A 404 is decided by `ApiError`:
    the router's is transient, the controller's is not.
    """
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def api_error(
    status: int,
    body: bytes,
    *,
    request_id: str | None,
    url: str,
    retry_after: float | None = None,
    router_error: str | None = None,
) -> ApiError:
    """Build the `ApiError` subclass for an error response, whatever shape its body has.

    A 404 that is not the controller's (the router's `unknown_route` while the
    API VMs restart, or any body that is not its JSON envelope) is a plain,
    transient `ApiError`, never `NotFound`: the job is not gone, the API is.
    """
    text = body.decode("utf-8", "replace")
    errors = parse_error_body(text)
    cls = STATUS_ERRORS.get(status, ApiError)
    if status == 404 and (router_error is not None or not errors):
        cls = ApiError
    return cls(
        status,
        errors,
        request_id=request_id,
        url=url,
        body=text,
        retry_after=retry_after,
        router_error=router_error,
    )


#: What decoding a body and structuring it may raise, besides `BodyShapeError`:
#: bad JSON and bad UTF-8 (ValueError), nesting too deep (RecursionError), and
#: whatever else a decoder throws on hostile input. All of it is a typed error.
DECODE_ERRORS = (ValueError, TypeError, RecursionError, OverflowError)


def parse_error_body(text: str) -> tuple[ErrorDetail, ...]:
    """Read the `{"errors": [...]}` envelope, a bare `{code, title, detail}`, or nothing.

    The content type is ignored on purpose: the rate limiter serves its JSON as
    text/plain, and the router's plain text is simply not JSON.
    """
    try:
        data = json.loads(text)
    except DECODE_ERRORS:
        # Not JSON, or JSON nested too deep to decode: no details, the status still speaks.
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
        _error_text(item.get("title")),
        _error_text(item.get("detail")),
    )


def _error_text(value: object) -> str:
    # Strings, and numbers as text; a list or an object is no title or detail (and
    # str() of one nested a thousand deep would raise RecursionError).
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value) if value else ""
    return ""


def _short(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` on one line, cut to `limit` characters; an ellipsis marks a cut."""
    # Only a head is looked at: a 1 MB body need not be split whole for 200
    # characters of it. Whitespace beyond 8:1 just makes the excerpt shorter.
    head = text[: limit * 8]
    line = " ".join(head.split())
    if len(line) <= limit and len(head) == len(text):
        return line
    return line[: limit - 1] + "…"


def _quote_errors(errors: Sequence[ErrorDetail]) -> str:
    """The first entries, each cut short, and how many more: never a whole hostile list."""
    quoted = [_short(str(error), DETAIL_CHARS) for error in errors[:QUOTED_ERRORS]]
    if len(errors) > QUOTED_ERRORS:
        quoted.append(f"and {len(errors) - QUOTED_ERRORS} more")
    return "; ".join(quoted)


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
