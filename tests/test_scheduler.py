"""The `Scheduler` on a virtual clock, with a scripted transport: no HTTP, no wall time.

Each test joins waiters the way `_waiters.py` does (`Scheduler.join`, `leave`,
`close`), lets the virtual clock run, and checks the loop times at which the
fake transport was asked for each job, and what the waiters were told.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import selectors
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest

from jobwatch import ClientClosed, Job, JobwatchError, PollPolicy, RetryPolicy
from jobwatch._errors import TransportError, api_error
from jobwatch._models import structure_job
from jobwatch._ratelimit import RateBudget
from jobwatch._refs import Accepted
from jobwatch._scheduler import ClientState, Scheduler
from jobwatch._transport import Transport

from .helpers import job_body

INF = float("inf")
API = "https://api.example.org"
PREFIX = f"{API}/v3/jobs/"
CREATED = "2024-05-01T12:00:00Z"

#: No jitter, doubling: every interval a power of two, so every virtual time is exact.
EXACT = PollPolicy(
    initial=1,
    multiplier=2,
    maximum=8,
    polling_initial=3,
    polling_multiplier=1,
    polling_maximum=3,
    jitter=0,
)
RETRY = RetryPolicy(initial=1, maximum=8, attempts=6)


# --- the virtual clock -------------------------------------------------------------------


class VirtualClock:
    """The loop's clock while the `clock` fixture is on: seconds from 0, moved only when idle."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    async def run_until(self, when: float) -> None:
        """Let the loop run (every timer due before `when` fires) until the clock reads `when`."""
        await asyncio.sleep(when - self.now)
        assert self.now == when


class _JumpingSelector:
    """The loop's selector, but a wait for I/O jumps the virtual clock instead of blocking."""

    def __init__(self, real: selectors.BaseSelector, clock: VirtualClock) -> None:
        self._real = real
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # Nothing ready, no timer: on the wall clock the test would hang here.
            raise RuntimeError("virtual clock: the loop is idle with nothing scheduled")
        self._clock.now += timeout
        return self._real.select(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
async def clock() -> AsyncIterator[VirtualClock]:
    """Put the running test loop on a virtual clock that jumps to the next timer when idle.

    An asyncio selector loop does all its timing through two calls in
    `_run_once`: `loop.time()`, to tell which timers are due, and
    `selector.select(timeout)`, to sleep until the next one. This fixture
    replaces both on the loop pytest-asyncio gives the test: `time()` reads
    the virtual clock, and `select(timeout)` adds `timeout` to it and only
    polls the real selector. So whenever nothing is ready, the clock jumps
    straight to the next timer (`call_at`, `asyncio.sleep`, the scheduler's
    wake-ups), and a test runs in no wall time however long its schedule.
    An idle loop with no timer at all raises instead of hanging. Both are put
    back before the loop is closed. (`_selector` is the selector loop's
    private attribute; the loop on Linux and macOS is one.)
    """
    loop = asyncio.get_running_loop()
    assert isinstance(loop, asyncio.SelectorEventLoop)
    virtual = VirtualClock()
    real = loop._selector  # type: ignore[attr-defined]
    loop.time = virtual.time  # type: ignore[method-assign]
    loop._selector = _JumpingSelector(real, virtual)  # type: ignore[attr-defined]
    try:
        yield virtual
    finally:
        loop._selector = real  # type: ignore[attr-defined]
        del loop.time


async def test_the_virtual_clock_jumps_to_each_timer_in_turn(clock: VirtualClock) -> None:
    """The fixture itself: timers fire in order, each at its exact virtual time.

    Three days of schedule: on the wall clock this test would time out.
    """
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, float]] = []

    def fire(name: str) -> None:
        fired.append((name, loop.time()))

    for name, when in (("b", 3600.0), ("a", 0.5), ("c", 86400.0 * 3)):
        loop.call_at(when, fire, name)
    await clock.run_until(86400.0 * 3 + 1)
    assert fired == [("a", 0.5), ("b", 3600.0), ("c", 259200.0)]


# --- a scripted transport ------------------------------------------------------------------

Answer = Job | BaseException
Script = Callable[[int], Answer]


def job(guid: str, state: str, updated_at: str = CREATED) -> Job:
    """The job the transport would hand over for a Cloud Controller body in `state`."""
    return structure_job(
        job_body(
            guid,
            state,
            url=PREFIX + guid,
            created_at=CREATED,
            updated_at=updated_at,
            operation="app.delete",
        )
    )


