"""Instrumentation hooks: the events a client reports, and the protocol a hook implements.

A `Client(hooks=[...])` calls each hook synchronously, on the event loop, at
each event. With no hook set the scheduler builds no event at all: one test of
a falsy attribute per poll is the whole cost. A hook that raises never breaks
a wait: its first failure per event is logged at ERROR, later ones at DEBUG.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from ._errors import ApiError, JobFailed, JobTimeout, JobwatchError, MalformedResponse
from ._models import Job

if TYPE_CHECKING:
    from ._poller import JobPoll

log = logging.getLogger("jobwatch")

#: The public call a wait belongs to.
WaitCall = Literal[
    "get_job", "wait_for_job", "watch_job", "get_jobs", "wait_for_jobs", "as_completed"
]

#: One sequence for every client of the process: a hook shared by several clients
#: can key its state on `wait_id`.
_wait_ids = itertools.count(1)


@attrs.frozen
class Polled:
    """One poll of a job ended: answered with the job, with an error status, or not at all.

    A poll is one logical GET: the retry with a refreshed token after a 401
    is part of it.
    """

    api_url: str
    guid: str
    #: The HTTP status of the answer; None when there was none (refused, reset, timed out).
    status: int | None
    #: From the moment the request was handed to the transport to its answer (or failure).
    seconds: float
    #: 1 for a first attempt, n + 1 after n consecutive failed ones.
    attempt: int
    #: The job, when the poll answered 200 with one.
    job: Job | None = None
    error: JobwatchError | None = None
    #: `X-Vcap-Request-Id` of the answer, when there was one.
    request_id: str | None = None
    #: The job's operation, from this answer or the last one seen (None: not seen yet).
    operation: str | None = None
    #: Seconds from the job's `updated_at` to this answer, on the server's clock, for
    #: the answer that found the job terminal after earlier answers found it running;
    #: None otherwise (a job already over at the first poll may have ended days ago).
    detection_delay: float | None = None

    @property
    def state(self) -> str | None:
        """The job's state in this answer (None: no job in it)."""
        return None if self.job is None else str(self.job.state)


@attrs.frozen
class RetryScheduled:
    """A poll failed transiently and will be tried again after `wait` seconds."""

    api_url: str
    guid: str
    #: Consecutive failed attempts so far (1 after the first).
    attempt: int
    wait: float
    error: JobwatchError
    operation: str | None = None


@attrs.frozen
class WaitStarted:
    """A caller started waiting on (or checking) one job; reported from the caller's task."""

    api_url: str
    #: Unique in the process; the `WaitEnded` of this wait carries the same one.
    wait_id: int
    guid: str
    call: WaitCall
    timeout: float | None


@attrs.frozen
class WaitEnded:
    """One caller's wait on one job is over, however it ended (once per `WaitStarted`)."""

    api_url: str
    wait_id: int
    guid: str
    call: WaitCall
    #: The last job seen (None: never seen).
    job: Job | None
    #: None when it ended well; `JobFailed`, `JobTimeout`, the error that ended it,
    #: or `asyncio.CancelledError` when the caller cancelled it or stopped iterating.
    error: BaseException | None
    #: Polls of the job while this wait was on it (shared with other waits on it).
    polls: int
    seconds: float

    @property
    def operation(self) -> str | None:
        """The job's operation, if it was ever seen."""
        return None if self.job is None else self.job.operation

    @property
    def state(self) -> str | None:
        """The last state seen, if any."""
        return None if self.job is None else str(self.job.state)

    @property
    def outcome(self) -> Literal["ok", "failed", "timeout", "cancelled", "error"]:
        """How it ended, in one low-cardinality word (a metric label)."""
        error = self.error
        if error is None:
            return "ok"
        if isinstance(error, JobFailed):
            return "failed"
        if isinstance(error, JobTimeout):
            return "timeout"
        if isinstance(error, asyncio.CancelledError):
            return "cancelled"
        return "error"


@attrs.frozen
class OutageBegan:
    """The client found the API down: its outage gate held the polls past a failed probe."""

    api_url: str
    #: Wall-clock time (`time.time()`) of the first failure of the outage.
    since: float
    #: Seconds since then.
    seconds: float
    error: BaseException


