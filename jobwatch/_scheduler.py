"""The scheduler: one due-time heap, single flight per guid, a shared in-flight limit.

Every wait of a client, single or bulk, goes through one `Scheduler`. A
waiting job costs a `JobPoll` and a heap entry, not a task: one dispatcher
task pops due polls and starts at most `max_in_flight` requests at once,
in due order, at the pace the API's rate-limit budget allows.

The heap holds `(when, seq, poll)` entries and is never searched: a poll that
is rescheduled is pushed again with a new `seq` (kept on the poll), and one
that ends is only marked `closed`. Entries whose `seq` is no longer their
poll's, or whose poll is closed, are stale and dropped when they reach the top
(lazy deletion): O(log n) per change, nothing to find or remove.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import heapq
import itertools
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

from . import _testing_mode
from ._errors import (
    ApiError,
    ClientClosed,
    InternalServerError,
    JobwatchError,
    RateLimited,
    TransportError,
)
from ._gate import CLOSE_AFTER, OutageGate, RetryRules
from ._hooks import Emitter
from ._learn import LearnedSchedule
from ._models import JobState
from ._policy import PollPolicy, RetryPolicy
from ._poller import JobPoll, Waiter
from ._refs import Accepted
from ._transport import Transport

__all__ = ["ClientState", "Scheduler"]

log = logging.getLogger("jobwatch")

INF = float("inf")


class ClientState(enum.Enum):
    """Where a client is in its life; the scheduler's, the one owner of it."""

    OPEN = "open"
    #: `aclose()` under way: no new wait is taken, the session is not closed yet.
    CLOSING = "closing"
    CLOSED = "closed"