def answers(*items: Answer) -> Script:
    """Answer the n-th request of a job with `items[n]`; the last one repeats."""
    return lambda n: items[min(n, len(items) - 1)]


class FakeTransport:
    """What the scheduler uses of `Transport`: `fetch_job`, `close`, `budget`, `in_flight`.

    Each guid answers from its script (a job is returned, an exception raised),
    after `latency` seconds of the loop's clock. Every request is recorded with
    the loop time it was made at.
    """

    def __init__(self, scripts: dict[str, Script], *, latency: float = 0.0) -> None:
        self.scripts = scripts
        self.latency = latency
        self.budget = RateBudget()
        self.in_flight = 0
        self.peak = 0
        self.requests: list[tuple[float, str]] = []
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    def times(self, guid: str) -> list[float]:
        """The loop times of the requests for `guid`."""
        return [at for at, asked in self.requests if asked == guid]

    async def fetch_job(self, url: str) -> tuple[Job, str | None]:
        assert url.startswith(PREFIX)
        guid = url[len(PREFIX) :]
        n = len(self.times(guid))
        self.requests.append((asyncio.get_running_loop().time(), guid))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        answer = self.scripts[guid](n)
        if isinstance(answer, BaseException):
            raise answer
        return answer, f"req-{len(self.requests)}"


class Recorder:
    """A `Waiter` that records what it was told, and when (loop time)."""

    def __init__(self, *, until_terminal: bool = True, deadline: float = INF) -> None:
        self.deadline = deadline
        self.until_terminal = until_terminal
        self.updates: list[tuple[float, str]] = []
        self.finished: list[tuple[float, Job | None, JobwatchError | None]] = []
        self.done = asyncio.Event()

    def update(self, job: Job) -> None:
        self.updates.append((asyncio.get_running_loop().time(), job.state))

    def finish(self, job: Job | None, error: JobwatchError | None) -> None:
        self.finished.append((asyncio.get_running_loop().time(), job, error))
        self.done.set()

    @property
    def error(self) -> JobwatchError | None:
        assert len(self.finished) == 1
        return self.finished[0][2]


async def ended(*waiters: Recorder, within: float = 600.0) -> None:
    """Wait until every waiter has finished; TimeoutError after `within` virtual seconds.

    The bound is on the virtual clock: a wait that never ends fails at once, not in an hour.
    """
    await asyncio.wait_for(asyncio.gather(*(w.done.wait() for w in waiters)), within)


def scheduler(
    transport: FakeTransport,
    *,
    poll: PollPolicy = EXACT,
    retry: RetryPolicy = RETRY,
    max_in_flight: int = 4,
    seed: int = 0,
) -> Scheduler:
    return Scheduler(
        cast(Transport, transport),
        PREFIX,
        poll=poll,
        retry=retry,
        max_in_flight=max_in_flight,
        rng=random.Random(seed),
    )


# --- order, times, single flight, the in-flight limit ---------------------------------------


async def test_polls_go_out_in_due_order_at_the_policy_times(clock: VirtualClock) -> None:
    """One request at a time, each job at its own schedule; a tie goes to the earlier push.

    `slow` is POLLING (every 3 s), `quick` PROCESSING (1, 2, 4, 8 s): at t=3 both
    are due and `slow`, scheduled first (at t=0), goes first.
    """
    transport = FakeTransport(
        {"slow": answers(job("slow", "POLLING")), "quick": answers(job("quick", "PROCESSING"))}
    )
    sched = scheduler(transport, max_in_flight=1)
    sched.join("slow", Recorder())
    sched.join("quick", Recorder())
    await clock.run_until(10.0)
    assert transport.requests == [
        (0.0, "slow"),
        (0.0, "quick"),
        (1.0, "quick"),
        (3.0, "slow"),
        (3.0, "quick"),
        (6.0, "slow"),
        (7.0, "quick"),
        (9.0, "slow"),
    ]
    await sched.close()


async def test_the_next_poll_goes_at_the_jittered_interval_from_the_seeded_rng(
    clock: VirtualClock,
) -> None:
    """Each poll of a job goes when `PollPolicy.interval`, fed the scheduler's rng, said."""
    policy = PollPolicy(initial=2, multiplier=1.5, maximum=6, jitter=0.2)
    transport = FakeTransport({"g": answers(job("g", "PROCESSING"))})
    sched = scheduler(transport, poll=policy, seed=7)
    sched.join("g", Recorder())
    await clock.run_until(40.0)
    replay = random.Random(7)
    expected = [0.0]
    while True:
        at = expected[-1] + policy.interval("PROCESSING", len(expected) - 1, replay)
        if at > 40.0:
            break
        expected.append(at)
    assert len(expected) == 9
    assert transport.times("g") == pytest.approx(expected, abs=1e-9)
    await sched.close()


