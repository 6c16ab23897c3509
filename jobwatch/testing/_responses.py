"""The fake's canned answers: the bodies and headers a real foundation sends.

`FakeResponse` is one answer; its class methods build what the controller,
gorouter, nginx or a load balancer says. The byte bodies below are the
controller's own that the fake serves (404, 401, 429).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus

import attrs

__all__ = ["CC_ERRORS", "FakeResponse"]

#: The Cloud Controller's own (code, title, detail) for each error status a client must handle.
CC_ERRORS: Mapping[int, tuple[int, str, str]] = {
    400: (1004, "CF-BadRequest", "Bad request: invalid job reference"),
    401: (1000, "CF-InvalidAuthToken", "Invalid Auth Token"),
    403: (10003, "CF-NotAuthorized", "You are not authorized to perform the requested action"),
    404: (10010, "CF-ResourceNotFound", "Job not found"),
    409: (
        60016,
        "CF-AsyncServiceInstanceOperationInProgress",
        "An operation for service instance my-db is in progress.",
    ),
    422: (10008, "CF-UnprocessableEntity", "The request is semantically invalid"),
    429: (10013, "CF-RateLimitExceeded", "Rate Limit Exceeded"),
    500: (10001, "CF-ServerError", "Server error"),
    502: (
        150006,
        "CF-BlobstoreUnavailable",
        "Failed to perform operation due to blobstore unavailability.",
    ),
    503: (10015, "CF-ServiceUnavailable", "The Cloud Controller is temporarily unavailable"),
}

_JSON = "application/json; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html"
#: The API's route in the router's messages when no fake is there to name its own.
_DEFAULT_ROUTE = "api.example.org"


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _envelope(code: int, title: str, detail: str) -> bytes:
    return _dumps({"errors": [{"code": code, "title": title, "detail": detail}]})


_JOB_NOT_FOUND = _envelope(*CC_ERRORS[404])
_UNKNOWN_REQUEST = _envelope(10000, "CF-NotFound", "Unknown request")
_INVALID_TOKEN = _envelope(*CC_ERRORS[401])
_NOT_AUTHENTICATED = _envelope(10002, "CF-NotAuthenticated", "Authentication error")
# Byte for byte what the controller's rate limiter writes (its key order: detail, title, code).
_RATE_LIMITED = (
    b'{"errors":[{"detail":"Rate Limit Exceeded","title":"CF-RateLimitExceeded","code":10013}]}'
)


def _cc_error(detail: str, title: str, code: int) -> dict[str, object]:
    """One error object in the key order the controller's `V3ErrorHasher` writes."""
    return {"errors": [{"detail": detail, "title": title, "code": code}]}


def _root_body(url: str) -> bytes:
    """`GET /`: the API's links, the UAA on the same server."""
    return _dumps(
        {
            "links": {
                "self": {"href": url},
                "cloud_controller_v3": {"href": f"{url}/v3", "meta": {"version": "3.180.0"}},
                "login": {"href": url},
                "uaa": {"href": url},
            }
        }
    )


#: gorouter's plain-text error writer goes through Go's `http.Error`, which sets these.
_ROUTER_HEADERS: Mapping[str, str] = {"X-Content-Type-Options": "nosniff"}
#: The status lines Cloudflare sends for its own 52x errors.
_CLOUDFLARE_REASONS: Mapping[int, str] = {
    520: "Web Server Returned an Unknown Error",
    521: "Web Server Is Down",
    522: "Connection Timed Out",
    523: "Origin Is Unreachable",
    524: "A Timeout Occurred",
}
#: nginx-style phrases, which load balancers built on it keep.
_LB_REASONS: Mapping[int, str] = {408: "Request Time-out", 504: "Gateway Time-out"}


