"""Cancellation and deadlines: prompt, for the cancelled caller only, and nothing left behind."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import warnings
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import attrs
import pytest

import jobwatch
from jobwatch._poller import JobPoll, RetryRules
from jobwatch.testing import FakeCloudController, FakeResponse, Fault

from .helpers import TOKEN, fast_client

#: Cancellation must reach the caller within this, whatever is in flight.
PROMPT = 0.1


def connections_in_use(cf: jobwatch.Client) -> int:
    """Connections the client's pool has handed out (a test-only look at aiohttp's internals)."""
    session = cf._transport._session
    if session is None:
        return 0
    connector: Any = session.connector
    return len(connector._acquired)


async def assert_nothing_left(cf: jobwatch.Client, cc: FakeCloudController) -> None:
    """No poll loop, request, connection in use or server handler outlives a cancelled wait."""
    for _ in range(100):  # the server notices a closed connection a moment later
        if cc.in_flight == 0 and connections_in_use(cf) == 0:
            break
        await asyncio.sleep(0.005)
    assert cf.stats.waiting == 0
    assert cf.stats.in_flight == 0
    assert connections_in_use(cf) == 0
    assert cc.in_flight == 0
    requests = len(cc.requests)
    await asyncio.sleep(0.05)
    assert len(cc.requests) == requests, "polling went on after the cancellation"


async def close_cleanly(cf: jobwatch.Client) -> None:
    """Close the client; its session must be closed and nothing may warn about it."""
    session = cf._transport._session
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await cf.aclose()
        gc.collect()
    assert session is None or session.closed
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught


async def cancel_promptly(task: asyncio.Task[Any]) -> None:
    """Cancel `task`: it must end with CancelledError within PROMPT seconds."""
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < PROMPT
    assert task.cancelled()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll a condition every millisecond; fail the test if it never holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def processing_body(cc: FakeCloudController, guid: str) -> dict[str, Any]:
    return {
        "guid": guid,
        "state": "PROCESSING",
        "operation": "app.delete",
        "created_at": "2016-10-19T20:25:04Z",
        "updated_at": "2016-10-19T20:25:04Z",
        "errors": [],
        "warnings": [],
        "links": {"self": {"href": cc.job_url(guid)}},
    }


# -- cancelling the caller ----------------------------------------------------------------


async def _watch(cf: jobwatch.Client, guid: str) -> None:
    async with aclosing(cf.watch_job(guid, timeout=10)) as jobs:
        async for _ in jobs:
            pass


async def _as_completed(cf: jobwatch.Client, guid: str) -> None:
    async with aclosing(cf.as_completed([guid], timeout=10)) as outcomes:
        async for _ in outcomes:
            pass


CALLS: dict[str, Callable[[jobwatch.Client, str], Awaitable[Any]]] = {
    "get_job": lambda cf, guid: cf.get_job(guid, timeout=10),
    "wait_for_job": lambda cf, guid: cf.wait_for_job(guid, timeout=10),
    "wait_for_job_on_update": lambda cf, guid: cf.wait_for_job(
        guid, timeout=10, on_update=lambda job: None
    ),
    "watch_job": _watch,
    "get_jobs": lambda cf, guid: cf.get_jobs([guid], timeout=10),
    "wait_for_jobs": lambda cf, guid: cf.wait_for_jobs([guid], timeout=10),
    "as_completed": _as_completed,
}


@pytest.mark.parametrize("call", list(CALLS))
async def test_cancel_during_a_request_is_prompt_and_leaves_nothing(
    cc: FakeCloudController, call: str
) -> None:
    """A request the server sits on is abandoned at once: no loop, task or connection stays."""
    guid = cc.add_job(states=("PROCESSING",))
    cc.inject(guid, FakeResponse(body=processing_body(cc, guid), delay=10))
    cf = fast_client(cc)
    task = asyncio.ensure_future(CALLS[call](cf, guid))
    await until(lambda: cc.in_flight == 1 and connections_in_use(cf) == 1)
    await cancel_promptly(task)
    await assert_nothing_left(cf, cc)
    await close_cleanly(cf)


async def test_cancel_during_a_backoff_sleep(cc: FakeCloudController) -> None:
    """A wait sleeping before its retry ends at once, and the retry never goes out."""
    guid = cc.add_job(states=("COMPLETE",))
    cc.inject(guid, FakeResponse.error(500))
    cf = fast_client(cc, retry=jobwatch.RetryPolicy(initial=5.0, maximum=5.0))
    task = asyncio.ensure_future(cf.wait_for_job(guid, timeout=30))
    await until(lambda: cf.stats.retries == 1 and cf.stats.in_flight == 0)
    assert cc.polls(guid) == 1
    await cancel_promptly(task)
    await assert_nothing_left(cf, cc)
    assert cc.polls(guid) == 1
    await close_cleanly(cf)


class SlowRefresh:
    """A token provider whose refresh waits until the test lets it go."""

    def __init__(self, cc: FakeCloudController) -> None:
        self.cc = cc
        self.token = TOKEN
        self.refreshing = asyncio.Event()
        self.go = asyncio.Event()
        self.refreshes = 0
        self.completed = 0

    def __call__(self) -> str:
        return f"bearer {self.token}"

    async def refresh(self) -> None:
        self.refreshes += 1
        self.refreshing.set()
        await self.go.wait()
        self.token = self.cc.token = f"fresh-{self.refreshes}"
        self.completed += 1


async def test_cancel_during_a_token_refresh() -> None:
    """Cancelling mid-refresh ends the wait, not the refresh: its token serves the next call."""
    expiring = FakeCloudController(token=TOKEN, token_ttl_requests=1)
    async with expiring:
        guid = expiring.add_job(states=("PROCESSING", "COMPLETE"))
        provider = SlowRefresh(expiring)
        cf = fast_client(expiring, token=provider)
        task = asyncio.ensure_future(cf.wait_for_job(guid, timeout=10))
        await asyncio.wait_for(provider.refreshing.wait(), 2)
        assert expiring.polls(guid) == 2  # PROCESSING, then the 401 that asked for a refresh
        await cancel_promptly(task)
        await assert_nothing_left(cf, expiring)
        assert provider.completed == 0

        provider.go.set()  # the next refresh answers at once
        job = await asyncio.wait_for(cf.wait_for_job(guid, timeout=10), 2)
        assert job.state == "COMPLETE"
        assert (provider.refreshes, provider.completed) == (1, 1)
        await close_cleanly(cf)


async def test_cancel_one_single_flight_waiter_keeps_the_others(cc: FakeCloudController) -> None:
    """The other waiters on the guid get their result from the same, single poll loop."""
    guid = cc.add_job(timeline=((0.0, "PROCESSING"), (0.25, "COMPLETE")))
    every = jobwatch.PollPolicy(initial=0.05, maximum=0.05, jitter=0)
    cf = fast_client(cc, poll=every)
    waiters = [asyncio.ensure_future(cf.wait_for_job(guid, timeout=5)) for _ in range(3)]
    await until(lambda: cc.polls(guid) >= 2)
    await cancel_promptly(waiters[1])
    assert cf.stats.waiting == 1
    first, third = await asyncio.gather(waiters[0], waiters[2])
    assert first.state == "COMPLETE"
    assert first is third  # one answer, shared
    times = [r.time for r in cc.requests if r.guid == guid]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert 5 <= len(times) <= 7
    assert min(gaps) >= 0.045, f"two poll loops: {gaps}"
    assert cc.peak_in_flight == 1
    await assert_nothing_left(cf, cc)
    await close_cleanly(cf)


async def test_cancel_a_bulk_wait_midway(cc: FakeCloudController) -> None:
    """A bulk wait cancelled midway stops all its loops; a single wait beside it goes on."""
    quick = cc.add_jobs(20, states=("PROCESSING", "COMPLETE"))
    slow = cc.add_jobs(20, states=("PROCESSING",))
    shared = cc.add_job(timeline=((0.0, "PROCESSING"), (0.3, "COMPLETE")))
    cf = fast_client(cc)
    bulk = asyncio.ensure_future(cf.wait_for_jobs([*quick, *slow, shared], timeout=10))
    single = asyncio.ensure_future(cf.wait_for_job(shared, timeout=10))
    await until(lambda: all(cc.polls(guid) >= 2 for guid in quick))
    await asyncio.sleep(0.02)
    assert not single.done()
    await cancel_promptly(bulk)
    assert cf.stats.waiting == 1  # the shared guid's loop lives on for the single wait
    assert (await asyncio.wait_for(single, 2)).state == "COMPLETE"
    await assert_nothing_left(cf, cc)
    await close_cleanly(cf)


async def test_leaving_as_completed_early_stops_the_rest(cc: FakeCloudController) -> None:
    """Closing the as_completed iterator after a few outcomes ends every other loop."""
    guids = cc.add_jobs(5, states=("COMPLETE",)) + cc.add_jobs(5, states=("PROCESSING",))
    cf = fast_client(cc)
    seen = []
    async with aclosing(cf.as_completed(guids, timeout=10)) as outcomes:
        async for outcome in outcomes:
            seen.append(outcome.guid)
            if len(seen) == 5:
                break
    assert set(seen) == set(guids[:5])
    await assert_nothing_left(cf, cc)
    await close_cleanly(cf)


async def test_closing_the_client_ends_waits_with_client_closed(cc: FakeCloudController) -> None:
    """aclose() during waits ends them with ClientClosed, never a hang or a stray task."""
    guid = cc.add_job(states=("PROCESSING",))
    cf = fast_client(cc)
    task = asyncio.ensure_future(cf.wait_for_job(guid, timeout=10))
    await until(lambda: cc.polls(guid) >= 1)
    await close_cleanly(cf)
    with pytest.raises(jobwatch.ClientClosed):
        await asyncio.wait_for(task, PROMPT)


# -- deadlines under every fault ----------------------------------------------------------

DEADLINE = 0.5
#: The deadline is kept to within this, whatever the server does.
SLACK = 0.2
#: Status checks give up after this many attempts; waits ride on (the client has had an answer).
BOUNDED = jobwatch.RetryPolicy(initial=0.01, maximum=0.05, attempts=3)


@attrs.frozen
class Endless:
    """A fault served without end, and what each call gets under a deadline."""

    item: FakeResponse | Fault
    #: What a status check raises after its attempts, or every call at once.
    error: type[jobwatch.JobwatchError]
    #: True: raised at once by every call (permanent, or a server wait past the deadline).
    at_once: bool = False
    #: One attempt outlasts the deadline: a status check ends in JobTimeout too.
    slow: bool = False


def _endless(*rows: tuple[str, Endless]) -> dict[str, Endless]:
    return dict(rows)


#: Every fault of the fake and every canned answer, each served without end.
FAULTS: dict[str, Endless] = _endless(
    ("Fault.RESET", Endless(Fault.RESET, jobwatch.TransportError)),
    ("Fault.RESET_MID_BODY", Endless(Fault.RESET_MID_BODY, jobwatch.TransportError)),
    ("Fault.SHORT_BODY", Endless(Fault.SHORT_BODY, jobwatch.TransportError)),
    ("Fault.STALL", Endless(Fault.STALL, jobwatch.TransportError, slow=True)),
    ("Fault.DRIP", Endless(Fault.DRIP, jobwatch.TransportError, slow=True)),
    ("Fault.SERVER_ERROR", Endless(Fault.SERVER_ERROR, jobwatch.InternalServerError)),
    ("Fault.ROUTER_502", Endless(Fault.ROUTER_502, jobwatch.BadGateway)),
    ("Fault.ROUTER_404", Endless(Fault.ROUTER_404, jobwatch.ApiError)),
    ("Fault.ROUTER_503", Endless(Fault.ROUTER_503, jobwatch.ServiceUnavailable)),
    ("Fault.MAINTENANCE_503", Endless(Fault.MAINTENANCE_503, jobwatch.ServiceUnavailable)),
    # Retry-After: 1, past the deadline.
    ("Fault.RATE_LIMITED_429", Endless(Fault.RATE_LIMITED_429, jobwatch.RateLimited, True)),
    ("Fault.INVALID_JSON", Endless(Fault.INVALID_JSON, jobwatch.MalformedResponse, True)),
    ("Fault.WRONG_SHAPE", Endless(Fault.WRONG_SHAPE, jobwatch.MalformedResponse, True)),
    ("Fault.HUGE_BODY", Endless(Fault.HUGE_BODY, jobwatch.MalformedResponse, True)),
    ("router_404()", Endless(FakeResponse.router_404(), jobwatch.ApiError)),
    ("router_502()", Endless(FakeResponse.router_502(), jobwatch.BadGateway)),
    ("router_503()", Endless(FakeResponse.router_503(), jobwatch.ServiceUnavailable)),
    (
        "router_503_connection_limit()",
        Endless(FakeResponse.router_503_connection_limit(), jobwatch.ServiceUnavailable),
    ),
    ("bare_502()", Endless(FakeResponse.bare_502(), jobwatch.BadGateway)),
    ("maintenance_503()", Endless(FakeResponse.maintenance_503(), jobwatch.ServiceUnavailable)),
    (
        "db_unavailable_503()",
        Endless(FakeResponse.db_unavailable_503(), jobwatch.ServiceUnavailable),
    ),
    ("uaa_unavailable_502()", Endless(FakeResponse.uaa_unavailable_502(), jobwatch.BadGateway)),
    *(
        (
            f"gateway_error({status})",
            Endless(FakeResponse.gateway_error(status), jobwatch.ApiError),
        )
        for status in (408, 504, 520, 521, 522, 523, 524)
    ),
    ("rate_limited()", Endless(FakeResponse.rate_limited(), jobwatch.RateLimited, True)),
    ("rate_limited(0)", Endless(FakeResponse.rate_limited(0), jobwatch.RateLimited)),
    # An epoch in 2100: capped at an hour, past the deadline.
    (
        "rate_limited_legacy(2100)",
        Endless(FakeResponse.rate_limited_legacy(4_102_444_800), jobwatch.RateLimited, True),
    ),
    *(
        (f"error({status})", Endless(FakeResponse.error(status), error, True))
        for status, error in (
            (400, jobwatch.BadRequest),
            (401, jobwatch.Unauthorized),
            (403, jobwatch.Forbidden),
            (404, jobwatch.NotFound),
            (409, jobwatch.Conflict),
            (422, jobwatch.UnprocessableEntity),
            (501, jobwatch.ApiError),
            (505, jobwatch.ApiError),
        )
    ),
    ("error(500)", Endless(FakeResponse.error(500), jobwatch.InternalServerError)),
    ("error(503)", Endless(FakeResponse.error(503), jobwatch.ServiceUnavailable)),
    ("error(504)", Endless(FakeResponse.error(504), jobwatch.ApiError)),
)


async def _deadline_case(
    cc: FakeCloudController, label: str, method: str
) -> tuple[str, BaseException | None, Any, float]:
    row = FAULTS[label]
    guid = cc.add_job(states=("PROCESSING",))
    # A wait has seen its job once (the client has had an answer); a status check has not.
    first = [] if method == "get_job" else [FakeResponse(body=processing_body(cc, guid))]
    cc.inject(guid, *first, *[row.item] * 400)
    # The default request_timeout (30 s): only the deadline can cut a stalled request short.
    async with fast_client(cc, retry=BOUNDED) as cf:
        started = time.monotonic()
        result: Any = None
        error: BaseException | None = None
        try:
            if method == "get_job":
                result = await cf.get_job(guid, timeout=DEADLINE)
            elif method == "wait_for_job":
                result = await cf.wait_for_job(guid, timeout=DEADLINE)
            else:
                outcome = (await cf.wait_for_jobs([guid], timeout=DEADLINE))[guid]
                result, error = outcome.job, outcome.error
        except jobwatch.JobwatchError as exc:
            error = exc
        return label, error, result, time.monotonic() - started


def _timed_out(error: BaseException | None, elapsed: float) -> bool:
    return isinstance(error, jobwatch.JobTimeout) and DEADLINE <= elapsed <= DEADLINE + SLACK


@pytest.mark.parametrize("method", ["get_job", "wait_for_job", "wait_for_jobs"])
async def test_deadline_holds_under_every_fault(cc: FakeCloudController, method: str) -> None:
    """Any fault without end: a wait ends in JobTimeout in [0.5, 0.7] s with the last job.

    A status check raises its error after its attempts, or JobTimeout when one
    attempt outlasts the deadline; a permanent error (or a server wait past the
    deadline) is raised at once by every call.
    """
    cc.stall_seconds = 30.0
    cases = await asyncio.gather(*(_deadline_case(cc, label, method) for label in FAULTS))
    problems = []
    for label, error, result, elapsed in cases:
        row = FAULTS[label]
        if row.at_once:
            ok = type(error) is row.error and elapsed < SLACK
        elif method == "get_job" and row.slow:
            ok = _timed_out(error, elapsed) and error.job is None  # type: ignore[union-attr]
        elif method == "get_job":
            ok = type(error) is row.error and elapsed < DEADLINE
        else:
            last = error.job if isinstance(error, jobwatch.JobTimeout) else result
            ok = _timed_out(error, elapsed) and last is not None and last.state == "PROCESSING"
        if not ok:
            problems.append(f"{label}: {error!r} after {elapsed:.3f} s")
    assert not problems
    assert len(cases) == len(FAULTS) >= 40
    assert {row.item for row in FAULTS.values()} >= set(Fault)


class _Waiter:
    """A bare waiter for the poll state machine."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.until_terminal = True
        self.ended: list[BaseException | None] = []

    def update(self, job: jobwatch.Job) -> None:
        pass

    def finish(self, job: jobwatch.Job | None, error: BaseException | None) -> None:
        self.ended.append(error)


def test_a_server_wait_at_a_passed_deadline_leaves_it_to_the_timeout() -> None:
    """A 429 answered just after a deadline (Retry-After: 0) is a JobTimeout, not RateLimited."""
    poll = JobPoll("g")
    gone, ahead, far = _Waiter(9.999), _Waiter(10.5), _Waiter(20.0)
    for waiter in (gone, ahead, far):
        poll.add(waiter)
    rules = RetryRules(jobwatch.RetryPolicy(initial=0.01, maximum=0.01, attempts=10))
    limited = jobwatch.RateLimited(429, retry_after=0.0)
    assert poll.failed(limited, 10.0, rules) is not None
    assert gone.ended == ahead.ended == far.ended == []  # the timer of `gone` says JobTimeout
    limited = jobwatch.RateLimited(429, retry_after=1.0)
    assert poll.failed(limited, 10.0, rules) is not None
    assert (gone.ended, ahead.ended, far.ended) == ([], [limited], [])
