"""Polling and retry policies: frozen values and the pure schedules they describe."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import attrs

from ._models import JobState


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value!r}")


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be in [0, 1), not {value!r}")


@attrs.frozen(kw_only=True)
class PollPolicy:
    """When to poll a job that has not ended yet.

    The first GET goes out at once, but for a job handed over as its 202
    response: then once the first PROCESSING interval has passed since the
    response's `Date`. While a job is PROCESSING (or in a state
    jobwatch does not know) the interval starts at `initial` and grows by
    `multiplier` up to `maximum`. A POLLING job is slow broker work (minutes to
    days), so its intervals start at `polling_initial` and grow by
    `polling_multiplier` up to `polling_maximum`. The schedule restarts
    whenever the state changes. Every interval is spread by +/- `jitter` (a
    fraction) so that thousands of jobs started together do not poll in
    lock-step.

    Defaults: 2.5 s growing x1.1 to 10 s (PROCESSING); 5 s growing x1.5 to
    60 s (POLLING); jitter 10 %. Simulated on quick jobs (log-normal, median
    3 s) they find a job 11 % sooner than the cf CLI's fixed 3 s (median) for
    5 % more GETs; on broker jobs they send 12 % of its GETs. See
    `benchmarks/README.md`.

    With `learn=True` (opt-in) the client learns, per job `operation`, how
    long jobs really run (`updated_at - created_at`, server stamps) and polls
    when an end has become likely enough to be worth a GET, between 0.5 s and
    the state's maximum, jittered the same way; an operation follows the
    static schedule above until about ten of its jobs have ended. See
    `docs/guide/policies.md`.
    """

    initial: float = attrs.field(default=2.5, validator=_positive)
    maximum: float = attrs.field(default=10.0, validator=_positive)
    multiplier: float = attrs.field(default=1.1, validator=_positive)
    polling_initial: float = attrs.field(default=5.0, validator=_positive)
    polling_maximum: float = attrs.field(default=60.0, validator=_positive)
    polling_multiplier: float = attrs.field(default=1.5, validator=_positive)
    jitter: float = attrs.field(default=0.1, validator=_fraction)
    learn: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        if self.multiplier < 1 or self.polling_multiplier < 1:
            raise ValueError("a multiplier must be >= 1: intervals never shrink")
        if self.maximum < self.initial or self.polling_maximum < self.polling_initial:
            raise ValueError("a maximum interval must not be below its initial interval")

    def delays(self, state: str, rng: random.Random | None = None) -> Iterator[float]:
        """Yield the successive intervals (seconds) between polls of a job in `state`.

        A pure function of the policy, the state and `rng` (the source of jitter),
        so the schedule can be simulated exactly.
        """
        return (self.interval(state, step, rng) for step in itertools.count())

    def interval(self, state: str, step: int, rng: random.Random | None = None) -> float:
        """The `step`-th interval (from 0) after entering `state`: what `delays` yields.

        The scheduler keeps only `step` per job, not an iterator: at 100,000
        waiting jobs that is a few hundred bytes each.
        """
        if state == JobState.POLLING:
            base, factor, cap = self.polling_initial, self.polling_multiplier, self.polling_maximum
        else:
            base, factor, cap = self.initial, self.multiplier, self.maximum
        try:
            value = min(base * factor**step, cap)
        except OverflowError:
            value = cap
        if not self.jitter:
            return value
        return value * (rng or _rng).uniform(1 - self.jitter, 1 + self.jitter)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How one poll recovers from transient failures.

    A failed attempt (no answer, a body cut off, 408, 429, a 5xx but 501 and
    505, the router's 404) is retried after an exponential, jittered backoff
    starting at `initial` and capped at `maximum`. A wait goes on until its
    own deadline; a status check (`get_job`, `get_jobs`), and any call on a
    client that has never had an answer, raises the error after `attempts`
    consecutive failures. While the API is down the same backoff spaces the
    client's single probe. A server's `Retry-After` (or `X-RateLimit-Reset`)
    replaces the backoff when it asks for longer. Defaults: 0.5 s doubling to
    10 s, 6 attempts (about 16 s of trouble before a status check gives up).
    """

    initial: float = attrs.field(default=0.5, validator=_positive)
    maximum: float = attrs.field(default=10.0, validator=_positive)
    attempts: int = attrs.field(default=6)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts must be an integer >= 1, not {self.attempts!r}")


_rng = random.Random()