@attrs.frozen
class OutageEnded:
    """The API answered again after an outage that was reported by `OutageBegan`."""

    api_url: str
    since: float
    #: How long the API was unavailable, from the first failure to the first answer.
    seconds: float


@attrs.frozen
class RateLimitPaused:
    """A 429 paused every request of the client (or pushed an earlier pause further)."""

    api_url: str
    guid: str
    #: How much longer requests are held because of this 429.
    seconds: float
    error: JobwatchError


class Hook(Protocol):
    """Receives a client's events; pass instances as `Client(hooks=[...])`.

    Subclass it and override the methods you need (the others do nothing), or
    implement all six on a class of your own. Each is called synchronously on
    the event loop, so keep it quick: record, don't do I/O. Several waits on
    one job share one poll loop: polls, retries and outages are reported once
    per client, a wait's start and end once per caller (each job of a bulk call
    is a wait of its own).
    """

    def polled(self, event: Polled, /) -> None:
        """A poll of a job ended (every request a client sends is one)."""
        return None

    def retry_scheduled(self, event: RetryScheduled, /) -> None:
        """A failed poll will be tried again."""
        return None

    def wait_started(self, event: WaitStarted, /) -> None:
        """A caller started a wait; called in the caller's task (its context is current)."""
        return None

    def wait_ended(self, event: WaitEnded, /) -> None:
        """A caller's wait ended: the job ended, failed, timed out, was cancelled or errored."""
        return None

    def outage_began(self, event: OutageBegan, /) -> None:
        """The API looks down (the client holds its polls behind one probe)."""
        return None

    def outage_ended(self, event: OutageEnded, /) -> None:
        """The API answers again."""
        return None

    def rate_limit_paused(self, event: RateLimitPaused, /) -> None:
        """A 429 paused every request of the client."""
        return None


_EVENTS = (
    "polled",
    "retry_scheduled",
    "wait_started",
    "wait_ended",
    "outage_began",
    "outage_ended",
    "rate_limit_paused",
)

_Call = Callable[[object], None]


def _overrides(hook: object, name: str) -> _Call | None:
    """The hook's method for an event, or None when it has none or keeps `Hook`'s no-op."""
    method = getattr(hook, name, None)
    if method is None or getattr(type(hook), name, None) is getattr(Hook, name):
        return None
    if not callable(method):
        raise TypeError(f"hook {hook!r}: {name} is not callable")
    return method  # type: ignore[no-any-return]