async def test_a_job_handed_over_as_its_202_is_first_polled_one_interval_on(
    clock: VirtualClock,
) -> None:
    """`accepted` (no `Date`): the first GET waits the first PROCESSING interval."""
    transport = FakeTransport({"g": answers(job("g", "PROCESSING"), job("g", "COMPLETE"))})
    sched = scheduler(transport)
    waiter = Recorder()
    await clock.run_until(5.0)
    sched.join("g", waiter, accepted=Accepted(date=None))
    await ended(waiter)
    assert transport.times("g") == [6.0, 7.0]
    await sched.close()


async def test_waiters_on_one_guid_share_each_request(clock: VirtualClock) -> None:
    """Single flight: two waits on a job, one GET per poll; both see every change and the end."""
    guid = "shared"
    transport = FakeTransport(
        {guid: answers(job(guid, "PROCESSING"), job(guid, "PROCESSING"), job(guid, "COMPLETE"))},
        latency=0.25,
    )
    sched = scheduler(transport)
    first, second = Recorder(), Recorder()
    poll = sched.join(guid, first)
    await clock.run_until(0.125)  # the first GET is on its way
    assert sched.join(guid, second) is poll
    await ended(first, second)
    # Sent at 0, answered at 0.25; again 1 s later, then 2 s after that.
    assert transport.times(guid) == [0.0, 1.25, 3.5]
    for waiter in (first, second):
        assert waiter.updates == [(0.25, "PROCESSING"), (3.75, "COMPLETE")]
        assert [(at, j.state if j else None, e) for at, j, e in waiter.finished] == [
            (3.75, "COMPLETE", None)
        ]
    assert sched.waiting == 0
    await sched.close()


async def test_a_status_check_joining_a_request_on_its_way_waits_for_its_answer(
    clock: VirtualClock,
) -> None:
    """`fresh` pulls the next poll forward, but not while a GET is already on its way."""
    transport = FakeTransport({"g": answers(job("g", "PROCESSING"))}, latency=0.5)
    sched = scheduler(transport)
    sched.join("g", Recorder())
    await clock.run_until(0.25)
    check = Recorder(until_terminal=False)
    sched.join("g", check, fresh=True)
    await ended(check)
    assert clock.now == 0.5
    assert transport.times("g") == [0.0]
    await clock.run_until(1.75)
    assert transport.times("g") == [0.0, 1.5]
    await sched.close()


async def test_never_more_than_max_in_flight_requests_at_once(clock: VirtualClock) -> None:
    """`max_in_flight=2`, five jobs of 1 s requests: two at a time, in join order.

    A first job is waited on before, so that the API has answered (past the blind start,
    which holds requests to `max_in_flight` on its own).
    """
    guids = [f"job-{i}" for i in range(5)]
    transport = FakeTransport(
        {guid: answers(job(guid, "COMPLETE")) for guid in ["first", *guids]}, latency=1.0
    )
    sched = scheduler(transport, max_in_flight=2)
    first = Recorder()
    sched.join("first", first)
    await ended(first)
    assert sched.gate.answered
    waiters = [Recorder() for _ in guids]
    for guid, waiter in zip(guids, waiters, strict=True):
        sched.join(guid, waiter)
    await ended(*waiters)
    assert transport.requests == [
        (0.0, "first"),
        (1.0, "job-0"),
        (1.0, "job-1"),
        (2.0, "job-2"),
        (2.0, "job-3"),
        (3.0, "job-4"),
    ]
    assert transport.peak == 2
    assert [w.finished[0][0] for w in waiters] == [2.0, 2.0, 3.0, 3.0, 4.0]
    await sched.close()


