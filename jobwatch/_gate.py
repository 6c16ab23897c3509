"""The outage gate: while the API is down, one probe at a time instead of a retry per job.

A pure state machine, fed by the scheduler with the outcome of every request
and the loop clock. Open, it lets every poll through. When consecutive
requests fail in a way that says the API itself is gone (no answer, the
router's or nginx's error pages, 5xx from every job), it closes: polls stay
in the heap, and one probe (the poll due first) goes out at a time, spaced by
`RetryPolicy`'s backoff. The first real answer reopens it, and the polls that
came due meanwhile go in due order, under `max_in_flight` and the rate budget.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import tenacity

from . import _testing_mode
from ._policy import RetryPolicy

if TYPE_CHECKING:
    from ._hooks import Emitter

log = logging.getLogger("jobwatch")

#: Consecutive failures, from at least two jobs, that show the API is down. One
#: job that keeps failing among healthy ones never closes the gate: the healthy
#: answers in between reset the count.
CLOSE_AFTER = 3


class RetryRules:
    """A `RetryPolicy` turned into tenacity strategies, built once per client.

    tenacity decides how long to back off; the scheduler does the waiting, so
    no retry object or coroutine is kept per job, and the success path never
    touches tenacity.
    """

    __slots__ = ("_wait", "attempts")

    def __init__(self, policy: RetryPolicy) -> None:
        # Exponential from `initial`, capped at `maximum`, plus up to `initial` of
        # random jitter: strategies every tenacity 9 has.
        exponential = tenacity.wait_exponential(multiplier=policy.initial, max=policy.maximum)
        self._wait = exponential + tenacity.wait_random(0, policy.initial)
        self.attempts = policy.attempts

    def backoff(self, attempt: int) -> float:
        """Seconds before the attempt that follows failed attempt number `attempt` (from 1).

        Zero in test mode (`set_testing`): this spaces both the retries and the probes.
        """
        if _testing_mode.enabled:
            return 0.0
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._wait(state))


class OutageGate:
    """Whether the API answers, and when the next probe may go while it does not."""

    __slots__ = (
        "_first_failure",
        "_first_failure_wall",
        "_last_guid",
        "_mixed",
        "_outage_seconds",
        "_outages",
        "_rules",
        "answered",
        "closed",
        "failures",
        "hooks",
        "next_probe",
        "rounds",
    )

    def __init__(self, rules: RetryRules) -> None:
        self._rules = rules
        #: True once the API has answered anything (a job, or the controller's own error).
        self.answered = False
        self.closed = False
        #: Consecutive failed requests, with no answer in between.
        self.failures = 0
        #: Attempts made while closed: the failures that closed it count as one, then each probe.
        self.rounds = 0
        self.next_probe = -math.inf
        self._outages = 0
        self._outage_seconds = 0.0
        self._first_failure = 0.0
        self._first_failure_wall = 0.0
        self._last_guid: str | None = None
        self._mixed = False
        #: The client's instrumentation hooks (None: none set), told when an outage is
        #: reported and when it ends.
        self.hooks: Emitter | None = None

    def __repr__(self) -> str:
        state = f"closed rounds={self.rounds}" if self.closed else "open"
        return f"<OutageGate {state} failures={self.failures} outages={self._outages}>"

    def report(self, now: float) -> tuple[int, float, float | None]:
        """Outages so far, their seconds, and the wall-clock start of the current one.

        Only closures that outlived a probe count: a few quick failures (random
        502s while the API is up) that the answers of requests still in flight
        cure within milliseconds hold the polls as briefly, and are not an
        outage a person should be told about.
        """
        if not self._reported:
            return self._outages, self._outage_seconds, None
        ongoing = now - self._first_failure
        return self._outages + 1, self._outage_seconds + ongoing, self._first_failure_wall

    @property
    def _reported(self) -> bool:
        return self.closed and self.rounds >= 2

    @property
    def exhausted(self) -> bool:
        """True when the closed gate has had `RetryPolicy.attempts` failed rounds."""
        return self.closed and self.rounds >= self._rules.attempts

    def answer(self, now: float) -> bool:
        """A real answer came back; True when it ends an outage."""
        self.answered = True
        self.failures = 0
        self._last_guid = None
        self._mixed = False
        if not self.closed:
            return False
        seconds = now - self._first_failure
        reported = self._reported
        if reported:
            self._outages += 1
            self._outage_seconds += seconds
            log.warning("the API answers again, after %.1f s unavailable", seconds)
        self.closed = False
        self.rounds = 0
        self.next_probe = -math.inf
        if reported and self.hooks:
            self.hooks.outage_ended(self._first_failure_wall, seconds)
        return True

    def failure(
        self, guid: str, error: BaseException, now: float, *, probe: bool, alone: bool
    ) -> bool:
        """A request failed transiently; True when this failure closes the gate.

        Args:
            guid: the job of the failed request.
            error: what it failed with (for the log).
            now: the loop clock.
            probe: the request was the gate's probe.
            alone: the client waits on this one job only.
        """
        if self.failures == 0:
            self._first_failure = now
            self._first_failure_wall = time.time()
        self.failures += 1
        if self._last_guid is not None and guid != self._last_guid:
            self._mixed = True
        self._last_guid = guid
        if self.closed:
            if probe:
                self.rounds += 1
                self.next_probe = now + self._rules.backoff(self.rounds)
                if self.rounds == 2 and self.hooks:  # now `report()` counts it: an outage
                    self.hooks.outage_began(
                        self._first_failure_wall, now - self._first_failure, error
                    )
            return False
        if self.failures < CLOSE_AFTER or not (self._mixed or alone):
            return False
        self.closed = True
        self.rounds = 1
        self.next_probe = now + self._rules.backoff(1)
        log.info("the API looks unavailable (%s): polls held, one probe at a time", error)
        return True