def _encode_body(body: str | bytes | Mapping[str, object] | Sequence[object] | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return _dumps(body)


@attrs.frozen
class FakeResponse:
    """One canned HTTP response, injected to replace a job GET.

    `dict`/`list` bodies are JSON-encoded; `delay` seconds pass before the answer
    (the request counts as in flight meanwhile); `reason` is the status line's
    phrase (None: the standard one). The class methods build each answer a real
    foundation gives, from the controller, gorouter, nginx or a load balancer.
    """

    status: int = 200
    # Excluded from the hash so a FakeResponse with a dict body or headers stays hashable.
    body: str | bytes | Mapping[str, object] | Sequence[object] | None = attrs.field(
        default=None, hash=False
    )
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    delay: float = 0.0
    reason: str | None = None

    @classmethod
    def error(
        cls,
        status: int,
        code: int | None = None,
        title: str | None = None,
        detail: str | None = None,
    ) -> FakeResponse:
        """A Cloud Controller error envelope; omitted fields come from `CC_ERRORS[status]`.

        E.g. `FakeResponse.error(403)` is `CF-NotAuthorized` 10003, as the controller sends it.
        """
        default = CC_ERRORS.get(status, (10001, "CF-ServerError", "Server error"))
        error = {
            "code": default[0] if code is None else code,
            "title": default[1] if title is None else title,
            "detail": default[2] if detail is None else detail,
        }
        return cls(status, {"errors": [error]}, _JSON)

    @classmethod
    def router_502(
        cls, cause: str = "dial tcp 10.0.16.12:9024: connect: connection refused"
    ) -> FakeResponse:
        """gorouter's 502 when the API VM fails the request: plain text, not JSON.

        `X-Cf-Routererror` is `endpoint_failure (<cause>)`, the Go error that ended it.
        """
        return cls(
            502,
            "502 Bad Gateway: Registered endpoint failed to handle the request.\n",
            _TEXT,
            {**_ROUTER_HEADERS, "X-Cf-Routererror": f"endpoint_failure ({cause})"},
        )

    @classmethod
    def router_404(cls, route: str = _DEFAULT_ROUTE) -> FakeResponse:
        """gorouter's 404 while no API VM is registered: the router's, not "job not found"."""
        return cls(
            404,
            f"404 Not Found: Requested route ('{route}') does not exist.\n",
            _TEXT,
            {
                **_ROUTER_HEADERS,
                "X-Cf-Routererror": "unknown_route",
                "Cache-Control": "no-cache, no-store",
            },
        )

    @classmethod
    def router_503(cls, route: str = _DEFAULT_ROUTE) -> FakeResponse:
        """gorouter's 503 when the route is known but has no endpoint left (`no_endpoints`)."""
        return cls(
            503,
            f"503 Service Unavailable: Requested route ('{route}') has no available endpoints.\n",
            _TEXT,
            {
                **_ROUTER_HEADERS,
                "X-Cf-Routererror": "no_endpoints",
                "Cache-Control": "public,max-age=2",
            },
        )

    @classmethod
    def router_503_connection_limit(cls, route: str = _DEFAULT_ROUTE) -> FakeResponse:
        """gorouter's 503 when the API's endpoints hold their maximum of connections."""
        return cls(
            503,
            f"503 Service Unavailable: Requested route ('{route}') "
            "has reached the connection limit.\n",
            _TEXT,
            {**_ROUTER_HEADERS, "X-Cf-Routererror": "Connection Limit Reached"},
        )

    @classmethod
    def bare_502(cls) -> FakeResponse:
        """A 502 carrying one bare error object, no `errors` envelope (allowed by the API spec)."""
        code, title, detail = CC_ERRORS[502]
        return cls(502, {"code": code, "title": title, "detail": detail}, _JSON)

    @classmethod
    def maintenance_503(cls) -> FakeResponse:
        """What the API VMs' nginx answers on every path while a backup holds the lock."""
        return cls(
            503,
            "API down for maintenance",
            _HTML,
            {"Server": "nginx"},
            reason="Service Temporarily Unavailable",
        )

    @classmethod
    def db_unavailable_503(cls) -> FakeResponse:
        """The controller's 503 when its database connection fails."""
        return cls(
            503,
            _cc_error("Database connection failure", "CF-ServiceUnavailable", 10015),
            _JSON,
        )

    @classmethod
    def uaa_unavailable_502(cls) -> FakeResponse:
        """The controller's 502 when it cannot reach the UAA to check a token."""
        return cls(
            502,
            _cc_error("The UAA service is currently unavailable", "CF-UaaUnavailable", 20004),
            _JSON,
        )

    @classmethod
    def rate_limited(cls, retry_after: int = 1) -> FakeResponse:
        """The controller's 429: a JSON envelope served as text/plain, with Retry-After."""
        return cls(429, _RATE_LIMITED, _TEXT, {"Retry-After": str(retry_after)})

    @classmethod
    def rate_limited_legacy(cls, epoch: int, *, limit: int = 2000) -> FakeResponse:
        """An older controller's 429: `Retry-After` is the reset epoch, equal to X-RateLimit-Reset.

        `epoch` is on the server's clock; `FakeCloudController.server_time()` gives it.
        """
        return cls(
            429,
            _RATE_LIMITED,
            _TEXT,
            {
                "Retry-After": str(epoch),
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(epoch),
            },
        )

    @classmethod
    def gateway_error(cls, status: int) -> FakeResponse:
        """A load balancer's or CDN's error in front of the API: short HTML or text, no JSON.

        408 and 504 come as an AWS load balancer's HTML page, 520-524 as
        Cloudflare's `error code: 52x` text; any other status >= 400 as a generic
        HTML page of the load balancer.
        """
        if status in _CLOUDFLARE_REASONS:
            return cls(
                status,
                f"error code: {status}",
                "text/plain; charset=UTF-8",
                {"Server": "cloudflare", "CF-RAY": "8f1c2a3b4d5e6f70-AMS"},
                reason=_CLOUDFLARE_REASONS[status],
            )
        if status < 400 or status > 599:
            raise ValueError(f"not an error status: {status}")
        reason = _LB_REASONS.get(status) or HTTPStatus(status).phrase
        page = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
        )
        return cls(status, page, _HTML, {"Server": "awselb/2.0"}, reason=reason)