async def test_the_in_flight_limit_holds_while_jobs_keep_polling(clock: VirtualClock) -> None:
    """Twenty jobs polling every second for a minute, 3 slots: never a fourth request."""
    guids = [f"job-{i}" for i in range(20)]
    policy = PollPolicy(initial=1, maximum=1, multiplier=1, jitter=0)
    transport = FakeTransport(
        {guid: answers(job(guid, "PROCESSING")) for guid in guids}, latency=0.125
    )
    sched = scheduler(transport, poll=policy, max_in_flight=3)
    for guid in guids:
        sched.join(guid, Recorder())
    await clock.run_until(60.0)
    assert transport.peak == 3
    for guid in guids:  # every job served, none sooner than 1 s after its last answer
        times = transport.times(guid)
        assert len(times) >= 45
        assert all(b - a >= 1.125 for a, b in itertools.pairwise(times))
    await sched.close()


# --- lazy deletion, leaving, closing --------------------------------------------------------


async def test_a_rescheduled_poll_leaves_a_stale_heap_entry_that_is_skipped(
    clock: VirtualClock,
) -> None:
    """A status check pulls the poll due at 4 to 1: the entry at 4 stays, and sends nothing."""
    policy = PollPolicy(initial=4, maximum=4, multiplier=1, jitter=0)
    transport = FakeTransport({"g": answers(job("g", "PROCESSING"))})
    sched = scheduler(transport, poll=policy)
    sched.join("g", Recorder())
    await clock.run_until(1.0)
    check = Recorder(until_terminal=False)
    sched.join("g", check, fresh=True)
    # Pushed again, never searched: the old entry is still in the heap.
    assert sorted(when for when, _, _ in sched._heap) == [1.0, 4.0]
    await clock.run_until(10.0)
    assert transport.times("g") == [0.0, 1.0, 5.0, 9.0]
    assert check.finished[0][0] == 1.0
    await sched.close()


async def test_leaving_the_last_waiter_retires_the_poll(clock: VirtualClock) -> None:
    """Once its last waiter leaves, a job is never asked for again (its heap entry is dead)."""
    transport = FakeTransport({"g": answers(job("g", "PROCESSING"))})
    sched = scheduler(transport)
    first, second = Recorder(), Recorder()
    poll = sched.join("g", first)
    sched.join("g", second)
    await clock.run_until(2.0)
    assert transport.times("g") == [0.0, 1.0]
    sched.leave(poll, first)
    await clock.run_until(3.5)
    assert transport.times("g") == [0.0, 1.0, 3.0]  # one waiter left: polling on
    sched.leave(poll, second)
    assert poll.closed
    assert sched.waiting == 0
    assert poll.last is None  # the job is let go at once
    await clock.run_until(100.0)
    assert transport.times("g") == [0.0, 1.0, 3.0]
    assert first.finished == second.finished == []  # leaving is not finishing
    await sched.close()


async def test_leaving_during_a_request_cancels_it_and_nothing_follows(
    clock: VirtualClock,
) -> None:
    """The last waiter leaves while its GET is on its way: that GET is cancelled, no retry."""
    transport = FakeTransport({"g": answers(job("g", "PROCESSING"))}, latency=1.0)
    sched = scheduler(transport)
    waiter = Recorder()
    poll = sched.join("g", waiter)
    await clock.run_until(0.5)
    assert transport.in_flight == 1
    sched.leave(poll, waiter)
    await clock.run_until(0.75)
    assert transport.in_flight == 0
    await clock.run_until(30.0)
    assert transport.times("g") == [0.0]
    assert waiter.finished == []
    assert sched.retries == 0
    await sched.close()


async def test_close_finishes_every_wait_with_client_closed(clock: VirtualClock) -> None:
    """`close()`: each waiter ends with `ClientClosed` (and its last job); no request follows.

    A request on its way is cancelled, and a join after close is refused.
    """
    transport = FakeTransport(
        {
            "idle": answers(job("idle", "PROCESSING")),
            "busy": answers(job("busy", "PROCESSING")),
        },
        latency=0.5,
    )
    sched = scheduler(transport)
    idle, busy = Recorder(), Recorder()
    sched.join("idle", idle)
    await clock.run_until(1.0)  # idle answered at 0.5, next due at 1.5
    sched.join("busy", busy)  # its GET: 1.0 to 1.5
    await clock.run_until(1.25)
    await sched.close()
    assert clock.now == 1.25
    (_, idle_job, idle_error), (_, busy_job, busy_error) = idle.finished[0], busy.finished[0]
    assert idle_job is not None
    assert idle_job.state == "PROCESSING"
    assert busy_job is None  # no answer yet
    for error in (idle_error, busy_error):
        assert isinstance(error, ClientClosed)
        assert error.during == "the wait"
    assert transport.in_flight == 0
    assert transport.closed  # the scheduler closes the transport last
    assert sched.state is ClientState.CLOSED
    await clock.run_until(10.0)
    assert transport.requests == [(0.0, "idle"), (1.0, "busy")]
    with pytest.raises(ClientClosed):
        sched.join("idle", Recorder())


