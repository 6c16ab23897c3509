"""The ways of waiting on jobs, one small class each, and how a bulk call's job ended.

Each is a `Waiter` of the scheduler (`_poller.Waiter`): the poll loop calls
`update` at each observed change and `finish` once. None owns a task: a single
wait is a future, a watch a queue, a bulk call one object for all its jobs.
The caller's `on_update` always runs in the caller's own task, never inside
the scheduler, so it may be sync or async in every call and its error ends
that call alone.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Iterable, Mapping
from typing import Protocol

import attrs

from ._errors import JobFailed, JobTimeout, JobwatchError
from ._hooks import WaitCall, WaitReport
from ._models import Job, JobState
from ._poller import JobPoll
from ._refs import Accepted
from ._scheduler import Scheduler

__all__ = ["BatchWait", "OnUpdate", "Outcome", "StreamWait", "run_single", "run_watch"]

INF = float("inf")


class OnUpdate(Protocol):
    """Called with the job at each observed change; may be sync or async."""

    def __call__(self, job: Job, /) -> Awaitable[None] | None: ...


@attrs.frozen
class Outcome:
    """How one job of a bulk call ended: the last job seen, and the error if any."""

    guid: str
    job: Job | None
    error: JobwatchError | None = None

    @property
    def ok(self) -> bool:
        """True when the job was fetched (or waited on) without an error."""
        return self.error is None


def _failure(job: Job) -> JobFailed | None:
    return JobFailed(job) if job.state == JobState.FAILED else None


def _deadline(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float:
    return INF if timeout is None else loop.time() + timeout


class _SingleWait:
    """`wait_for_job` (until terminal) or `get_job` (the first answer): one future."""

    __slots__ = ("deadline", "future", "report", "until_terminal")

    def __init__(self, future: asyncio.Future[Job], deadline: float, until_terminal: bool) -> None:
        self.future = future
        self.deadline = deadline
        self.until_terminal = until_terminal
        #: Reports the wait's end to the hooks (None: no hook set).
        self.report: WaitReport | None = None

    def update(self, job: Job) -> None:
        pass

    def finish(self, job: Job | None, error: JobwatchError | None) -> None:
        if self.future.done():
            return
        if error is None and job is not None and self.until_terminal:
            error = _failure(job)
        if self.report is not None:
            self.report.ended(job, error)
        if error is not None:
            self.future.set_exception(error)
            self.future.exception()  # retrieved: its caller may be gone (cancelled)
        elif job is not None:
            self.future.set_result(job)


class _End:
    """The last item of a watch: the final job, and the error if it did not complete."""

    __slots__ = ("error", "job")

    def __init__(self, job: Job | None, error: JobwatchError | None) -> None:
        self.job = job
        self.error = error


class _WatchWait:
    """`watch_job` (and `wait_for_job` with `on_update`): each change into a queue."""

    __slots__ = ("deadline", "ended", "queue", "report")

    until_terminal = True

    def __init__(self, queue: asyncio.Queue[Job | _End], deadline: float) -> None:
        self.queue = queue
        self.deadline = deadline
        self.ended = False
        self.report: WaitReport | None = None

    def update(self, job: Job) -> None:
        self.queue.put_nowait(job)

    def finish(self, job: Job | None, error: JobwatchError | None) -> None:
        if self.ended:
            return
        self.ended = True
        if self.report is not None:
            failure = error if error is not None or job is None else _failure(job)
            self.report.ended(job, failure)
        self.queue.put_nowait(_End(job, error))


def _expire(
    scheduler: Scheduler, poll: JobPoll, waiter: _SingleWait | _WatchWait, timeout: float
) -> None:
    last = poll.last  # before leaving: a retired poll lets go of its job
    scheduler.leave(poll, waiter)
    waiter.finish(last, JobTimeout(poll.guid, timeout, last))


def _arm(
    loop: asyncio.AbstractEventLoop,
    scheduler: Scheduler,
    poll: JobPoll,
    waiter: _SingleWait | _WatchWait,
    timeout: float | None,
) -> asyncio.TimerHandle | None:
    """The caller's deadline, as the timer that ends the wait with `JobTimeout`."""
    if timeout is None:
        return None
    return loop.call_at(waiter.deadline, _expire, scheduler, poll, waiter, timeout)


