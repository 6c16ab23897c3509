"""Policies: validated values, and the pure polling schedule."""

from __future__ import annotations

import itertools
import random

import pytest

from jobwatch import JobState, PollPolicy, RetryPolicy
from jobwatch._gate import RetryRules


def take(policy: PollPolicy, state: str, n: int, seed: int = 1) -> list[float]:
    return list(itertools.islice(policy.delays(state, random.Random(seed)), n))


def test_processing_intervals_grow_to_the_cap() -> None:
    """Without jitter: initial, x multiplier, ..., capped at maximum."""
    policy = PollPolicy(initial=1, maximum=4, multiplier=2, jitter=0)
    assert take(policy, JobState.PROCESSING, 5) == [1, 2, 4, 4, 4]


def test_polling_state_uses_the_slower_schedule() -> None:
    """POLLING is slow broker work: its own initial interval and cap."""
    policy = PollPolicy(polling_initial=5, polling_maximum=20, polling_multiplier=2, jitter=0)
    assert take(policy, "POLLING", 4) == [5, 10, 20, 20]


def test_unknown_states_poll_like_processing() -> None:
    """A state jobwatch does not know gets the PROCESSING schedule."""
    policy = PollPolicy(jitter=0)
    assert take(policy, "CANCELING", 3) == take(policy, "PROCESSING", 3)


def test_jitter_stays_within_its_band_and_is_reproducible() -> None:
    """Jitter spreads each interval by +/- jitter, from the given random source."""
    policy = PollPolicy(initial=10, maximum=10, jitter=0.2)
    delays = take(policy, "PROCESSING", 200)
    assert all(8 <= d <= 12 for d in delays)
    assert len(set(delays)) > 100
    assert delays == take(policy, "PROCESSING", 200)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"maximum": -1},
        {"jitter": 1.0},
        {"multiplier": 0.5},
        {"polling_multiplier": 0.9},
        {"initial": 5, "maximum": 1},
        {"polling_initial": 10, "polling_maximum": 5},
    ],
)
def test_bad_poll_policies_are_refused(kwargs: dict[str, float]) -> None:
    """Nonsense schedules fail when the policy is made, not at 2 am."""
    with pytest.raises(ValueError, match="must"):
        PollPolicy(**kwargs)


@pytest.mark.parametrize("attempts", [0, -1, 1.5])
def test_bad_retry_attempts_are_refused(attempts: float) -> None:
    """At least one attempt, a whole number."""
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=attempts)  # type: ignore[arg-type]


def test_retry_rules_back_off_within_the_cap() -> None:
    """tenacity's strategies: jittered waits growing from `initial` to `maximum`."""
    rules = RetryRules(RetryPolicy(initial=0.5, maximum=4, attempts=4))
    waits = [rules.backoff(attempt) for attempt in range(1, 10)]
    assert 0.5 <= waits[0] <= 1.0
    assert all(0.5 <= w <= 4.5 for w in waits)
    assert min(waits[4:]) >= 4.0  # capped, plus up to `initial` of jitter
    assert rules.attempts == 4


def test_policies_are_frozen() -> None:
    """Policies are values: they cannot be changed under a running client."""
    with pytest.raises(AttributeError):
        PollPolicy().initial = 3  # type: ignore[misc]


def test_policies_take_keywords_only() -> None:
    """`PollPolicy(*, initial, maximum, ...)`: no positional surprises."""
    with pytest.raises(TypeError):
        PollPolicy(1.0, 2.0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(0.5)  # type: ignore[misc]