# --- failures --------------------------------------------------------------------------------


async def test_a_transient_error_is_retried_after_the_retry_backoff(clock: VirtualClock) -> None:
    """Two connection resets, then the answer: each retry waits RetryPolicy's backoff.

    Backoff n: min(initial * 2**(n-1), maximum) plus up to `initial` of jitter (tenacity's
    own, unseeded: hence bounds, not exact times).
    """
    url = PREFIX + "g"
    transport = FakeTransport(
        {
            "g": answers(
                job("g", "PROCESSING"),
                TransportError("the server closed the connection", url=url),
                TransportError("the server closed the connection", url=url),
                job("g", "COMPLETE"),
            )
        }
    )
    sched = scheduler(transport)
    waiter = Recorder()
    sched.join("g", waiter)
    await ended(waiter)
    t0, t1, t2, t3 = transport.times("g")
    assert (t0, t1) == (0.0, 1.0)  # the answer's interval, then the first failure
    assert 1.0 <= t2 - t1 <= 2.0
    assert 2.0 <= t3 - t2 <= 3.0
    assert waiter.finished[0][2] is None
    assert waiter.finished[0][0] == t3
    assert sched.retries == 2
    await sched.close()


async def test_a_status_check_gets_a_transient_error_after_attempts_tries(
    clock: VirtualClock,
) -> None:
    """An API that never answers: a status check ends after `attempts` requests, not sooner."""
    url = PREFIX + "g"
    transport = FakeTransport({"g": lambda n: TransportError("connection refused", url=url)})
    sched = scheduler(transport, retry=RetryPolicy(initial=1, maximum=8, attempts=3))
    check = Recorder(until_terminal=False)
    sched.join("g", check, fresh=True)
    await ended(check)
    times = transport.times("g")
    assert len(times) == 3
    assert 1.0 <= times[1] - times[0] <= 2.0
    assert 2.0 <= times[2] - times[1] <= 3.0
    error = check.error
    assert isinstance(error, TransportError)
    assert error.attempts == 3
    await clock.run_until(times[2] + 60.0)
    assert len(transport.requests) == 3
    await sched.close()


async def test_a_non_transient_error_finishes_the_wait_with_it(clock: VirtualClock) -> None:
    """The controller's own 404: no retry, the waiter gets that very error, the poll ends."""
    not_found = api_error(
        404,
        b'{"errors":[{"code":10010,"title":"CF-ResourceNotFound","detail":"Job not found"}]}',
        request_id="req-1",
        url=PREFIX + "g",
    )
    transport = FakeTransport({"g": answers(job("g", "PROCESSING"), not_found)})
    sched = scheduler(transport)
    waiter = Recorder()
    sched.join("g", waiter)
    await ended(waiter)
    assert waiter.error is not_found
    assert waiter.finished[0][0] == 1.0
    assert waiter.finished[0][1] is not None  # the last job seen rides along
    await clock.run_until(60.0)
    assert transport.times("g") == [0.0, 1.0]
    assert sched.waiting == 0
    assert sched.retries == 0
    await sched.close()