class Emitter:
    """A client's hooks: builds each event once and hands it to every hook that wants it."""

    __slots__ = ("_broken", "_calls", "_paused_seen", "api_url")

    def __init__(self, hooks: Iterable[Hook], api_url: str) -> None:
        self.api_url = api_url
        self._calls: dict[str, tuple[_Call, ...]] = {}
        for name in _EVENTS:
            found = (_overrides(hook, name) for hook in hooks)
            self._calls[name] = tuple(call for call in found if call is not None)
        self._broken: set[tuple[int, str]] = set()
        self._paused_seen = 0.0

    @classmethod
    def of(cls, hooks: Iterable[Hook], api_url: str) -> Emitter | None:
        """An emitter for these hooks, or None when there are none."""
        hooks = tuple(hooks)
        return cls(hooks, api_url) if hooks else None

    def _emit(self, name: str, event: object) -> None:
        for call in self._calls[name]:
            try:
                call(event)
            except Exception:
                key = (id(getattr(call, "__self__", call)), name)
                first = key not in self._broken
                self._broken.add(key)
                log.log(
                    logging.ERROR if first else logging.DEBUG,
                    "instrumentation hook %r raised in %s; carrying on%s",
                    getattr(call, "__self__", call),
                    name,
                    " (later failures of this hook here are logged at DEBUG)" if first else "",
                    exc_info=True,
                )

    # -- called by the scheduler and the gate --------------------------------------------

    def polled(
        self,
        poll: JobPoll,
        job: Job | None,
        error: JobwatchError | None,
        request_id: str | None,
        seconds: float,
        clock_offset: float | None,
    ) -> None:
        """Before the poll loop takes the answer (`poll.last` is the previous job)."""
        poll.polls += 1
        if not self._calls["polled"]:
            return
        previous = poll.last
        status: int | None = None
        delay: float | None = None
        if job is not None:
            status = 200
            if job.is_terminal and previous is not None and job.updated_at is not None:
                # Both stamps are the server's, truncated to the second: the client's clock
                # corrected by the offset learned from `Date` (low by half a second on
                # average) against `updated_at` (as low): the two biases cancel.
                server_now = time.time() + (clock_offset or 0.0)
                delay = max(0.0, server_now - job.updated_at.timestamp())
        elif isinstance(error, ApiError | MalformedResponse):
            status = error.status
        if isinstance(error, ApiError):
            request_id = error.request_id
        last = job or previous
        self._emit(
            "polled",
            Polled(
                self.api_url,
                poll.guid,
                status,
                seconds,
                poll.failures + 1,
                job,
                error,
                request_id,
                None if last is None else last.operation,
                delay,
            ),
        )

    def retry_scheduled(self, poll: JobPoll, error: JobwatchError, wait: float) -> None:
        """After the poll loop took a failure it will retry."""
        if self._calls["retry_scheduled"]:
            last = poll.last
            operation = None if last is None else last.operation
            event = RetryScheduled(self.api_url, poll.guid, poll.failures, wait, error, operation)
            self._emit("retry_scheduled", event)

    def rate_limited(self, poll: JobPoll, error: JobwatchError, paused_seconds: float) -> None:
        """After a 429: report how much the client-wide pause grew, if it did."""
        grown, self._paused_seen = paused_seconds - self._paused_seen, paused_seconds
        if grown > 0 and self._calls["rate_limit_paused"]:
            event = RateLimitPaused(self.api_url, poll.guid, grown, error)
            self._emit("rate_limit_paused", event)

    def outage_began(self, since: float, seconds: float, error: BaseException) -> None:
        if self._calls["outage_began"]:
            self._emit("outage_began", OutageBegan(self.api_url, since, seconds, error))

    def outage_ended(self, since: float, seconds: float) -> None:
        if self._calls["outage_ended"]:
            self._emit("outage_ended", OutageEnded(self.api_url, since, seconds))

    def wait_started(
        self,
        loop: asyncio.AbstractEventLoop,
        poll: JobPoll,
        call: WaitCall,
        timeout: float | None,
    ) -> WaitReport:
        """Report a wait's start; the returned record reports its end, once."""
        report = WaitReport(self, loop, poll, call, timeout)
        if self._calls["wait_started"]:
            event = WaitStarted(self.api_url, report.wait_id, poll.guid, call, timeout)
            self._emit("wait_started", event)
        return report


class WaitReport:
    """One wait's start, kept to report its end exactly once (made only with hooks set)."""

    __slots__ = ("_emitter", "_loop", "_poll", "_polls", "_started", "call", "wait_id")

    def __init__(
        self,
        emitter: Emitter,
        loop: asyncio.AbstractEventLoop,
        poll: JobPoll,
        call: WaitCall,
        timeout: float | None,
    ) -> None:
        self._emitter = emitter
        self._loop = loop
        self._poll: JobPoll | None = poll
        self._polls = poll.polls
        self._started = loop.time()
        self.call = call
        self.wait_id = next(_wait_ids)

    def ended(self, job: Job | None, error: BaseException | None) -> None:
        """Report the end (a second call does nothing)."""
        poll, self._poll = self._poll, None
        if poll is None:
            return
        emitter = self._emitter
        if emitter._calls["wait_ended"]:
            event = WaitEnded(
                emitter.api_url,
                self.wait_id,
                poll.guid,
                self.call,
                job,
                error,
                poll.polls - self._polls,
                self._loop.time() - self._started,
            )
            emitter._emit("wait_ended", event)

    def cancelled(self, job: Job | None) -> None:
        """The caller cancelled the wait or stopped iterating before it ended."""
        if self._poll is not None:
            self.ended(job, asyncio.CancelledError())
