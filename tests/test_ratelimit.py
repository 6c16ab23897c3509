"""The rate budget: server clock, Retry-After in all its forms, share, pacing, pauses."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from typing import Any

import pytest

import jobwatch
from jobwatch._ratelimit import (
    MAX_SERVER_WAIT,
    RECHECK,
    RateBudget,
    parse_http_date,
    parse_retry_after,
)
from jobwatch.testing import FakeCloudController, FakeResponse, RateLimit

from .helpers import TOKEN

#: A server clock far from this machine's: every epoch must be read against `Date`.
SERVER = 1_767_225_600.0


def answer(
    remaining: int | None = None,
    reset_in: float = 60.0,
    *,
    limit: int = 100,
    server: float = SERVER,
    retry_after: str | None = None,
) -> dict[str, str]:
    """The headers of a controller response sent at `server` (its clock)."""
    headers = {"Date": email.utils.formatdate(server, usegmt=True)}
    if remaining is not None:
        headers.update(
            {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(int(server + reset_in)),
            }
        )
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return headers


def test_no_headers_means_no_pacing() -> None:
    """An API that does not limit sees no change at all."""
    budget = RateBudget()
    budget.sent(0.0)
    budget.observe(answer(), now=0.0, others=0)
    assert budget.earliest(0.0) <= 0.0
    assert budget.limit is None
    assert budget.remaining is None


def test_plenty_left_sends_at_once() -> None:
    """While more than half the window's usable budget is left, requests go at full speed."""
    budget = RateBudget()
    budget.observe(answer(90), now=0.0, others=0)
    budget.sent(0.0)
    assert budget.earliest(0.0) <= 0.0


def test_reset_is_read_against_the_date_not_this_clock() -> None:
    """The reset epoch is on the server's clock: 40 s after its Date, plus 1 s of truncation."""
    budget = RateBudget()
    budget.observe(answer(0, 40), now=100.0, others=0)
    assert budget.earliest(100.0) == pytest.approx(141.0)
    assert budget.clock_offset == pytest.approx(SERVER - time.time(), abs=2)


@pytest.mark.parametrize("skew", [-120.0, 120.0])
def test_a_skewed_server_clock_changes_nothing(skew: float) -> None:
    """A server 2 minutes behind or ahead: the same reset, because both stamps are its own."""
    server = time.time() + skew
    budget = RateBudget()
    budget.observe(answer(0, 30, server=server), now=10.0, others=0)
    assert budget.earliest(10.0) == pytest.approx(10.0 + 31.0 - (server - int(server)), abs=1.01)


def test_low_budget_spreads_requests_until_the_reset() -> None:
    """With 20 usable left and 40 s to go, requests are spaced about 2 s apart."""
    budget = RateBudget()
    budget.observe(answer(20, 39), now=100.0, others=0)
    budget.sent(100.0)
    gap = budget.earliest(100.0) - 100.0
    assert 1.9 < gap < 2.2


def test_the_spread_ends_at_the_latest_deadline_when_it_comes_first() -> None:
    """An hour-long window with deadlines a minute away: spend the budget within the minute."""
    budget = RateBudget()
    budget.observe(answer(40, 3599, limit=100), now=0.0, others=0)
    budget.sent(0.0)
    assert budget.earliest(0.0, horizon=60.0) == pytest.approx(60.0 / 39, rel=0.01)
    assert budget.earliest(0.0) > 60.0  # without the horizon: spread over the hour


def test_share_leaves_the_rest_of_the_limit_to_others() -> None:
    """With share 0.8, the last 20 % of the window's limit is never spent."""
    budget = RateBudget(share=0.8)
    budget.observe(answer(21, 60), now=0.0, others=0)
    assert budget.spendable(0.0)
    budget.sent(0.0)
    assert not budget.spendable(0.0)
    assert budget.earliest(0.0) == pytest.approx(61.0)


