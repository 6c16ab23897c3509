"""The server under the fake controller, and the platform in front of it.

`_Platform` listens on loopback (and stops listening through an
`Outage.REFUSED` window), keeps the outage windows that answer for the API
while part of the platform is down, stamps every answer with the server's
`Date` and a request id, serves canned answers, and sleeps in a way that
`aclose()` cuts short. `FakeCloudController` is one: it adds the controller.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import email.utils
import math
import time
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import attrs
from aiohttp import hdrs, web

from ._faults import _FAULT_RESPONSES, Fault, Outage, _abort, _reset
from ._responses import FakeResponse, _encode_body


@attrs.frozen
class RecordedRequest:
    """What the fake saw of one request, so tests can assert on traffic."""

    method: str
    path: str
    guid: str | None
    authorization: str | None
    host: str | None
    time: float


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class _Platform:
    """Listening, outage windows, the server's clock and headers; `_handle` routes requests."""

    def __init__(self, *, host: str, port: int, clock_skew: float) -> None:
        self.clock_skew = clock_skew
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
        self._host = host
        self._port = port
        self._sleepers: set[asyncio.Future[bool]] = set()
        self._closing = False
        self._runner: web.ServerRunner | None = None
        self._url = ""
        self._in_flight = 0
        self._peak_in_flight = 0
        self._request_no = 0
        self._rid_prefix = str(uuid.uuid4())[:24]
        self._rid_suffix = str(uuid.uuid4())

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
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

    @property
    def url(self) -> str:
        """The API base URL, `http://127.0.0.1:PORT`."""
        if not self._url:
            raise RuntimeError("FakeCloudController is not started")
        return self._url

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most requests ever handled at once."""
        return self._peak_in_flight

    def server_time(self) -> float:
        """The server's clock: `time.time() + clock_skew`, epoch seconds."""
        return time.time() + self.clock_skew

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

    # -- answering -----------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one request: the controller's routing."""
        raise NotImplementedError

    def _headers(self, content_type: str) -> dict[str, str]:
        """The headers every answer carries: its type, the server's Date, a request id."""
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

    async def _serve_fake(
        self, request: web.BaseRequest, fake: FakeResponse
    ) -> web.StreamResponse:
        """Serve one canned answer, after its `delay`."""
        if fake.delay > 0 and not await self._sleep(fake.delay):
            return _abort(request)
        headers = self._headers(fake.content_type)
        headers.update(fake.headers)
        return web.Response(
            status=fake.status, reason=fake.reason, body=_encode_body(fake.body), headers=headers
        )

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