async def test_a_bug_in_the_transport_reaches_the_waiter_as_a_jobwatch_error(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-jobwatch exception is not retried nor swallowed: `JobwatchError`, cause chained."""
    bug = KeyError("links")
    transport = FakeTransport({"g": answers(bug)})
    sched = scheduler(transport)
    waiter = Recorder()
    with caplog.at_level(logging.ERROR, logger="jobwatch"):
        sched.join("g", waiter)
        await ended(waiter)
    error = waiter.error
    assert type(error) is JobwatchError
    assert error.__cause__ is bug
    assert "KeyError" in str(error)
    assert "please report it" in str(error)
    assert [r.levelno for r in caplog.records if r.name == "jobwatch"] == [logging.ERROR]
    await clock.run_until(60.0)
    assert transport.times("g") == [0.0]
    assert sched.waiting == 0
    await sched.close()


async def test_a_cancelled_error_nobody_asked_for_is_a_failed_attempt(
    clock: VirtualClock,
) -> None:
    """A fetch raising CancelledError on its own (nobody cancelled it): retried, not fatal."""
    transport = FakeTransport(
        {"g": answers(job("g", "PROCESSING"), asyncio.CancelledError(), job("g", "COMPLETE"))}
    )
    sched = scheduler(transport)
    waiter = Recorder()
    sched.join("g", waiter)
    await ended(waiter)
    t0, t1, t2 = transport.times("g")
    assert (t0, t1) == (0.0, 1.0)
    assert 1.0 <= t2 - t1 <= 2.0  # the first backoff
    assert waiter.finished[0][2] is None
    assert sched.retries == 1
    await sched.close()


async def test_a_join_after_everything_ended_polls_again_at_once(clock: VirtualClock) -> None:
    """The dispatcher stops when nothing waits; the next join starts one, polling at once."""
    transport = FakeTransport(
        {"a": answers(job("a", "COMPLETE")), "b": answers(job("b", "COMPLETE"))}
    )
    sched = scheduler(transport)
    first = Recorder()
    sched.join("a", first)
    await ended(first)
    await clock.run_until(50.0)
    second = Recorder()
    sched.join("b", second)
    await ended(second)
    assert transport.requests == [(0.0, "a"), (50.0, "b")]
    await sched.close()


async def test_a_closed_gate_sends_one_probe_at_a_time_spaced_by_the_backoff(
    clock: VirtualClock,
) -> None:
    """Outage gate: three jobs fail at t=1 and the gate closes; until the API answers again
    (from t=20) one request goes at a time, the probes spaced by RetryPolicy's backoff
    (>= 1, 2, 4, 4, ... s: initial doubling to maximum); then every job is back on its
    1 s schedule, and the outage is counted once, from its first failure to the answer.
    """
    loop = asyncio.get_running_loop()
    policy = PollPolicy(initial=1, maximum=1, multiplier=1, jitter=0)

    def outage(guid: str) -> Script:
        down = api_error(502, b"502 Bad Gateway", request_id=None, url=PREFIX + guid)
        return lambda n: down if 1.0 <= loop.time() < 20.0 else job(guid, "PROCESSING")

    guids = ["a", "b", "c"]
    transport = FakeTransport({guid: outage(guid) for guid in guids})
    sched = scheduler(transport, poll=policy, retry=RetryPolicy(initial=1, maximum=4))
    for guid in guids:
        sched.join(guid, Recorder())
    await clock.run_until(40.5)
    assert [guid for at, guid in transport.requests if at == 1.0] == guids  # the gate closes
    probes = [at for at, _ in transport.requests if 1.0 < at < 20.0]
    assert 3 <= len(probes) == len(set(probes))  # one at a time
    gaps = [b - a for a, b in itertools.pairwise([1.0, *probes])]
    floors = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0][: len(gaps)]
    assert all(gap >= floor for gap, floor in zip(gaps, floors, strict=True)), gaps
    recovered = min(at for at, _ in transport.requests if at >= 20.0)
    assert recovered <= 25.0  # the probe due after 20: within one backoff (4 + 1 s)
    for guid in guids:
        after = [at for at in transport.times(guid) if at >= recovered]
        assert after[0] <= recovered + 5.0  # its own retry, once the gate is open
        assert [b - a for a, b in itertools.pairwise(after)] == pytest.approx(
            [1.0] * (len(after) - 1)
        )
    assert not sched.gate.closed
    assert sched.gate.report(clock.now)[:2] == (1, recovered - 1.0)
    await sched.close()


@pytest.mark.parametrize("max_in_flight", [1, 2, 3, 32])
async def test_an_api_that_never_answers_fails_a_status_check_after_attempts(
    clock: VirtualClock, max_in_flight: int
) -> None:
    """RetryPolicy: a call on a client that never had an answer raises after `attempts`.

    Whatever `max_in_flight` is. With 1 or 2 the scheduler used to send that many
    requests and then none (the blind start spent, and only the closed gate's probes
    may go, but the gate closes after 3 failures): the check waited for ever.
    """
    url = PREFIX + "g"
    transport = FakeTransport({"g": lambda n: TransportError("connection refused", url=url)})
    sched = scheduler(
        transport, retry=RetryPolicy(initial=1, maximum=8, attempts=6), max_in_flight=max_in_flight
    )
    check = Recorder(until_terminal=False)
    sched.join("g", check, fresh=True)
    try:
        await ended(check, within=3600.0)
    finally:
        await sched.close()
    assert len(transport.times("g")) == 6
    error = check.error
    assert isinstance(error, TransportError)
    assert error.attempts == 6
