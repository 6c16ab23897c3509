"""The state machine of one job's poll loop: what to do after each answer.

It knows nothing of HTTP or of the event loop: the scheduler (`_scheduler.py`) feeds
it answers and the clock, and it says when to poll next, or that the loop is
over. One `JobPoll` serves every waiter on the same guid (single flight).
"""

from __future__ import annotations

import logging
import random
from typing import Protocol

from . import _testing_mode
from ._errors import ApiError, JobwatchError, TransportError
from ._gate import RetryRules
from ._learn import LearnedSchedule
from ._models import Job
from ._policy import PollPolicy

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

    def finish(self, job: Job | None, error: JobwatchError | None) -> None:
        """Called once, when this waiter's wait is over."""


class JobPoll:
    """One guid's poll loop: the last job seen, its schedule, and who waits on it."""

    __slots__ = (
        "_step",
        "age",
        "closed",
        "failures",
        "guid",
        "last",
        "polls",
        "seq",
        "task",
        "waiters",
    )

    def __init__(self, guid: str) -> None:
        self.guid = guid
        self.last: Job | None = None
        self.waiters: list[Waiter] = []
        self.seq = -1
        self.task: object | None = None
        self.closed = False
        self._step = 0  # how far into the current state's schedule
        #: The job's age (server clock) up to which a learned schedule has counted it running.
        self.age = 0.0
        #: Consecutive failed attempts of the current poll.
        self.failures = 0
        #: Polls sent, counted only while instrumentation hooks are set (`_hooks.Emitter`).
        self.polls = 0

    def __repr__(self) -> str:
        state = self.last.state if self.last else "unseen"
        return f"<JobPoll {self.guid} {state} waiters={len(self.waiters)}>"

    def add(self, waiter: Waiter) -> None:
        """Join a waiter; it sees the last known job at once."""
        self.waiters.append(waiter)
        if self.last is not None:
            waiter.update(self.last)

    def remove(self, waiter: Waiter) -> bool:
        """Drop a waiter; True when nobody is left (the loop should stop)."""
        if waiter in self.waiters:  # not when it has finished: no exception to raise and catch
            self.waiters.remove(waiter)
        return not self.waiters

    def finish_all(self, error: JobwatchError | None) -> None:
        """End every wait with the last job and `error`."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.finish(self.last, error)

    def succeeded(
        self,
        job: Job,
        now: float,
        policy: PollPolicy,
        rng: random.Random,
        learned: LearnedSchedule | None = None,
        server_now: float = 0.0,
    ) -> float | None:
        """Take an answer; return when to poll next, or None when the loop is over.

        With a `learned` schedule (`PollPolicy(learn=True)`), the job's age is
        `server_now` (the server's clock, as the client learned it from `Date`)
        minus its `created_at`.
        """
        previous, self.last = self.last, job
        self.failures = 0
        state_changed = previous is None or previous.state != job.state
        if state_changed or previous is None or previous.updated_at != job.updated_at:
            for waiter in self.waiters:
                waiter.update(job)
            if state_changed and not job.is_known_state:
                log.warning(
                    "job %s is in state %.100r, unknown to jobwatch: polling on",
                    job.guid,
                    job.state,
                )
        if job.is_terminal:
            if learned is not None and job.operation and job.created_at and job.updated_at:
                learned.observe_end(
                    job.operation, job.created_at.timestamp(), job.updated_at.timestamp(), self.age
                )
            self.finish_all(None)
            return None
        self._finish_checks(None)  # status checks are satisfied by this answer
        if not self.waiters:
            return None
        if state_changed:
            self._step = 0
        self._step += 1
        if learned is None or not job.operation or job.created_at is None:
            return now + policy.interval(job.state, self._step - 1, rng)
        age = server_now - job.created_at.timestamp()
        learned.observe_running(job.operation, age, self.age)
        self.age = max(self.age, age)
        return now + learned.next_interval(job.operation, job.state, age, self._step - 1, rng)

    def failed(
        self, error: JobwatchError, now: float, rules: RetryRules, *, bounded: bool = False
    ) -> float | None:
        """Take a failed attempt; return when to try again, or None when the loop is over.

        After `rules.attempts` consecutive failures the status checks get the
        error; waits keep trying until their own deadlines (the job goes on
        server-side), unless `bounded` (the API has never answered: a wrong URL
        must stay a quick, clear error).
        """
        if not error.transient:
            self.finish_all(error)
            return None
        self.failures += 1
        if self.failures >= rules.attempts:
            if isinstance(error, TransportError):
                error.attempts = self.failures
            self.give_up(error, everyone=bounded)
        wait = rules.backoff(self.failures)
        server_wait = error.retry_after if isinstance(error, ApiError) else None
        if server_wait is not None and _testing_mode.enabled:
            server_wait = 0.0  # set_testing(): the error keeps what the server said
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
            self.failures,
            error,
            wait,
        )
        return now + wait

    def give_up(self, error: JobwatchError, *, everyone: bool) -> None:
        """End the status checks (and with `everyone`, every wait) with `error`."""
        if everyone:
            self.finish_all(error)
        else:
            self._finish_checks(error)

    def _finish_checks(self, error: JobwatchError | None) -> None:
        waiters = self.waiters
        if len(waiters) == 1:  # the common case, on every answer: no list built
            waiter = waiters[0]
            if not waiter.until_terminal:
                self.waiters = []
                waiter.finish(self.last, error)
            return
        if all(waiter.until_terminal for waiter in waiters):
            return
        checks = [waiter for waiter in self.waiters if not waiter.until_terminal]
        if checks:
            self.waiters = [waiter for waiter in self.waiters if waiter.until_terminal]
            for waiter in checks:
                waiter.finish(self.last, error)

    @property
    def has_checks(self) -> bool:
        """True while a status check (satisfied by any answer) waits on this job."""
        return any(not waiter.until_terminal for waiter in self.waiters)
