"""A fake Cloud Controller and UAA on loopback HTTP, to test code that waits on jobs."""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import collections
import contextlib
import email.utils
import enum
import json
import math
import random
import socket
import struct
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO

import attrs
from aiohttp import hdrs, web

if TYPE_CHECKING:
    from .._client import Client

__all__ = [
    "CC_ERRORS",
    "FakeCloudController",
    "FakeResponse",
    "Fault",
    "Outage",
    "RateLimit",
    "RecordedRequest",
    "serve_forever",
]

TERMINAL_STATES = frozenset({"COMPLETE", "FAILED"})

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
_JOBS_PREFIX = "/v3/jobs/"
_JOBS_PREFIX_LEN = len(_JOBS_PREFIX)
# The methods `accept` answers with 202, and the operation each names by default.
_ACCEPTING_METHODS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
_HUGE_CHUNK = b"x" * 65536


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


class Fault(enum.Enum):
    """A misbehaviour of the network or the controller, served instead of a job."""

    RESET = "reset"  #: connection reset (RST) before any response byte
    RESET_MID_BODY = "reset_mid_body"  #: headers and half the body, then RST
    SHORT_BODY = "short_body"  #: half the body under a full Content-Length, then a clean close
    STALL = "stall"  #: no answer for `stall_seconds`, then the connection is dropped
    INVALID_JSON = "invalid_json"  #: 200 with `{"guid":`
    WRONG_SHAPE = "wrong_shape"  #: 200 with valid JSON that is not a job (`[1,2]`)
    HUGE_BODY = "huge_body"  #: 200 with a streamed 50 MiB JSON body
    DRIP = "drip"  #: 200 with the job body sent one byte every `drip_interval`
    SERVER_ERROR = "server_error"  #: 500 CF-ServerError envelope
    ROUTER_502 = "router_502"  #: gorouter's plain-text 502
    ROUTER_404 = "router_404"  #: gorouter's plain-text 404 for an unknown route
    ROUTER_503 = "router_503"  #: gorouter's plain-text 503, no endpoints registered
    MAINTENANCE_503 = "maintenance_503"  #: nginx's maintenance page during backups
    RATE_LIMITED_429 = "rate_limited_429"  #: 429 with Retry-After: 1


class Outage(enum.Enum):
    """What the API looks like from outside while part of the platform is down.

    Scheduled by time with `FakeCloudController.schedule_outage` / `schedule_deploy`.
    """

    ROUTER_404 = "router_404"  #: gorouter, API VMs gone: 404 `unknown_route`, text/plain
    ROUTER_502 = "router_502"  #: gorouter, the VM failed the request: 502 `endpoint_failure`
    ROUTER_503 = "router_503"  #: gorouter, route known but empty: 503 `no_endpoints`
    MAINTENANCE_503 = "maintenance_503"  #: nginx during backup/restore: 503 HTML page
    DB_503 = "db_503"  #: the controller without its database: 503 `CF-ServiceUnavailable`
    UAA_502 = "uaa_502"  #: the controller without the UAA: 502 `CF-UaaUnavailable`
    RESET = "reset"  #: every connection reset before any byte
    REFUSED = "refused"  #: nothing listens: connections are refused


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


_FAULT_RESPONSES: dict[Fault, FakeResponse] = {
    Fault.INVALID_JSON: FakeResponse(200, '{"guid":', _JSON),
    Fault.WRONG_SHAPE: FakeResponse(200, [1, 2], _JSON),
    Fault.SERVER_ERROR: FakeResponse.error(500),
    Fault.ROUTER_502: FakeResponse.router_502(),
    Fault.ROUTER_404: FakeResponse.router_404(),
    Fault.ROUTER_503: FakeResponse.router_503(),
    Fault.MAINTENANCE_503: FakeResponse.maintenance_503(),
    Fault.RATE_LIMITED_429: FakeResponse.rate_limited(1),
}