def test_requests_in_flight_count_against_the_budget() -> None:
    """Remaining does not include requests still on their way."""
    budget = RateBudget()
    budget.observe(answer(5, 10), now=0.0, others=5)
    assert budget.earliest(0.0) >= 10.0


def test_the_same_window_keeps_the_closest_safe_reset() -> None:
    """Each reading of one window is safe; a later Date gives a closer one, a late answer none."""
    budget = RateBudget()
    budget.observe(answer(0, 30), now=0.0, others=0)
    budget.observe(answer(0, 29, server=SERVER + 1), now=0.5, others=0)
    assert budget.earliest(0.5) == pytest.approx(30.5)
    budget.observe(answer(50, 90, server=SERVER - 60), now=0.6, others=0)  # an old window
    assert budget.earliest(0.6) == pytest.approx(30.5)


def test_pause_holds_every_request_and_is_counted() -> None:
    """A 429 pauses the whole client, and the pause time is recorded once."""
    budget = RateBudget()
    budget.pause(12.0, now=10.0)
    budget.pause(11.0, now=10.5)
    assert budget.earliest(10.0) == 12.0
    assert budget.paused_seconds == 2.0


def test_new_window_restores_the_budget() -> None:
    """After the reset, the new window's Remaining is believed again."""
    budget = RateBudget()
    budget.observe(answer(0, 1), now=0.0, others=0)
    budget.observe(answer(100, 61), now=0.0, others=0)
    assert budget.earliest(0.0) <= 0.0


def test_garbage_headers_are_ignored() -> None:
    """Unreadable rate-limit headers change nothing."""
    budget = RateBudget()
    garbage = {"X-RateLimit-Limit": "x", "X-RateLimit-Remaining": "y", "X-RateLimit-Reset": "z"}
    budget.observe(garbage, now=0.0, others=0)
    budget.observe({**answer(5), "X-RateLimit-Reset": "inf"}, now=0.0, others=0)
    assert budget.earliest(0.0) <= 0.0
    assert "unknown" in repr(budget)


def test_after_the_reset_only_the_free_share_goes_before_new_headers() -> None:
    """A new window is assumed full, but past its free share we wait for its headers."""
    budget = RateBudget()
    budget.observe(answer(0, 1, limit=10), now=0.0, others=0)
    now = 2.5
    sent = 0
    while budget.earliest(now) <= now:
        budget.sent(now)
        sent += 1
    assert sent == 5
    assert budget.earliest(now) == now + RECHECK


def test_retry_after_ends_the_known_window_early() -> None:
    """A pause ends the window we knew: the budget is back then, not at the old reset."""
    budget = RateBudget()
    budget.observe(answer(30, 3600), now=0.0, others=0)
    budget.pause(2.0, now=0.0)
    assert budget.earliest(1.0) == 2.0
    assert budget.earliest(2.0) <= 2.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Retry-After in delay-seconds; garbage is ignored."""
    assert parse_retry_after(value) == expected


def test_retry_after_http_date_is_read_against_the_server_clock() -> None:
    """An HTTP date is a time of the server's: 90 s after its Date is 90 s."""
    when = email.utils.formatdate(SERVER + 90, usegmt=True)
    assert parse_retry_after(when, server_now=SERVER) == 90.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_legacy_epoch_retry_after_is_a_time_not_a_delay() -> None:
    """Older controllers send the reset epoch itself: it is 30 s away, not 56 years."""
    epoch = str(int(SERVER + 30))
    assert parse_retry_after(epoch, server_now=SERVER) == 31.0
    # Equal to X-RateLimit-Reset is an epoch however small (a test double's clock).
    assert parse_retry_after("500", server_now=480.0, reset="500") == 21.0


def test_hostile_retry_after_is_capped() -> None:
    """`inf`, 10^12 and NaN never pause a client for more than an hour."""
    assert parse_retry_after("inf") == MAX_SERVER_WAIT
    assert parse_retry_after("1e12") == MAX_SERVER_WAIT
    assert parse_retry_after("nan") is None
    assert parse_http_date("not a date") is None