def _leave(
    scheduler: Scheduler,
    poll: JobPoll,
    waiter: _SingleWait | _WatchWait,
    timer: asyncio.TimerHandle | None,
) -> None:
    """The wait is over, however it ended: its timer, its report, its place in the loop."""
    if timer is not None:
        timer.cancel()
    if waiter.report is not None:
        waiter.report.cancelled(poll.last)  # unless it ended: then a no-op
    scheduler.leave(poll, waiter)


async def run_single(
    scheduler: Scheduler,
    guid: str,
    *,
    timeout: float | None,
    until_terminal: bool,
    accepted: Accepted | None = None,
) -> Job:
    """Wait (or check once) on one job; the caller's deadline ends it with `JobTimeout`.

    `accepted`: the job was handed over as its 202 (a wait's first poll waits its interval).
    """
    loop = scheduler.loop
    future: asyncio.Future[Job] = loop.create_future()
    waiter = _SingleWait(future, _deadline(loop, timeout), until_terminal)
    poll = scheduler.join(guid, waiter, fresh=not until_terminal, accepted=accepted)
    if scheduler.hooks:
        call: WaitCall = "wait_for_job" if until_terminal else "get_job"
        waiter.report = scheduler.hooks.wait_started(loop, poll, call, timeout)
    timer = _arm(loop, scheduler, poll, waiter, timeout)
    try:
        return await future
    finally:
        _leave(scheduler, poll, waiter, timer)


async def run_watch(
    scheduler: Scheduler,
    guid: str,
    *,
    timeout: float | None,
    call: WaitCall = "watch_job",
    accepted: Accepted | None = None,
) -> AsyncGenerator[Job, None]:
    """Yield the job at each observed change; end after the terminal one.

    `call` names the public call for the hooks (`wait_for_job` with `on_update` runs here);
    `accepted`: the job was handed over as its 202 (its first poll waits its interval).
    """
    loop = scheduler.loop
    queue: asyncio.Queue[Job | _End] = asyncio.Queue()
    waiter = _WatchWait(queue, _deadline(loop, timeout))
    poll = scheduler.join(guid, waiter, accepted=accepted)
    if scheduler.hooks:
        waiter.report = scheduler.hooks.wait_started(loop, poll, call, timeout)
    timer = _arm(loop, scheduler, poll, waiter, timeout)
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        _leave(scheduler, poll, waiter, timer)


class _Member:
    """One job of a bulk call: a few slots, no task, no future."""

    __slots__ = ("batch", "deadline", "poll", "until_terminal")

    def __init__(self, batch: BatchWait) -> None:
        self.batch = batch
        self.poll: JobPoll | None = None
        # The call's, copied: read on every answer, and fixed for the call.
        self.deadline = batch.deadline
        self.until_terminal = batch.until_terminal

    def update(self, job: Job) -> None:
        self.batch.updated(job)

    def finish(self, job: Job | None, error: JobwatchError | None) -> None:
        batch, poll = self.batch, self.poll
        if poll is None:
            return
        self.poll = None
        if error is None and job is not None and batch.until_terminal:
            error = _failure(job)
        batch.record(Outcome(poll.guid, job, error))


