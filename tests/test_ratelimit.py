"""The rate-limit budget: free while plenty is left, paced after, paused by a 429."""

from __future__ import annotations

import time

from jobwatch._ratelimit import RECHECK, RESET_SLACK, RateBudget


def headers(remaining: int, reset_in: float, limit: int = 100) -> tuple[str, str, str]:
    return str(limit), str(remaining), str(time.time() + reset_in)


def test_no_headers_means_no_pacing() -> None:
    """An API that does not limit sees no change at all."""
    budget = RateBudget()
    budget.sent(0.0)
    budget.observe(None, None, None, now=0.0, others=0)
    assert budget.earliest(0.0) <= 0.0


def test_plenty_left_sends_at_once() -> None:
    """While more than half the window's budget is left, requests go at full speed."""
    budget = RateBudget()
    budget.observe(*headers(90, 60), now=0.0, others=0)
    budget.sent(0.0)
    assert budget.earliest(0.0) <= 0.0


def test_low_budget_spreads_requests_until_the_reset() -> None:
    """With 20 left and 40 s to go, requests are spaced about 2 s apart."""
    budget = RateBudget()
    budget.observe(*headers(20, 40), now=100.0, others=0)
    budget.sent(100.0)
    gap = budget.earliest(100.0) - 100.0
    assert 1.9 < gap < 2.2


def test_requests_in_flight_count_against_the_budget() -> None:
    """Remaining does not include requests still on their way."""
    budget = RateBudget()
    budget.observe(*headers(5, 10), now=0.0, others=5)
    assert budget.earliest(0.0) >= 10.0


def test_exhausted_budget_waits_for_the_reset() -> None:
    """Nothing is sent until the window resets, plus a little slack."""
    budget = RateBudget()
    budget.observe(*headers(0, 3), now=50.0, others=0)
    assert 52.9 + RESET_SLACK < budget.earliest(50.0) < 53.1 + RESET_SLACK


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
    budget.observe(*headers(0, 1), now=0.0, others=0)
    budget.observe(*headers(100, 61), now=0.0, others=0)
    assert budget.earliest(0.0) <= 0.0


def test_garbage_headers_are_ignored() -> None:
    """Unreadable rate-limit headers change nothing."""
    budget = RateBudget()
    budget.observe("x", "y", "z", now=0.0, others=0)
    assert budget.earliest(0.0) <= 0.0
    assert "unknown" in repr(budget)


def test_after_the_reset_only_the_free_share_goes_before_new_headers() -> None:
    """A new window is assumed full, but past its free share we wait for its headers."""
    budget = RateBudget()
    budget.observe(*headers(0, 1, limit=10), now=0.0, others=0)
    now = 1.0 + RESET_SLACK + 0.5
    sent = 0
    while budget.earliest(now) <= now:
        budget.sent(now)
        sent += 1
    assert sent == 5
    assert budget.earliest(now) == now + RECHECK


def test_retry_after_ends_the_known_window_early() -> None:
    """A 429's Retry-After is the authority: the budget is back then, not at the old reset."""
    budget = RateBudget()
    budget.observe(*headers(30, 3600), now=0.0, others=0)
    budget.pause(2.0, now=0.0)
    assert budget.earliest(1.0) == 2.0 + RESET_SLACK
    assert budget.earliest(2.0 + RESET_SLACK) <= 2.0 + RESET_SLACK