def test_a_429_pauses_until_the_reset_whatever_retry_after_says() -> None:
    """`Retry-After: 0` in a window's last second still waits for the new window."""
    budget = RateBudget()
    headers = answer(0, 0, retry_after="0")
    assert budget.server_wait(429, headers, now=5.0) == 1.0
    assert budget.earliest(5.0) == 6.0
    assert budget.paused_seconds == 1.0


def test_a_429_with_the_legacy_epoch_pauses_for_the_window_only() -> None:
    """The capture of cloud_controller_ng issue 1161: Retry-After equal to the reset epoch."""
    budget = RateBudget()
    headers = answer(0, 12, retry_after=str(int(SERVER + 12)))
    assert budget.server_wait(429, headers, now=0.0) == 13.0


def test_a_503_retry_after_does_not_pause_the_client() -> None:
    """Only a 429 speaks for the whole client; a 503's wait is its job's."""
    budget = RateBudget()
    assert budget.server_wait(503, answer(retry_after="7"), now=0.0) == 7.0
    assert budget.earliest(0.0) <= 0.0
    assert budget.server_wait(500, answer(retry_after="7"), now=0.0) is None


def test_without_a_date_the_learned_offset_is_used() -> None:
    """A response without `Date` is read against the server clock learned from earlier ones."""
    budget = RateBudget()
    budget.observe(answer(), now=0.0, others=0)
    assert budget.server_now({}) == pytest.approx(SERVER, abs=1)
    assert math.isclose(RateBudget().server_now({}), time.time(), abs_tol=1)


# -- over loopback, against the fake controller's real limiter ------------------------------

POLL = jobwatch.PollPolicy(initial=0.1, maximum=0.1, jitter=0.1)
RETRY = jobwatch.RetryPolicy(initial=0.05, maximum=0.5)


async def wait_all(cc: FakeCloudController, guids: list[str], **kwargs: Any) -> tuple[float, Any]:
    """Wait on `guids` with a fresh client; return the seconds it took and its stats."""
    kwargs.setdefault("timeout", 20)
    timeout = kwargs.pop("timeout")
    async with jobwatch.Client(cc.url, token=TOKEN, poll=POLL, retry=RETRY, **kwargs) as cf:
        started = time.monotonic()
        outcomes = await cf.wait_for_jobs(guids, timeout=timeout)
        elapsed = time.monotonic() - started
        stats = cf.stats
    lost = [o for o in outcomes.values() if not o.ok]
    assert not lost, lost[:3]
    return elapsed, stats


@pytest.mark.parametrize("skew", [0.0, -120.0, 120.0])
async def test_steady_state_draws_no_429_whatever_the_server_clock(skew: float) -> None:
    """Truncated resets, a window offset mid-second, a clock 2 minutes off: never a 429."""
    limit = RateLimit(40, 1.0, offset=0.5)
    async with FakeCloudController(token=TOKEN, rate_limit=limit, clock_skew=skew) as cc:
        guids = cc.add_jobs(20, states=("PROCESSING", "PROCESSING", "COMPLETE"))
        elapsed, stats = await wait_all(cc, guids, max_in_flight=8)
    assert cc.rate_limited_count == 0
    assert stats.requests == 60
    # 60 requests at 32 a window (the 0.8 share of 40): three windows at most, and slack.
    assert elapsed < 5.0
    assert stats.rate_limit == 40


async def test_legacy_epoch_retry_after_pauses_for_the_window_not_an_hour() -> None:
    """Controllers before May 2023 send the reset epoch as Retry-After: a second, not an hour."""
    limit = RateLimit(40, 1.0, retry_after="epoch")
    async with FakeCloudController(token=TOKEN, rate_limit=limit) as cc:
        guids = cc.add_jobs(60, states=("PROCESSING", "COMPLETE"))
        # 60 blind requests against a limit of 40: the server answers 429 to some.
        elapsed, stats = await wait_all(cc, guids, max_in_flight=60)
    assert cc.rate_limited_count > 0
    assert stats.rate_limit_paused_seconds < 2.5
    assert elapsed < 10.0