class BatchWait:
    """`wait_for_jobs` or `get_jobs`: outcomes so far, one deadline, one wake-up."""

    #: The call's name for the hooks.
    call: WaitCall = "wait_for_jobs"

    def __init__(
        self,
        scheduler: Scheduler,
        guids: Iterable[str],
        *,
        until_terminal: bool,
        timeout: float | None,
        on_update: OnUpdate | None = None,
        accepted: Mapping[str, Accepted] | None = None,
    ) -> None:
        loop = scheduler.loop
        self.scheduler = scheduler
        self.until_terminal = until_terminal
        self.timeout = timeout
        self.on_update = on_update
        self.deadline = _deadline(loop, timeout)
        self.outcomes: dict[str, Outcome | None] = dict.fromkeys(guids)
        self.pending = len(self.outcomes)
        #: Changes not yet handed to `on_update` (which runs in the caller's task).
        self.updates: deque[Job] = deque()
        #: Set when the caller has something to do: an update, an outcome, the end.
        self.wake = asyncio.Event()
        #: Outcomes not yet yielded (`as_completed` only).
        self.ready: deque[Outcome] = deque()
        #: What the caller's `on_update` raised: the call ended with it.
        self.failure: BaseException | None = None
        self._members: list[_Member] = []
        self._timer = None if timeout is None else loop.call_at(self.deadline, self.expire)
        hooks = scheduler.hooks
        #: Per guid still going, what reports its wait's end to the hooks (empty: no hook).
        self._reports: dict[str, WaitReport] = {}
        call = self.call if until_terminal else "get_jobs"
        for guid in self.outcomes:  # duplicates collapsed, input order kept
            member = _Member(self)
            self._members.append(member)
            member.poll = poll = scheduler.join(
                guid,
                member,
                fresh=not until_terminal,
                accepted=accepted.get(guid) if accepted else None,
            )
            if hooks:
                self._reports[guid] = hooks.wait_started(loop, poll, call, timeout)

    def updated(self, job: Job) -> None:
        if self.on_update is not None:
            self.updates.append(job)
            self.wake.set()

    def record(self, outcome: Outcome) -> None:
        self.outcomes[outcome.guid] = outcome
        if self._reports:
            self._reports.pop(outcome.guid).ended(outcome.job, outcome.error)
        self.pending -= 1
        if self.pending == 0:
            self.wake.set()

    def expire(self) -> None:
        """The deadline passed: every job still going ends with `JobTimeout`."""
        timeout = self.timeout if self.timeout is not None else 0.0
        for member in self._members:
            poll = member.poll
            if poll is not None:
                last = poll.last  # before leaving: a retired poll lets go of its job
                self.scheduler.leave(poll, member)
                member.finish(last, JobTimeout(poll.guid, timeout, last))

    def close(self) -> None:
        """Leave every poll loop still running for this call (cancelled or done)."""
        if self._timer is not None:
            self._timer.cancel()
        for member in self._members:
            poll, member.poll = member.poll, None
            if poll is not None:
                if self._reports:
                    report = self._reports.pop(poll.guid)
                    if self.failure is None:
                        report.cancelled(poll.last)
                    else:  # the caller's on_update raised: the call ended with that
                        report.ended(poll.last, self.failure)
                self.scheduler.leave(poll, member)
        self._members.clear()

    async def _deliver(self) -> None:
        """Hand the pending changes to `on_update`, in the caller's task; await it if async."""
        on_update, updates = self.on_update, self.updates
        assert on_update is not None
        try:
            while updates:
                result = on_update(updates.popleft())
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            self.failure = exc
            raise

    async def _sleep(self) -> None:
        self.wake.clear()
        await self.wake.wait()

    async def results(self) -> dict[str, Outcome]:
        """Wait for every outcome; keyed by guid in input order."""
        try:
            while self.pending or self.updates:
                if self.updates:
                    await self._deliver()
                else:
                    await self._sleep()
        finally:
            self.close()
        return {guid: outcome for guid, outcome in self.outcomes.items() if outcome is not None}


class StreamWait(BatchWait):
    """`as_completed`: a bulk call that hands each outcome over as its job ends."""

    call: WaitCall = "as_completed"

    def record(self, outcome: Outcome) -> None:
        self.ready.append(outcome)
        self.wake.set()
        super().record(outcome)

    async def as_completed(self) -> AsyncGenerator[Outcome, None]:
        """Yield each outcome as its job ends, after the changes that led to it."""
        try:
            remaining = len(self.outcomes)
            while remaining:
                if self.updates:
                    await self._deliver()
                elif self.ready:
                    remaining -= 1
                    yield self.ready.popleft()
                else:
                    await self._sleep()
        finally:
            self.close()
