"""A fake Cloud Controller and UAA on loopback HTTP, to test code that waits on jobs."""

from __future__ import annotations

import collections
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import hdrs, web

from ._faults import Fault, Outage, _abort, _fault_table, _serve_cut, _serve_huge
from ._limiter import RateLimit, _Limiter
from ._platform import RecordedRequest, _Platform
from ._responses import (
    _INVALID_TOKEN,
    _JOB_NOT_FOUND,
    _JSON,
    _NOT_AUTHENTICATED,
    _RATE_LIMITED,
    _TEXT,
    _UNKNOWN_REQUEST,
    FakeResponse,
    _root_body,
)
from ._scripts import (
    _JOBS_PREFIX,
    _UNSET,
    _accepted_route,
    _build_script,
    _created_sec,
    _finished_at,
    _Job,
    _job_body,
    _Script,
    _Unset,
)
from ._uaa import _grant

if TYPE_CHECKING:
    from .._client import Client

__all__ = ["FakeCloudController"]

_JOBS_PREFIX_LEN = len(_JOBS_PREFIX)


class FakeCloudController(_Platform):
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
        super().__init__(host=host, port=port, clock_skew=clock_skew)
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
        self._limiter = None if rate_limit is None else _Limiter(rate_limit, seed)
        self._fault_table = _fault_table((), faults)
        self._rng = random.Random(seed)
        self._record = record_requests
        self._jobs: dict[str, _Job] = {}
        self._unknown_polls: collections.Counter[str] = collections.Counter()
        self._injected: dict[str, collections.deque[FakeResponse | Fault]] = {}
        self._accepting: dict[tuple[str, str], collections.deque[tuple[str, _Script]]] = {}
        self._wall_offset = time.time() - time.monotonic()

    def __repr__(self) -> str:
        where = self._url or "not started"
        outage = self._outage_at(time.monotonic())
        down = "" if outage is None else f" outage={outage.name}"
        return (
            f"<FakeCloudController {where} jobs={len(self._jobs)} "
            f"requests={self._request_no} in_flight={self._in_flight}{down}>"
        )

    # -- public state --------------------------------------------------------------------

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
        return _finished_at(self._jobs[guid])

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
        script = _build_script(
            states, operation, errors, warnings, timeline, resource, faults, self._fault_table
        )
        return self._add(guid, script, _created_sec(created_at, self.server_time()))

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
        script = _build_script(
            states, operation, errors, warnings, timeline, resource, faults, self._fault_table
        )
        created = _created_sec(created_at, self.server_time())
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
        resource, default_operation = _accepted_route(method, path)
        if operation is None:
            operation = default_operation
        script = _build_script(
            states, operation, errors, warnings, timeline, resource, faults, self._fault_table
        )
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
        return web.Response(
            body=_job_body(job, now, self._url, self._wall_offset, self.clock_skew, advance=True),
            headers=headers,
        )

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

        limiter = self._limiter
        if limiter is not None and not limiter.count(auth, headers, time.time() + self.clock_skew):
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
            return await _serve_huge(self, request, job.guid if job is not None else "huge")
        if job is None:
            return await _serve_cut(self, request, fault, 404, _JOB_NOT_FOUND)
        now = time.monotonic()
        body = _job_body(job, now, self._url, self._wall_offset, self.clock_skew, advance=False)
        return await _serve_cut(self, request, fault, 200, body)

    async def _token_request(self, request: web.BaseRequest) -> web.StreamResponse:
        self.refresh_calls += 1
        if not self.uaa_available:
            return await self._serve_fake(request, self._uaa_down)
        if self.uaa_latency > 0 and not await self._sleep(self.uaa_latency):
            return _abort(request)
        form = await request.post()
        basic = request.headers.get(hdrs.AUTHORIZATION, "")
        minted = f"access-token-{self.refresh_calls}"
        status, body = _grant(form, basic, self.uaa_client, self.refresh_token, minted)
        if status == 200:
            self.token = minted
        return web.Response(status=status, body=body, headers=self._headers(_JSON))

    def _root(self) -> web.Response:
        return web.Response(body=_root_body(self.url), headers=self._headers(_JSON))