async def test_a_budget_that_outlasts_the_deadline_is_spent_before_it() -> None:
    """An hour's window, deadlines 3 s away: the budget goes to the jobs, none times out."""
    limit = RateLimit(100, 3600.0)
    async with FakeCloudController(token=TOKEN, rate_limit=limit) as cc:
        guids = cc.add_jobs(20, timeline=((0.0, "PROCESSING"), (1.0, "COMPLETE")))
        _, stats = await wait_all(cc, guids, timeout=3.0)
    assert cc.rate_limited_count == 0
    assert stats.requests <= 80  # within the 0.8 share


async def test_the_share_leaves_the_rest_to_the_users_other_work() -> None:
    """`rate_limit_share=0.5` stops at half the window's limit, then waits for the next one."""
    limit = RateLimit(20, 1.0)
    async with FakeCloudController(token=TOKEN, rate_limit=limit) as cc:
        guids = cc.add_jobs(30, states=("COMPLETE",))
        elapsed, stats = await wait_all(cc, guids, max_in_flight=4, rate_limit_share=0.5)
    assert cc.rate_limited_count == 0
    assert stats.requests == 30
    assert elapsed > 1.0  # 10 a window: three windows for 30 requests


async def test_before_the_first_headers_at_most_max_in_flight_go_out() -> None:
    """Nothing is known of the budget until an answer: only `max_in_flight` requests go blind."""
    async with FakeCloudController(token=TOKEN, rate_limit=RateLimit(1000, 60.0)) as cc:
        cc.latency = 0.2
        guids = cc.add_jobs(100, states=("COMPLETE",))
        async with jobwatch.Client(cc.url, token=TOKEN, max_in_flight=10) as cf:
            task = asyncio.ensure_future(cf.wait_for_jobs(guids, timeout=10))
            await asyncio.sleep(0.15)  # no answer has come back yet
            assert len(cc.requests) <= 10
            outcomes = await task
    assert all(outcome.ok for outcome in outcomes.values())
    assert cc.rate_limited_count == 0


def test_a_proxys_bare_429_pauses_but_keeps_the_window() -> None:
    """A 429 without X-RateLimit-Reset (a proxy's) pauses; the limiter's numbers still stand."""
    budget = RateBudget()
    budget.observe(answer(90, 60), now=0.0, others=0)
    assert budget.server_wait(429, answer(retry_after="0"), now=1.0) == 0.0
    assert budget.remaining == 90
    budget.sent(1.0)
    assert budget.earliest(1.0) <= 1.0  # still 89 of 100: full speed


def test_a_window_not_reported_yet_trickles_rather_than_stops() -> None:
    """Past the free share of an assumed window, one request per RECHECK goes, not none."""
    budget = RateBudget()
    budget.observe(answer(0, 1, limit=10), now=0.0, others=0)
    now = 2.5
    while budget.earliest(now) <= now:
        budget.sent(now)
    assert budget.earliest(now) == now + RECHECK
    assert budget.earliest(now + 1.0) <= now + 1.0  # nothing came back: another may go


async def test_bare_429s_never_leave_a_lone_wait_idle_until_its_deadline() -> None:
    """Two headerless 429s in a row, nothing else in flight: the wait goes on within seconds."""
    async with FakeCloudController(token=TOKEN, rate_limit=RateLimit(1000, 60.0)) as cc:
        guid = cc.add_job(timeline=((0.0, "PROCESSING"), (0.3, "COMPLETE")))
        async with jobwatch.Client(cc.url, token=TOKEN, poll=POLL, retry=RETRY) as cf:
            await cf.get_job(guid)  # the limit is known now
            cc.inject(guid, FakeResponse.rate_limited(0), FakeResponse.rate_limited(0))
            started = time.monotonic()
            assert (await cf.wait_for_job(guid, timeout=20)).state == "COMPLETE"
            assert time.monotonic() - started < 5.0