class Scheduler:
    """Runs every poll loop of one client."""

    def __init__(
        self,
        transport: Transport,
        jobs_prefix: str,
        *,
        poll: PollPolicy,
        retry: RetryPolicy,
        max_in_flight: int,
        rng: random.Random | None = None,
        hooks: Emitter | None = None,
    ) -> None:
        self._transport = transport
        self._prefix = jobs_prefix
        self._policy = poll
        #: PollPolicy(learn=True): the per-operation model of how long jobs run.
        self.learned = LearnedSchedule(poll) if poll.learn else None
        self._rules = RetryRules(retry)
        self.gate = OutageGate(self._rules)
        #: The client's instrumentation hooks; None (not an empty emitter) when none is set,
        #: so the hot path pays one falsy test and builds no event.
        self.hooks = self.gate.hooks = hooks
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._polls: dict[str, JobPoll] = {}
        self._heap: list[tuple[float, int, JobPoll]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The latest deadline among the waits since the client was last idle: the
        # rate budget is spread to last until then (or the window's reset).
        self._horizon = -INF
        # Requests sent before the API first answered: at most `max_in_flight` go
        # out blind (no rate-limit headers known yet), then only the gate's probes;
        # never fewer than the failures that close the gate, or with a small
        # `max_in_flight` nothing would ever go again.
        self._blind = max(max_in_flight, CLOSE_AFTER)
        self.retries = 0
        self.state = ClientState.OPEN

    def __repr__(self) -> str:
        return (
            f"<Scheduler waiting={len(self._polls)} due={len(self._heap)} "
            f"in_flight={self._transport.in_flight} {self.gate!r}>"
        )

    @property
    def closed(self) -> bool:
        """True from the moment closing starts: no new wait, no further poll."""
        return self.state is not ClientState.OPEN

    @property
    def waiting(self) -> int:
        """Jobs with a poll loop running now."""
        return len(self._polls)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this scheduler runs on, bound at first use.

        Raises:
            RuntimeError: called from another event loop (state left untouched).
        """
        running = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = running
        elif running is not self._loop:
            raise RuntimeError(
                "this jobwatch.Client is bound to the event loop it first ran on and cannot "
                "be used from another one; make a Client per event loop"
            )
        return running

    def loop_time(self) -> float:
        """The bound loop's clock (0 before the first call)."""
        return self._loop.time() if self._loop is not None else 0.0

    def check_usable(self) -> None:
        """Raise `ClientClosed` or `RuntimeError` (another loop) before any state changes."""
        if self.closed:
            raise ClientClosed()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop running (an iterator built outside one): checked when it runs
        if self._loop is not None and running is not self._loop:
            self.loop  # noqa: B018 - raises the error, in one place

    def join(
        self, guid: str, waiter: Waiter, *, fresh: bool = False, accepted: Accepted | None = None
    ) -> JobPoll:
        """Attach a waiter to the guid's poll loop, starting one if needed.

        A new loop polls at once, or, for a job handed over as its 202
        (`accepted`), once its first interval has passed since the job was
        created. `fresh` (a status check) polls at once, and also pulls an
        existing loop's next poll forward to now, unless a request is already on
        its way.
        """
        self.check_usable()
        loop = self.loop
        poll = self._polls.get(guid)
        if poll is None:
            poll = self._polls[guid] = JobPoll(guid)
            poll.add(waiter)
            now = loop.time()
            self._push(poll, now if accepted is None or fresh else self._first_poll(accepted, now))
        else:
            poll.add(waiter)
            if fresh and poll.task is None:
                self._push(poll, loop.time())
        if waiter.deadline > self._horizon:
            self._horizon = waiter.deadline
        if self._dispatcher is None:
            self._dispatcher = loop.create_task(self._dispatch(), name="jobwatch-dispatcher")
            self._dispatcher.add_done_callback(self._dispatcher_done)
        return poll

    def _first_poll(self, accepted: Accepted, now: float) -> float:
        """When a fresh job is first polled: the first PROCESSING interval after its `Date`.

        At once if that is past. Not a step of the schedule: after this GET it
        starts from its first interval, as for any job.
        """
        interval = self._policy.interval(JobState.PROCESSING, 0, self._rng)
        age = 0.0 if accepted.date is None else self._transport.budget.age(accepted.date)
        return now + max(interval - age, 0.0)

    def leave(self, poll: JobPoll, waiter: Waiter) -> None:
        """Detach a waiter; the loop stops when its last waiter leaves."""
        if poll.remove(waiter) and not poll.closed:
            self._retire(poll)

    def _retire(self, poll: JobPoll) -> None:
        poll.closed = True
        if self._polls.get(poll.guid) is poll:
            del self._polls[poll.guid]
            if not self._polls:
                self._horizon = -INF
                self._wake.set()  # the dispatcher ends: nothing waits
        task = poll.task
        if isinstance(task, asyncio.Task):
            task.cancel()
        # Its heap entry stays until it comes due (popped as stale then): let go
        # of the job now, so a cancelled bulk wait frees its jobs at once.
        poll.last = None

    def _push(self, poll: JobPoll, when: float) -> None:
        if _testing_mode.enabled:  # set_testing(): no poll interval is slept through
            when = min(when, self.loop_time())
        poll.seq = seq = next(self._seq)
        heapq.heappush(self._heap, (when, seq, poll))
        if self._heap[0][1] == seq:
            self._wake.set()

    async def _dispatch(self) -> None:
        slots, loop = self._slots, self.loop
        while True:
            await slots.acquire()
            try:
                poll = await self._next_due(loop)
                if poll is None:
                    # Said here, in the step that decides it: a join that comes before
                    # the done-callback runs must start a new dispatcher.
                    self._dispatcher = None
                    slots.release()
                    return
                self._launch(poll, loop)
            except BaseException:
                slots.release()
                raise

    def _launch(self, poll: JobPoll, loop: asyncio.AbstractEventLoop) -> None:
        # Counted here, not when the task runs: the next due poll is paced on it.
        now = loop.time()
        self._transport.budget.sent(now)
        if not self.gate.answered:
            self._blind -= 1
        poll.task = task = loop.create_task(self._run(poll, now))
        if self.gate.closed:
            self._probe = task
        # Freed when the task ends, however it ends: a task cancelled before its
        # first step never runs a line of `_poll_once`.
        task.add_done_callback(self._free_slot)

    async def _run(self, poll: JobPoll, sent: float) -> None:
        """Poll; then, while polls are due and may go at once, take the next in this task.

        Saves a task and a dispatcher wake-up per request when polls come due
        back to back (a bulk call's first wave, a busy heap). The slot stays
        held, as for one poll; anything to decide (pacing, the gate) is the
        dispatcher's.
        """
        loop = self._loop
        assert loop is not None  # bound by the join that started this poll
        task = None
        while True:
            await self._poll_once(poll, sent)
            sent = loop.time()
            following = self._due_now(sent)
            if following is None:
                return
            poll = following
            self._transport.budget.sent(sent)
            if task is None:
                task = asyncio.current_task()
            poll.task = task
            if self._probe is task:
                self._probe = None  # the gate is open again: this task probes no more

    def _due_now(self, now: float) -> JobPoll | None:
        """The first poll due at `now`, if it may go with nothing to decide; else None."""
        gate = self.gate
        if gate.closed or not gate.answered or self.closed or not self._drop_stale():
            return None
        if self._heap[0][0] > now or self._transport.budget.earliest(now, self._horizon) > now:
            return None
        return heapq.heappop(self._heap)[2]

    def _drop_stale(self) -> bool:
        """Pop the stale entries off the heap's top; True if a live one is left there."""
        heap = self._heap
        while heap and (heap[0][2].closed or heap[0][1] != heap[0][2].seq):
            heapq.heappop(heap)
        return bool(heap)

    def _free_slot(self, task: asyncio.Task[None]) -> None:
        self._slots.release()
        if task.cancelled() and not self.gate.answered:
            self._blind += 1  # it learnt nothing of the API: another may go in its place
            self._wake.set()
        if task is self._probe:  # however it ended, the next probe may go
            self._probe = None
            self._wake.set()

    def _gate_at(self, now: float) -> float:
        """When the outage gate (or the blind start) lets the next request go."""
        gate = self.gate
        if gate.closed:
            return INF if self._probe is not None else gate.next_probe
        if not gate.answered and self._blind <= 0:
            return INF  # until an answer, or the failures that close the gate
        return -INF

    async def _next_due(self, loop: asyncio.AbstractEventLoop) -> JobPoll | None:
        heap, budget = self._heap, self._transport.budget
        while True:
            self._drop_stale()
            if not heap and not self._polls:
                return None
            timer: asyncio.TimerHandle | None = None
            if heap:
                now = loop.time()
                when, _, poll = heap[0]
                paced = budget.earliest(now, self._horizon)
                at = max(when, paced, self._gate_at(now))
                if at > now and when <= now and paced > now and self._last_chance(poll, paced):
                    at = now  # pacing would let its deadline pass with budget left
                if at <= now:
                    return heapq.heappop(heap)[2]
                if at < INF:
                    timer = loop.call_at(at, self._wake.set)
            self._wake.clear()
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _last_chance(self, poll: JobPoll, paced: float) -> bool:
        now = self.loop.time()
        if self._gate_at(now) > now or not self._transport.budget.spendable(now):
            return False
        return any(waiter.deadline < paced for waiter in poll.waiters)

    async def _poll_once(self, poll: JobPoll, sent: float) -> None:
        """One poll of the job; `sent` is the loop time it was launched (for the hooks)."""
        loop = self._loop
        assert loop is not None  # bound by the join that started this poll
        try:
            # Built per request rather than kept: one string less per waiting job.
            job, request_id = await self._transport.fetch_job(self._prefix + poll.guid)
        except BaseException as exc:
            poll.task = None
            error: BaseException = exc
            if isinstance(exc, asyncio.CancelledError):
                task = asyncio.current_task()
                if poll.closed or self.closed or (task is not None and task.cancelling()):
                    raise
                # Nobody cancelled this fetch: something below raised CancelledError
                # on its own. The waiters were not cancelled: count a failed attempt.
                error = TransportError("the request was aborted", url=self._prefix + poll.guid)
            elif not isinstance(exc, Exception):
                raise
            if isinstance(error, JobwatchError):
                if self.hooks:
                    now = loop.time()
                    offset = self._transport.budget.clock_offset
                    self.hooks.polled(poll, None, error, None, now - sent, offset)
                self._failed(poll, error, loop.time())
            else:  # a bug: hand it to the waiters rather than hang them
                log.error("job %s: unexpected error while polling", poll.guid, exc_info=error)
                poll.finish_all(_bug(error))
                self._done(poll, None)
            return
        poll.task = None
        now = loop.time()
        self._answered(now)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "job %s state %s attempt %d [request id %s]",
                poll.guid,
                job.state,
                poll.failures + 1,
                request_id,
            )
        if self.hooks:
            offset = self._transport.budget.clock_offset
            self.hooks.polled(poll, job, None, request_id, now - sent, offset)
        learned = self.learned
        server_now = time.time() + (self._transport.budget.clock_offset or 0.0) if learned else 0.0
        self._done(poll, poll.succeeded(job, now, self._policy, self._rng, learned, server_now))

    def _answered(self, now: float) -> None:
        gate = self.gate
        # The hot path: nothing to tell an open gate with no failures (a closed one has some).
        if (gate.failures or not gate.answered) and gate.answer(now):
            self._wake.set()  # the polls held during the outage are due

    def _failed(self, poll: JobPoll, error: JobwatchError, now: float) -> None:
        gate = self.gate
        if isinstance(error, TransportError) or (
            isinstance(error, ApiError) and error.transient and not isinstance(error, RateLimited)
        ):
            if error.transient:  # a bad certificate is neither an answer nor an outage
                if isinstance(error, ApiError) and error.errors:
                    gate.answered = True  # the controller's own envelope: the URL is right
                probe = asyncio.current_task() is self._probe
                # One job alone closes it with anything but the controller's own 500,
                # which is about that job more often than about the API.
                alone = len(self._polls) <= 1 and not (
                    isinstance(error, InternalServerError) and error.errors
                )
                gate.failure(poll.guid, error, now, probe=probe, alone=alone)
                if probe and gate.exhausted:
                    self._give_up_held(error)
        else:
            # The controller itself answered (a 429 is its rate limiter): the API is up.
            self._answered(now)
            if self.hooks and isinstance(error, RateLimited):
                self.hooks.rate_limited(poll, error, self._transport.budget.paused_seconds)
        next_at = poll.failed(error, now, self._rules, bounded=not gate.answered)
        if self.hooks and next_at is not None and not poll.closed:
            self.hooks.retry_scheduled(poll, error, next_at - now)
        self._done(poll, next_at)

    def _give_up_held(self, error: JobwatchError) -> None:
        """The API stayed down for `attempts` probes: end what `RetryPolicy` bounds.

        Status checks always; every wait too when the API has never answered.
        """
        everyone = not self.gate.answered
        for poll in list(self._polls.values()):
            if everyone or poll.has_checks:
                poll.give_up(self._as_own(error, poll), everyone=everyone)
                if not poll.waiters:
                    self._retire(poll)

    def _as_own(self, error: JobwatchError, poll: JobPoll) -> JobwatchError:
        """The probe's error, told of this poll's own URL (each job's message names its own)."""
        url = self._prefix + poll.guid
        if not isinstance(error, TransportError | ApiError) or error.url == url:
            return error
        own = copy.copy(error)
        own.url = url
        return own

    def _done(self, poll: JobPoll, next_at: float | None) -> None:
        """Schedule the next poll, or retire the loop when it is over."""
        if poll.closed:
            return
        if next_at is None:
            self._retire(poll)
        else:
            if poll.failures:
                self.retries += 1
            self._push(poll, next_at)

    def _dispatcher_done(self, task: asyncio.Task[None]) -> None:
        if self._dispatcher is task:
            self._dispatcher = None  # the next join starts a new one
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # never leave waiters hanging on a dead dispatcher
            for poll in list(self._polls.values()):
                poll.finish_all(_bug(error))
                self._retire(poll)

    def close(self) -> Coroutine[Any, Any, None]:
        """Stop everything, then close the transport; waits still going on end with `ClientClosed`.

        The client is closing from this call on (no new wait is taken), before the
        returned coroutine runs. Call it once: the client shares one closing among
        its `aclose()` calls.
        """
        self.state = ClientState.CLOSING
        return self._close()

    async def _close(self) -> None:
        for poll in list(self._polls.values()):
            poll.finish_all(ClientClosed("the wait"))
            self._retire(poll)
        tasks = [t for t in (self._dispatcher,) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Let cancelled fetches unwind so no connection or task is left behind.
        await asyncio.sleep(0)
        try:
            await self._transport.close()
        finally:
            self.state = ClientState.CLOSED


def _bug(error: BaseException) -> JobwatchError:
    """A failure of jobwatch itself, as the error its waiters get (the cause chained)."""
    wrapped = JobwatchError(
        f"jobwatch failed while polling ({type(error).__name__}: {error}); please report it"
    )
    wrapped.__cause__ = error
    return wrapped
