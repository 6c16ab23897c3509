"""The state machine of one job's poll loop: what to do after each answer.

It knows nothing of HTTP or of the event loop: the scheduler (`_bulk.py`) feeds
it answers and the clock, and it says when to poll next, or that the loop is
over. One `JobPoll` serves every waiter on the same guid (single flight).
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Protocol

import tenacity

from ._errors import TRANSIENT_STATUSES, ApiError, TransportError
from ._models import Job
from ._policy import PollPolicy, RetryPolicy

log = logging.getLogger("jobwatch")


class Waiter(Protocol):
    """Someone waiting on a job: a single wait, a watch, or one member of a bulk call."""

    @property
    def deadline(self) -> float:
        """Loop time after which this waiter gives up (`inf` for never)."""

    @property
    def until_terminal(self) -> bool:
        """False for a status check, which is satisfied by the first answer."""

    def update(self, job: Job) -> None:
        """Called for each observed change of the job (state or `updated_at`)."""

    def finish(self, job: Job | None, error: BaseException | None) -> None:
        """Called once, when this waiter's wait is over."""


def is_transient(exc: BaseException) -> bool:
    """True for failures another attempt may cure (DESIGN.md section 3)."""
    if isinstance(exc, TransportError):
        return exc.transient
    return isinstance(exc, ApiError) and exc.status in TRANSIENT_STATUSES


class RetryRules:
    """A `RetryPolicy` turned into tenacity strategies, built once per client.

    tenacity decides how long to back off and when to stop; the scheduler does
    the waiting, so no retry object or coroutine is kept per job, and the
    success path never touches tenacity.
    """

    __slots__ = ("_stop", "_wait", "attempts")

    def __init__(self, policy: RetryPolicy) -> None:
        self._wait = policy.backoff()
        self._stop = policy.stop()
        self.attempts = policy.attempts

    def next_wait(self, state: tenacity.RetryCallState) -> float | None:
        """Seconds before the next attempt, or None when it is time to give up."""
        if self._stop(state):
            return None
        return float(self._wait(state))


class JobPoll:
    """One guid's poll loop: the last job seen, its schedule, and who waits on it."""

    __slots__ = ("_retry", "_step", "closed", "guid", "last", "seq", "task", "waiters")

    def __init__(self, guid: str) -> None:
        self.guid = guid
        self.last: Job | None = None
        self.waiters: list[Waiter] = []
        self.seq = -1
        self.task: object | None = None
        self.closed = False
        self._step = 0  # how far into the current state's schedule
        self._retry: tenacity.RetryCallState | None = None

    def __repr__(self) -> str:
        state = self.last.state if self.last else "unseen"
        return f"<JobPoll {self.guid} {state} waiters={len(self.waiters)}>"

    @property
    def failures(self) -> int:
        """Consecutive failed attempts of the current poll."""
        return self._retry.attempt_number if self._retry else 0

    def add(self, waiter: Waiter) -> None:
        """Join a waiter; it sees the last known job at once."""
        self.waiters.append(waiter)
        if self.last is not None:
            waiter.update(self.last)

    def remove(self, waiter: Waiter) -> bool:
        """Drop a waiter; True when nobody is left (the loop should stop)."""
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)
        return not self.waiters

    def finish_all(self, error: BaseException | None) -> None:
        """End every wait with the last job and `error`."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.finish(self.last, error)

    def succeeded(
        self, job: Job, now: float, policy: PollPolicy, rng: random.Random
    ) -> float | None:
        """Take an answer; return when to poll next, or None when the loop is over."""
        previous, self.last = self.last, job
        self._retry = None
        state_changed = previous is None or previous.state != job.state
        if state_changed or previous is None or previous.updated_at != job.updated_at:
            for waiter in self.waiters:
                waiter.update(job)
            if state_changed and not job.is_known_state:
                log.warning(
                    "job %s is in state %r, unknown to jobwatch: polling on", job.guid, job.state
                )
        if job.is_terminal:
            self.finish_all(None)
            return None
        checks = [waiter for waiter in self.waiters if not waiter.until_terminal]
        if checks:  # status checks are satisfied by this answer
            self.waiters = [waiter for waiter in self.waiters if waiter.until_terminal]
            for waiter in checks:
                waiter.finish(job, None)
        if not self.waiters:
            return None
        if state_changed:
            self._step = 0
        self._step += 1
        return now + policy.interval(job.state, self._step - 1, rng)

    def failed(self, error: BaseException, now: float, rules: RetryRules) -> float | None:
        """Take a failed attempt; return when to try again, or None when the loop is over."""
        if not is_transient(error):
            self.finish_all(error)
            return None
        if self._retry is None:
            self._retry = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        else:
            self._retry.attempt_number += 1
        wait = rules.next_wait(self._retry)
        if wait is None:
            if isinstance(error, TransportError):
                error.attempts = rules.attempts
            self.finish_all(error)
            return None
        server_wait = error.retry_after if isinstance(error, ApiError) else None
        if server_wait is not None:
            wait = max(wait, server_wait)
            # Never wait past a caller's deadline: give that caller the error now. A deadline
            # already gone is its timer's to report (JobTimeout), e.g. after Retry-After: 0.
            late = [w for w in self.waiters if now < w.deadline < now + server_wait]
            for waiter in late:
                self.waiters.remove(waiter)
                waiter.finish(self.last, error)
        if not self.waiters:
            return None
        log.warning(
            "job %s: attempt %d failed (%s); retrying in %.2f s",
            self.guid,
            self._retry.attempt_number,
            error,
            wait,
        )
        return now + wait