def _check_limit(instance: RateLimit, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError("limit must be at least 1")


def _check_window(instance: RateLimit, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError("window must be positive")


def _check_retry_after(instance: RateLimit, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("seconds", "epoch"):
        raise ValueError(f"retry_after must be 'seconds' or 'epoch', not {value!r}")


def _check_offset(
    instance: RateLimit, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError("offset must be a finite number of seconds")


def _check_vms(instance: RateLimit, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError("vms must be at least 1")


@attrs.frozen
class RateLimit:
    """The controller's rate limiter: fixed windows per Authorization header value.

    A token's windows are `[offset + k*window, offset + (k+1)*window)` on the
    server's clock (epoch seconds). Each job GET with a valid token counts and
    carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` (rounded down to 10 %
    steps of the limit) and `X-RateLimit-Reset` (the window's end, truncated to
    the second); past the limit it gets the text/plain 429.

    Args:
        limit: requests per window and token.
        window: the window's length in seconds.
        retry_after: `"seconds"`: the 429's `Retry-After` is delay-seconds until the
            truncated reset (0 in the window's last second), as CAPI since May 2023;
            `"epoch"`: the reset epoch itself, as older controllers send it.
        offset: where windows start (seconds past a multiple of `window`); None
            gives each token its own, drawn from the fake's seeded random numbers.
        vms: API VMs the requests go round-robin over; each enforces
            `ceil(limit / vms)` on its own count and estimates Remaining from it.
    """

    limit: int = attrs.field(default=100, validator=_check_limit)
    window: float = attrs.field(default=60.0, validator=_check_window)
    retry_after: Literal["seconds", "epoch"] = attrs.field(
        default="seconds", kw_only=True, validator=_check_retry_after
    )
    offset: float | None = attrs.field(default=None, kw_only=True, validator=_check_offset)
    vms: int = attrs.field(default=1, kw_only=True, validator=_check_vms)


@attrs.frozen
class RecordedRequest:
    """What the fake saw of one request, so tests can assert on traffic."""

    method: str
    path: str
    guid: str | None
    authorization: str | None
    host: str | None
    time: float


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET

FaultTable = tuple[tuple[float, Fault], ...]


def _fault_table(base: FaultTable, faults: Mapping[Fault, float] | None) -> FaultTable:
    """Cumulative probabilities, so one random draw picks at most one fault."""
    table = list(base)
    total = table[-1][0] if table else 0.0
    for fault, probability in (faults or {}).items():
        if not isinstance(fault, Fault) or not 0.0 <= probability <= 1.0:
            raise ValueError(f"bad fault probability {fault!r}: {probability!r}")
        if probability:
            total += probability
            table.append((total, fault))
    if total > 1.0 + 1e-9:
        raise ValueError("fault probabilities add up to more than 1")
    return tuple(table)


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _plural(resource: str) -> str:
    return resource if resource.endswith("s") else resource + "s"


@attrs.frozen
class _Script:
    """What a job will do; shared by all jobs of one `add_jobs` call."""

    operation: str
    states: tuple[str, ...]
    offsets: tuple[float, ...]  # empty: scripted by poll count
    terminal_offset: float | None
    failed_errors: list[dict[str, object]] | None
    warnings: list[dict[str, str]]
    resource_path: str | None
    resource: str | None
    faults: FaultTable | None  # None: the server-wide table


@attrs.define(slots=True)
class _Job:
    guid: str
    script: _Script
    created_sec: int
    polls: int = 0
    served: int = 0
    first_poll: float | None = None
    started: float | None = None  # a timeline's origin: the 202 that created it, or the first GET
    finished: float | None = None
    body_state: str | None = None
    body: bytes = b""
    updated_sec: int = 0
    resource_guid: str = ""


class _RateWindow:
    """One token's place in its rate-limit windows: its offset and each VM's count."""

    __slots__ = ("counts", "index", "offset")

    def __init__(self, offset: float, vms: int) -> None:
        self.offset = offset
        self.index: int | None = None
        self.counts = [0] * vms


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class FakeCloudController:
    """A Cloud Controller double serving scripted `/v3/jobs/{guid}` on 127.0.0.1.

    Real HTTP on an ephemeral port, so clients are exercised end to end: auth,
    rate limiting, a UAA token endpoint, and injectable network faults::

        async def test_delete_waits_for_job():
            async with FakeCloudController(token="abc") as cc:
                guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
                cc.inject(guid, FakeResponse.router_502())  # the first GET fails
                await my_code_that_waits(cc.url, token="abc", job=cc.job_url(guid))
                assert cc.polls(guid) == 3

    Injected responses and faults never advance a job's poll-count script.

    Every answer carries a `Date` of the server's clock (`server_time()`: this
    machine's plus `clock_skew`), which also dates jobs and rate-limit epochs.
    Outages scheduled by time (`schedule_outage`, `schedule_deploy`) answer
    every API path as the router, nginx or the controller do while part of the
    platform is down; jobs go on meanwhile. The fake UAA (`POST /oauth/token`)
    is another host in reality, so only `Outage.REFUSED` (the same socket here)
    reaches it; `uaa_available` and `uaa_latency` act on it alone.

    Attributes:
        requests: every request seen, as `RecordedRequest` (unless `record_requests=False`).
        faults_injected: how many of each `Fault` were served, random or injected.
        rate_limited_count: 429s served by the rate limiter.
        outage_requests: requests answered by an outage window (refused ones are never seen).
        clock_skew: seconds the server's clock is ahead of this machine's (settable).
        uaa_available: False makes `/oauth/token` answer the router's 503 (settable).
        uaa_latency: seconds before the UAA answers (settable).
        refresh_calls: `POST /oauth/token` calls, successful or not.
        refresh_token: the refresh token the fake UAA accepts (settable).
        stall_seconds: how long `Fault.STALL` holds a request (default 30).
        drip_interval: seconds between bytes of `Fault.DRIP` (default 0.5).
        huge_body_size: bytes of `Fault.HUGE_BODY` (default 50 MiB).
        latency: seconds every job GET takes (settable).
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        rate_limit: RateLimit | None = None,
        faults: Mapping[Fault, float] | None = None,
        seed: int | None = 0,
        token_ttl_requests: int | None = None,
        refresh_token: str = "refresh-token",
        uaa_client: tuple[str, str] = ("cf", ""),
        latency: float = 0.0,
        record_requests: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        clock_skew: float = 0.0,
    ) -> None:
        """Configure the fake; nothing listens until `start()` / `async with`.

        Args:
            token: accepted bearer token; None accepts any request.
            rate_limit: enable the controller's per-token rate limiting.
            faults: probability per job GET of each random fault.
            seed: seeds the random faults, so a failing run can be replayed.
            token_ttl_requests: the token expires after this many authorized requests.
            refresh_token: what the fake UAA accepts at `POST /oauth/token`.
            uaa_client: the (client id, secret) the fake UAA expects.
            latency: seconds every job GET takes before answering.
            record_requests: keep `requests`; turn off for long benchmarks.
            clock_skew: the server's clock is `time.time() + clock_skew`.
        """
        self.clock_skew = clock_skew
        self.uaa_available = True
        self.uaa_latency = 0.0
        self.outage_requests = 0
        self.refresh_token = refresh_token
        self.uaa_client = uaa_client
        self.latency = latency
        self.stall_seconds = 30.0
        self.drip_interval = 0.5
        self.huge_body_size = 50 * 1024 * 1024
        self.requests: list[RecordedRequest] = []
        self.faults_injected: collections.Counter[Fault] = collections.Counter()
        self.rate_limited_count = 0
        self.refresh_calls = 0
        self._token: str | None = None
        self._bearer = ""
        self._token_uses = 0
        self.token = token
        self._token_ttl = token_ttl_requests
        self._rate_limit = rate_limit
        self._windows: dict[str, _RateWindow] = {}
        self._next_vm = 0
        self._fault_table = _fault_table((), faults)
        self._rng = random.Random(seed)
        # A stream of its own, so the tokens seen do not shift the random faults.
        self._offset_rng = random.Random(None if seed is None else f"rate-limit-{seed}")
        self._fault_responses = dict(_FAULT_RESPONSES)
        self._outage_responses: dict[Outage, FakeResponse] = {}
        self._uaa_down = FakeResponse.router_503("uaa.example.org")
        self._outages: list[tuple[Outage, float, float]] = []
        self._outages_until = -math.inf  # the latest end of any window
        self._timers: list[asyncio.TimerHandle] = []
        self._listener_tasks: set[asyncio.Task[None]] = set()
        self._listener_lock: asyncio.Lock | None = None
        self._site: web.TCPSite | None = None
        self._bound_port = 0
        self._date_sec = -1
        self._date = ""
        self._record = record_requests
        self._host = host
        self._port = port
        self._jobs: dict[str, _Job] = {}
        self._unknown_polls: collections.Counter[str] = collections.Counter()
        self._injected: dict[str, collections.deque[FakeResponse | Fault]] = {}
        self._accepting: dict[tuple[str, str], collections.deque[tuple[str, _Script]]] = {}
        self._in_flight = 0
        self._peak_in_flight = 0
        self._sleepers: set[asyncio.Future[bool]] = set()
        self._closing = False
        self._runner: web.ServerRunner | None = None
        self._url = ""
        self._wall_offset = time.time() - time.monotonic()
        self._request_no = 0
        self._rid_prefix = str(uuid.uuid4())[:24]
        self._rid_suffix = str(uuid.uuid4())

    def __repr__(self) -> str:
        where = self._url or "not started"
        outage = self._outage_at(time.monotonic())
        down = "" if outage is None else f" outage={outage.name}"
        return (
            f"<FakeCloudController {where} jobs={len(self._jobs)} "
            f"requests={self._request_no} in_flight={self._in_flight}{down}>"
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> FakeCloudController:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start listening; `url` is valid afterwards."""
        if self._runner is not None:
            raise RuntimeError("FakeCloudController is already started")
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        # A short shutdown timeout: stalled or dripping handlers must not hold up a test.
        runner = web.ServerRunner(server, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._site = site
        self._closing = False
        self._listener_lock = asyncio.Lock()
        host, port = runner.addresses[0][:2]
        self._bound_port = port
        self._url = f"http://{host}:{port}"
        self._routes(str(host))
        now = time.monotonic()
        for kind, begin, end in self._outages:
            if kind is Outage.REFUSED and end > now:
                self._arm(begin, end)

    async def aclose(self) -> None:
        """Stop serving; requests still sleeping (STALL, DRIP, delay) are cut off at once."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in list(self._listener_tasks):
            task.cancel()
        for task in list(self._listener_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for future in list(self._sleepers):
            _resolve(future, False)
        self._site = None
        await runner.cleanup()

    def _routes(self, host: str) -> None:
        """The answers that name the fake's own routes (`api.<host>`, `uaa.<host>`)."""
        api = f"api.{host}"
        self._fault_responses[Fault.ROUTER_404] = FakeResponse.router_404(api)
        self._fault_responses[Fault.ROUTER_503] = FakeResponse.router_503(api)
        self._uaa_down = FakeResponse.router_503(f"uaa.{host}")
        self._outage_responses = {
            Outage.ROUTER_404: self._fault_responses[Fault.ROUTER_404],
            Outage.ROUTER_502: FakeResponse.router_502(),
            Outage.ROUTER_503: self._fault_responses[Fault.ROUTER_503],
            Outage.MAINTENANCE_503: FakeResponse.maintenance_503(),
            Outage.DB_503: FakeResponse.db_unavailable_503(),
            Outage.UAA_502: FakeResponse.uaa_unavailable_502(),
        }

    # -- outages -------------------------------------------------------------------------

    def schedule_outage(self, kind: Outage, duration: float, *, start: float = 0.0) -> None:
        """Answer every API path as `kind` does for `duration` seconds, `start` seconds from now.

        Several windows may be scheduled; where they overlap, the one that starts
        first answers. Jobs go on server-side meanwhile, and a job GET answered
        by the outage still counts in `polls()`.
        """
        if not isinstance(kind, Outage):
            raise TypeError(f"not an Outage: {kind!r}")
        if not duration > 0 or not math.isfinite(duration):
            raise ValueError("duration must be a positive number of seconds")
        if not start >= 0 or not math.isfinite(start):
            raise ValueError("start must be a non-negative number of seconds")
        begin = time.monotonic() + start
        self._add_window(kind, begin, begin + duration)

    def schedule_deploy(
        self, steps: Sequence[tuple[Outage, float]], *, start: float = 0.0
    ) -> None:
        """Schedule back-to-back outage windows, as a deploy goes through them.

        E.g. `[(Outage.MAINTENANCE_503, 5), (Outage.ROUTER_404, 5), (Outage.REFUSED, 5)]`.
        """
        for kind, duration in steps:  # check them all before scheduling any
            if not isinstance(kind, Outage) or not duration > 0 or not math.isfinite(duration):
                raise ValueError(f"bad deploy step {(kind, duration)!r}")
        if not start >= 0 or not math.isfinite(start):
            raise ValueError("start must be a non-negative number of seconds")
        begin = time.monotonic() + start
        for kind, duration in steps:
            end = begin + duration
            self._add_window(kind, begin, end)
            begin = end

    def _add_window(self, kind: Outage, begin: float, end: float) -> None:
        bisect.insort(self._outages, (kind, begin, end), key=lambda window: window[1])
        self._outages_until = max(self._outages_until, end)
        if kind is Outage.REFUSED and self._runner is not None:
            self._arm(begin, end)

    @property
    def outage_active(self) -> Outage | None:
        """The outage answering right now, or None."""
        return self._outage_at(time.monotonic())

    @property
    def outage_windows(self) -> list[tuple[Outage, float, float]]:
        """Every window scheduled, as `(kind, start, end)` in `time.monotonic()` seconds."""
        return list(self._outages)

    def _outage_at(self, now: float) -> Outage | None:
        if now >= self._outages_until:
            return None
        for kind, begin, end in self._outages:
            if begin > now:
                return None
            if now < end:
                return kind
        return None

    def _arm(self, begin: float, end: float) -> None:
        """Close the listening socket at `begin` and listen again at `end`."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        for when in (begin, end):
            self._timers.append(loop.call_later(max(when - now, 0.0), self._transition, when))

    def _transition(self, when: float) -> None:
        task = asyncio.get_running_loop().create_task(self._reconcile_listener(when))
        self._listener_tasks.add(task)
        task.add_done_callback(self._listener_tasks.discard)

    async def _reconcile_listener(self, when: float) -> None:
        """Listen, or not, as the REFUSED windows say for the instant `when`."""
        assert self._listener_lock is not None
        async with self._listener_lock:
            runner = self._runner
            if runner is None:
                return
            refused = any(
                kind is Outage.REFUSED and begin <= when < end
                for kind, begin, end in self._outages
            )
            if refused and self._site is not None:
                site, self._site = self._site, None
                await site.stop()
                server = runner.server
                if server is not None:
                    # Nothing listens: keep-alive connections are gone too.
                    for handler in server.connections:
                        if handler.transport is not None:
                            _reset(handler.transport)
            elif not refused and self._site is None:
                site = web.TCPSite(runner, self._host, self._bound_port, backlog=1024)
                await site.start()
                self._site = site

    # -- public state --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base URL, `http://127.0.0.1:PORT`."""
        if not self._url:
            raise RuntimeError("FakeCloudController is not started")
        return self._url

    @property
    def uaa_url(self) -> str:
        """The fake UAA's base URL (the same server: `POST /oauth/token`)."""
        return self.url

    def job_url(self, guid: str) -> str:
        """The job's absolute URL, as a `Location` header would carry it."""
        return f"{self.url}{_JOBS_PREFIX}{guid}"

    def client(self, **kwargs: Any) -> Client:
        """A `jobwatch.Client` pointed at this fake, with the token it accepts.

        Keyword arguments go to `jobwatch.Client` and override (`poll=`,
        `retry=`, `token=`, ...). The policies are the real defaults: with
        `set_testing()` on, the client polls and retries without waiting.
        Use it as `async with cc.client() as cf:`.

        Raises:
            RuntimeError: the fake is not started.
        """
        from .._client import Client  # here: the fake itself never needs the client
        from .._refs import is_loopback

        url = self.url
        if self._token is not None:
            kwargs.setdefault("token", self._bearer)
        if not is_loopback(self._host):  # bound elsewhere on purpose: plain http is all it speaks
            kwargs.setdefault("allow_insecure_http", True)
        return Client(url, **kwargs)

    @property
    def token(self) -> str | None:
        """The bearer token the API accepts; set it to rotate (resets the token's TTL)."""
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        self._token = value
        self._bearer = f"bearer {value}"
        self._token_uses = 0

    def server_time(self) -> float:
        """The server's clock: `time.time() + clock_skew`, epoch seconds."""
        return time.time() + self.clock_skew

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most requests ever handled at once."""
        return self._peak_in_flight

    def polls(self, guid: str) -> int:
        """How many GETs the job's URL got, whatever was answered."""
        job = self._jobs.get(guid)
        return job.polls if job is not None else self._unknown_polls[guid]

    def finished_at(self, guid: str) -> float | None:
        """`time.monotonic()` when the job turned terminal on the server, or None if not yet.

        Timeline jobs finish at their start (the 202 of `accept`, else the first
        GET) + the terminal offset, polled or not; poll-count jobs finish at the
        GET that first served the terminal state.
        """
        job = self._jobs[guid]
        script = job.script
        if not script.offsets:
            return job.finished
        if job.started is None or script.terminal_offset is None:
            return None
        finished = job.started + script.terminal_offset
        return finished if finished <= time.monotonic() else None

    # -- scripting -----------------------------------------------------------------------

    def add_job(
        self,
        guid: str | None = None,
        *,
        states: Sequence[str] = ("PROCESSING", "COMPLETE"),
        operation: str = "app.delete",
        errors: Sequence[Mapping[str, object]] | Literal[_Unset.UNSET] | None = _UNSET,
        warnings: Sequence[str] = (),
        timeline: Sequence[tuple[float, str]] | None = None,
        resource: str | None = "app",
        created_at: datetime | str | None = None,
        faults: Mapping[Fault, float] | None = None,
    ) -> str:
        """Add a job and return its guid (a new uuid4 when `guid` is None).

        Args:
            states: the n-th GET (from 0) sees `states[min(n, len - 1)]`.
            timeline: `(seconds since the first GET, state)` pairs; overrides `states`.
            errors: served when FAILED; None serves `"errors": null` (a controller bug);
                unset serves one realistic broker error.
            warnings: warning details, served as `[{"detail": ...}]`.
            resource: name of the resource link (`app`, `space`, ...); None for none.
            faults: probability per GET of random faults for this job only (on top
                of the server-wide ones).
        """
        script = self._script(states, operation, errors, warnings, timeline, resource, faults)
        return self._add(guid, script, self._created_sec(created_at))

    def add_jobs(
        self,
        n: int,
        *,
        states: Sequence[str] = ("PROCESSING", "COMPLETE"),
        operation: str = "app.delete",
        errors: Sequence[Mapping[str, object]] | Literal[_Unset.UNSET] | None = _UNSET,
        warnings: Sequence[str] = (),
        timeline: Sequence[tuple[float, str]] | None = None,
        resource: str | None = "app",
        created_at: datetime | str | None = None,
        faults: Mapping[Fault, float] | None = None,
    ) -> list[str]:
        """Add `n` jobs sharing one script (cheap for thousands); return their guids."""
        script = self._script(states, operation, errors, warnings, timeline, resource, faults)
        created = self._created_sec(created_at)
        return [self._add(None, script, created) for _ in range(n)]

    def accept(
        self,
        method: str,
        path: str,
        *,
        states: Sequence[str] = ("PROCESSING", "COMPLETE"),
        operation: str | None = None,
        errors: Sequence[Mapping[str, object]] | Literal[_Unset.UNSET] | None = _UNSET,
        warnings: Sequence[str] = (),
        timeline: Sequence[tuple[float, str]] | None = None,
        faults: Mapping[Fault, float] | None = None,
    ) -> str:
        """Answer the next `method path` with `202 Accepted` and a new job; return its guid.

        As the controller does for `DELETE /v3/apps/{guid}` or `POST
        /v3/service_instances`: the answer has no body, the job's URL in
        `Location` and the server's `Date`. The job exists from that answer on
        (a GET before it is a 404), created in its second, and a `timeline`
        counts from it rather than from the first GET. Each call scripts one
        answer; calls for the same route are served in order, then the route
        is unknown again (404). Auth, the rate limiter and outages apply as to
        job GETs. `operation` defaults to the route's: `app.delete`,
        `service_instance.create`, `app.update` (PATCH).

        Args:
            method: `POST`, `PUT`, `PATCH` or `DELETE`.
            path: the request's path, e.g. `/v3/apps/{guid}`.
            states, errors, warnings, timeline, faults: as for `add_job`.
        """
        method = method.upper()
        segments = path.split("/")
        if method not in _ACCEPTING_METHODS:
            raise ValueError(f"{method} is not answered 202: use {', '.join(_ACCEPTING_METHODS)}")
        if len(segments) < 3 or segments[:2] != ["", "v3"] or not segments[2] or "?" in path:
            raise ValueError(f"expected a /v3/... resource path, got {path!r}")
        if segments[2] == "jobs":
            raise ValueError("/v3/jobs/ is the fake's own: accept a resource's path")
        resource = segments[2][:-1] if segments[2].endswith("s") else segments[2]
        if operation is None:
            operation = f"{resource}.{_ACCEPTING_METHODS[method]}"
        script = self._script(states, operation, errors, warnings, timeline, resource, faults)
        guid = str(uuid.uuid4())
        self._accepting.setdefault((method, path), collections.deque()).append((guid, script))
        return guid

    def inject(self, guid: str, *responses: FakeResponse | Fault) -> None:
        """Serve `responses`, in order, instead of the job on its next GETs.

        Injections come before auth and rate limiting, like a fault in the router.
        """
        for item in responses:
            if not isinstance(item, FakeResponse | Fault):
                raise TypeError(f"cannot inject {item!r}")
        self._injected.setdefault(guid, collections.deque()).extend(responses)

    def _add(self, guid: str | None, script: _Script, created_sec: int) -> str:
        if guid is None:
            guid = str(uuid.uuid4())
        elif not guid or "/" in guid:
            raise ValueError(f"invalid job guid {guid!r}")
        elif guid in self._jobs:
            raise ValueError(f"job {guid!r} already exists")
        self._jobs[guid] = _Job(guid, script, created_sec)
        return guid

    def _created_sec(self, created_at: datetime | str | None) -> int:
        if created_at is None:
            return int(self.server_time())
        if isinstance(created_at, str):
            created_at = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
        return int(created_at.timestamp())

    def _script(
        self,
        states: Sequence[str],
        operation: str,
        errors: Sequence[Mapping[str, object]] | Literal[_Unset.UNSET] | None,
        warnings: Sequence[str],
        timeline: Sequence[tuple[float, str]] | None,
        resource: str | None,
        faults: Mapping[Fault, float] | None,
    ) -> _Script:
        offsets: tuple[float, ...] = ()
        terminal_offset = None
        if timeline is not None:
            entries = sorted(timeline, key=lambda entry: entry[0])
            if not entries:
                raise ValueError("timeline must not be empty")
            offsets = tuple(float(offset) for offset, _ in entries)
            states = tuple(state for _, state in entries)
            terminal_offset = next((off for off, st in entries if st in TERMINAL_STATES), None)
        if not states or not all(isinstance(s, str) and s for s in states):
            raise ValueError("states must be a non-empty sequence of non-empty strings")
        failed_errors: list[dict[str, object]] | None
        if errors is _UNSET:
            verb = operation.rpartition(".")[2] or operation
            failed_errors = [
                {
                    "code": 10009,
                    "title": "CF-UnableToPerform",
                    "detail": f"{verb} could not be completed: Service broker error: "
                    "The service broker returned an invalid response",
                }
            ]
        elif errors is None:
            failed_errors = None
        else:
            failed_errors = [dict(error) for error in errors]
        return _Script(
            operation=operation,
            states=tuple(states),
            offsets=offsets,
            terminal_offset=terminal_offset,
            failed_errors=failed_errors,
            warnings=[{"detail": detail} for detail in warnings],
            resource_path=None if resource is None else f"/v3/{_plural(resource)}/",
            resource=resource,
            faults=None if not faults else _fault_table(self._fault_table, faults),
        )

    # -- request handling ----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self._in_flight += 1
        if self._in_flight > self._peak_in_flight:
            self._peak_in_flight = self._in_flight
        try:
            now = time.monotonic()
            path = request.path
            auth = request.headers.get(hdrs.AUTHORIZATION)
            guid = path[_JOBS_PREFIX_LEN:] if path.startswith(_JOBS_PREFIX) else None
            if self._record:
                self.requests.append(
                    RecordedRequest(
                        request.method, path, guid, auth, request.headers.get(hdrs.HOST), now
                    )
                )
            job_guid = guid if guid and "/" not in guid and request.method == "GET" else None
            if path == "/oauth/token" and request.method == "POST":
                return await self._token_request(request)  # another host: no outage here
            if now < self._outages_until:
                kind = self._outage_at(now)
                if kind is not None:
                    return await self._serve_outage(request, kind, job_guid, now)
            if job_guid is not None:
                return await self._job_request(request, job_guid, auth, now)
            if self._accepting and (request.method, path) in self._accepting:
                return self._accept_request(request.method, path, auth, now)
            if path == "/" and request.method == "GET":
                return self._root()
            return web.Response(status=404, body=_UNKNOWN_REQUEST, headers=self._headers(_JSON))
        finally:
            self._in_flight -= 1

    def _headers(self, content_type: str) -> dict[str, str]:
        self._request_no += 1
        rid = f"{self._rid_prefix}{self._request_no:012x}::{self._rid_suffix}"
        # aiohttp's own Date would be this machine's clock: the server's goes in instead.
        second = int(time.time() + self.clock_skew)
        if second != self._date_sec:
            self._date_sec = second
            self._date = email.utils.formatdate(second, usegmt=True)
        return {
            hdrs.CONTENT_TYPE: content_type,
            hdrs.DATE: self._date,
            "X-Vcap-Request-Id": rid,
        }

    def _count_poll(self, guid: str, now: float) -> _Job | None:
        job = self._jobs.get(guid)
        if job is None:
            self._unknown_polls[guid] += 1
        else:
            job.polls += 1
            if job.first_poll is None:
                job.first_poll = now
            if job.started is None:
                job.started = now
        return job

    async def _serve_outage(
        self, request: web.BaseRequest, kind: Outage, guid: str | None, now: float
    ) -> web.StreamResponse:
        if kind is Outage.REFUSED:
            # Came in before the listener closed: it was never really served.
            return _abort(request)
        if guid is not None:
            self._count_poll(guid, now)
        self.outage_requests += 1
        if kind is Outage.RESET:
            return _abort(request)
        return await self._serve_fake(request, self._outage_responses[kind])

    async def _job_request(
        self, request: web.BaseRequest, guid: str, auth: str | None, now: float
    ) -> web.StreamResponse:
        job = self._count_poll(guid, now)

        if self._injected:
            queue = self._injected.get(guid)
            if queue:
                item = queue.popleft()
                if not queue:
                    del self._injected[guid]
                if isinstance(item, Fault):
                    self.faults_injected[item] += 1
                    return await self._serve_fault(request, item, job)
                return await self._serve_fake(request, item)

        table = (
            self._fault_table if job is None or job.script.faults is None else job.script.faults
        )
        if table:
            draw = self._rng.random()
            for cumulative, fault in table:
                if draw < cumulative:
                    self.faults_injected[fault] += 1
                    return await self._serve_fault(request, fault, job)

        headers = self._headers(_JSON)
        refused = self._admit(auth, headers)
        if refused is not None:
            return refused

        if self.latency > 0:
            if not await self._sleep(self.latency):
                return _abort(request)
            now = time.monotonic()
        if job is None:
            return web.Response(status=404, body=_JOB_NOT_FOUND, headers=headers)
        return web.Response(body=self._job_body(job, now, advance=True), headers=headers)

    def _admit(self, auth: str | None, headers: dict[str, str]) -> web.Response | None:
        """The controller's checks before any endpoint: the 401 or 429 to answer, or None."""
        # The token is checked before the rate limiter counts: a bad one gets 401, never 429.
        if self._token is not None:
            if auth is None:
                return web.Response(status=401, body=_NOT_AUTHENTICATED, headers=headers)
            if auth != self._bearer and (auth[7:] != self._token or auth[:7].lower() != "bearer "):
                return web.Response(status=401, body=_INVALID_TOKEN, headers=headers)
            if self._token_ttl is not None and self._token_uses >= self._token_ttl:
                return web.Response(status=401, body=_INVALID_TOKEN, headers=headers)

        if self._rate_limit is not None and not self._count_request(auth, headers):
            self.rate_limited_count += 1
            headers[hdrs.CONTENT_TYPE] = _TEXT
            return web.Response(status=429, body=_RATE_LIMITED, headers=headers)
        if self._token is not None and self._token_ttl is not None:
            self._token_uses += 1
        return None

    def _accept_request(
        self, method: str, path: str, auth: str | None, now: float
    ) -> web.Response:
        headers = self._headers(_JSON)
        refused = self._admit(auth, headers)
        if refused is not None:
            return refused
        queue = self._accepting[(method, path)]
        guid, script = queue.popleft()
        if not queue:
            del self._accepting[(method, path)]
        self._add(guid, script, int(self.server_time()))
        self._jobs[guid].started = now
        del headers[hdrs.CONTENT_TYPE]
        headers[hdrs.LOCATION] = self.job_url(guid)
        return web.Response(status=202, headers=headers)

    def _count_request(self, auth: str | None, headers: dict[str, str]) -> bool:
        """Count a request in its token's window and set the headers; False when over."""
        rate = self._rate_limit
        assert rate is not None
        limit, length, vms = rate.limit, rate.window, rate.vms
        server_now = time.time() + self.clock_skew
        key = auth or ""
        window = self._windows.get(key)
        if window is None:
            offset = self._offset_rng.random() * length if rate.offset is None else rate.offset
            window = self._windows[key] = _RateWindow(offset % length, vms)
        index = math.floor((server_now - window.offset) / length)
        if index != window.index:
            window.index = index
            window.counts = [0] * vms
        vm = 0
        if vms > 1:
            vm = self._next_vm % vms
            self._next_vm = vm + 1
        per_vm = -(-limit // vms)
        count = window.counts[vm] = window.counts[vm] + 1
        # Each VM only knows its own count: the fraction left there, in 10 % steps, of the limit.
        remaining = max(per_vm - count, 0) * 10 // per_vm * limit // 10
        reset = math.floor(window.offset + (index + 1) * length)
        headers["X-RateLimit-Limit"] = str(limit)
        headers["X-RateLimit-Remaining"] = str(remaining)
        headers["X-RateLimit-Reset"] = str(reset)
        if count <= per_vm:
            return True
        if rate.retry_after == "epoch":
            headers["Retry-After"] = str(reset)
        else:
            headers["Retry-After"] = str(max(int(reset - server_now), 0))
        return False

    def _job_body(self, job: _Job, now: float, *, advance: bool) -> bytes:
        script = job.script
        if script.offsets:
            first = now if job.started is None else job.started
            index = max(bisect.bisect_right(script.offsets, now - first) - 1, 0)
            state = script.states[index]
            changed = first + script.offsets[index]
        else:
            served = job.served
            state = script.states[min(served, len(script.states) - 1)]
            if advance:
                job.served = served + 1
                if job.finished is None and state in TERMINAL_STATES:
                    job.finished = now
            changed = now
        if state != job.body_state:
            job.body = self._render(job, state, changed)
        return job.body

    def _render(self, job: _Job, state: str, changed: float) -> bytes:
        script = job.script
        if job.body_state is None:
            updated = job.created_sec
        else:
            # Second resolution like the controller, but a change must show in updated_at.
            updated = max(int(changed + self._wall_offset + self.clock_skew), job.updated_sec + 1)
        job.body_state = state
        job.updated_sec = updated
        links: dict[str, dict[str, str]] = {"self": {"href": self.job_url(job.guid)}}
        if script.resource is not None:
            if not job.resource_guid:
                job.resource_guid = str(uuid.uuid4())
            links[script.resource] = {
                "href": f"{self._url}{script.resource_path}{job.resource_guid}"
            }
        return _dumps(
            {
                "guid": job.guid,
                "created_at": _iso(job.created_sec),
                "updated_at": _iso(updated),
                "operation": script.operation,
                "state": state,
                "errors": script.failed_errors if state == "FAILED" else [],
                "warnings": script.warnings,
                "links": links,
            }
        )

    async def _serve_fake(
        self, request: web.BaseRequest, fake: FakeResponse
    ) -> web.StreamResponse:
        if fake.delay > 0 and not await self._sleep(fake.delay):
            return _abort(request)
        headers = self._headers(fake.content_type)
        headers.update(fake.headers)
        return web.Response(
            status=fake.status, reason=fake.reason, body=_encode_body(fake.body), headers=headers
        )

    async def _serve_fault(
        self, request: web.BaseRequest, fault: Fault, job: _Job | None
    ) -> web.StreamResponse:
        fake = self._fault_responses.get(fault)
        if fake is not None:
            return await self._serve_fake(request, fake)
        if fault is Fault.RESET:
            return _abort(request)
        if fault is Fault.STALL:
            await self._sleep(self.stall_seconds)
            return _abort(request)
        if fault is Fault.HUGE_BODY:
            return await self._serve_huge(request, job)

        status, body = (
            (404, _JOB_NOT_FOUND)
            if job is None
            else (200, self._job_body(job, time.monotonic(), advance=False))
        )
        response = web.StreamResponse(status=status, headers=self._headers(_JSON))
        try:
            if fault is Fault.DRIP:
                response.content_length = len(body)
                await response.prepare(request)
                for i in range(len(body)):
                    await response.write(body[i : i + 1])
                    if i + 1 < len(body) and not await self._sleep(self.drip_interval):
                        return _abort(request)
                await response.write_eof()
                return response
            # Half the body under a Content-Length for all of it: a cut-off 200.
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        except ConnectionError:
            return response  # the client went away: nothing more to say
        if fault is Fault.SHORT_BODY:
            transport = request.transport
            if transport is not None:
                transport.close()
            return response
        return _abort(request)

    async def _serve_huge(self, request: web.BaseRequest, job: _Job | None) -> web.StreamResponse:
        guid = job.guid if job is not None else "huge"
        head = f'{{"guid":"{guid}","state":"PROCESSING","padding":"'.encode()
        tail = b'"}'
        size = max(self.huge_body_size, len(head) + len(tail))
        response = web.StreamResponse(headers=self._headers(_JSON))
        response.content_length = size
        try:
            await response.prepare(request)
            await response.write(head)
            left = size - len(head) - len(tail)
            while left > 0:
                if self._closing:
                    return _abort(request)
                chunk = _HUGE_CHUNK if left >= len(_HUGE_CHUNK) else _HUGE_CHUNK[:left]
                await response.write(chunk)
                left -= len(chunk)
            await response.write(tail)
            await response.write_eof()
        except ConnectionError:
            pass  # the client read what it wanted and closed
        return response

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, but wake at once (returning False) when the server is closing."""
        if self._closing:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        handle = loop.call_later(seconds, _resolve, future, True)
        self._sleepers.add(future)
        try:
            return await future
        finally:
            handle.cancel()
            self._sleepers.discard(future)

    async def _token_request(self, request: web.BaseRequest) -> web.StreamResponse:
        self.refresh_calls += 1
        if not self.uaa_available:
            return await self._serve_fake(request, self._uaa_down)
        if self.uaa_latency > 0 and not await self._sleep(self.uaa_latency):
            return _abort(request)
        form = await request.post()
        client_id, client_secret = form.get("client_id"), form.get("client_secret", "")
        basic = request.headers.get(hdrs.AUTHORIZATION, "")
        if basic[:6].lower() == "basic ":
            with contextlib.suppress(ValueError):
                decoded = base64.b64decode(basic[6:], validate=True).decode()
                client_id, _, client_secret = decoded.partition(":")
        if (client_id, client_secret) != self.uaa_client:
            return self._uaa_error(401, "unauthorized", "Bad credentials")
        if form.get("grant_type") != "refresh_token":
            return self._uaa_error(400, "unsupported_grant_type", "Only refresh_token is faked")
        if form.get("refresh_token") != self.refresh_token:
            return self._uaa_error(
                401, "invalid_token", "Invalid refresh token (expired): refresh token is unknown"
            )
        self.token = f"access-token-{self.refresh_calls}"
        body = {
            "access_token": self.token,
            "token_type": "bearer",
            "refresh_token": self.refresh_token,
            "expires_in": 600,
            "scope": "cloud_controller.read cloud_controller.write openid",
            "jti": uuid.uuid4().hex,
        }
        return web.Response(body=_dumps(body), headers=self._headers(_JSON))

    def _uaa_error(self, status: int, error: str, description: str) -> web.Response:
        body = _dumps({"error": error, "error_description": description})
        return web.Response(status=status, body=body, headers=self._headers(_JSON))

    def _root(self) -> web.Response:
        url = self.url
        body = {
            "links": {
                "self": {"href": url},
                "cloud_controller_v3": {"href": f"{url}/v3", "meta": {"version": "3.180.0"}},
                "login": {"href": self.uaa_url},
                "uaa": {"href": self.uaa_url},
            }
        }
        return web.Response(body=_dumps(body), headers=self._headers(_JSON))


def _abort(request: web.BaseRequest) -> web.StreamResponse:
    """Reset the connection (RST, not FIN); aiohttp then drops the returned response."""
    transport = request.transport
    if transport is not None:
        _reset(transport)
    return web.Response()


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with a RST: linger 0, then abort."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


async def serve_forever(
    *,
    jobs: int = 1000,
    min_duration: float = 0.2,
    max_duration: float = 2.0,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    seed: int = 0,
    latency: float = 0.0,
    out: TextIO = sys.stdout,
) -> None:
    """Serve `jobs` jobs, each COMPLETE a random time after its first GET, until cancelled.

    Prints the API URL on the first line of `out`, then one guid per line, so a
    benchmark in another process can read them. Requests are not recorded.
    """
    rng = random.Random(seed)
    async with FakeCloudController(
        token=token, seed=seed, latency=latency, record_requests=False, host=host, port=port
    ) as cc:
        guids = [
            cc.add_job(
                timeline=(
                    (0.0, "PROCESSING"),
                    (rng.uniform(min_duration, max_duration), "COMPLETE"),
                )
            )
            for _ in range(jobs)
        ]
        out.write(cc.url + "\n")
        out.write("".join(guid + "\n" for guid in guids))
        out.flush()
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m jobwatch.testing`: run the fake in its own process for benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m jobwatch.testing", description=main.__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--min-duration", type=float, default=0.2)
    parser.add_argument("--max-duration", type=float, default=2.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_forever(
                jobs=args.jobs,
                min_duration=args.min_duration,
                max_duration=args.max_duration,
                host=args.host,
                port=args.port,
                token=args.token,
                seed=args.seed,
                latency=args.latency,
            )
        )


if __name__ == "__main__":
    main()
