"""Bulk waits: order, duplicates, mixed outcomes, single flight, the in-flight limit, budgets."""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import aclosing

import pytest

import jobwatch
from jobwatch.testing import FakeCloudController, FakeResponse, Fault, RateLimit, set_testing

from .helpers import fast_client

# Test mode: clients keep the default policies and sleep through none of their
# intervals. The tests that need real intervals (spacing, pacing, far-off polls)
# turn it off and say which policies they use.
pytestmark = pytest.mark.usefixtures("testing_mode")


async def test_results_keep_input_order_and_collapse_duplicates(
    cc: FakeCloudController,
) -> None:
    """Keys follow the input order; a duplicate guid is one key and one poll loop."""
    slow = cc.add_job(states=("PROCESSING",) * 4 + ("COMPLETE",))
    quick = cc.add_job(states=("COMPLETE",))
    async with cc.client() as cf:
        outcomes = await cf.wait_for_jobs([slow, quick, cc.job_url(slow), slow], timeout=5)
    assert list(outcomes) == [slow, quick]
    assert all(outcome.ok for outcome in outcomes.values())
    assert cc.polls(slow) == 5
    assert cc.polls(quick) == 1


async def test_mixed_outcomes_side_by_side(cc: FakeCloudController) -> None:
    """COMPLETE, FAILED, NotFound, a malformed body and a flaky job each end their own only."""
    done = cc.add_job(states=("PROCESSING", "COMPLETE"))
    failed = cc.add_job(states=("PROCESSING", "FAILED"))
    broken = cc.add_job(states=("COMPLETE",))
    cc.inject(broken, Fault.INVALID_JSON)
    flaky = cc.add_job(states=("COMPLETE",))
    cc.inject(flaky, *[Fault.SHORT_BODY] * 10)  # a wait rides through: the job goes on
    slow = cc.add_job(states=("PROCESSING",) * 6 + ("COMPLETE",))
    async with cc.client() as cf:
        jobs = [done, failed, "no-such-job", broken, flaky, slow]
        outcomes = await cf.wait_for_jobs(jobs, timeout=5)
    assert outcomes[done].ok
    assert outcomes[done].job is not None
    assert isinstance(outcomes[failed].error, jobwatch.JobFailed)
    assert outcomes[failed].job is not None
    assert outcomes[failed].job.state == "FAILED"
    assert isinstance(outcomes["no-such-job"].error, jobwatch.NotFound)
    assert outcomes["no-such-job"].job is None
    assert isinstance(outcomes[broken].error, jobwatch.MalformedResponse)
    assert outcomes[flaky].ok
    assert cc.polls(flaky) == 11
    assert outcomes[slow].ok


async def test_bulk_timeout_gives_each_late_job_its_last_state(cc: FakeCloudController) -> None:
    """One deadline for the call: late jobs end with JobTimeout and the last job seen."""
    done = cc.add_job(states=("COMPLETE",))
    late = cc.add_job(states=("POLLING",))
    async with cc.client() as cf:
        started = time.monotonic()
        outcomes = await cf.wait_for_jobs([done, late], timeout=0.2)
        assert time.monotonic() - started < 0.35
        assert cf.stats.waiting == 0
    assert outcomes[done].ok
    error = outcomes[late].error
    assert isinstance(error, jobwatch.JobTimeout)
    assert error.job is not None
    assert error.job.state == "POLLING"


async def test_get_jobs_checks_each_once(cc: FakeCloudController) -> None:
    """get_jobs is a status check: one GET per unique guid, FAILED is not an error."""
    guids = [cc.add_job(states=(state, "COMPLETE")) for state in ("PROCESSING", "FAILED")]
    async with cc.client() as cf:
        outcomes = await cf.get_jobs([*guids, guids[0], "missing"])
    assert [o.job.state if o.job else None for o in outcomes.values()] == [
        "PROCESSING",
        "FAILED",
        None,
    ]
    assert outcomes[guids[1]].ok
    assert isinstance(outcomes["missing"].error, jobwatch.NotFound)
    assert [cc.polls(guid) for guid in guids] == [1, 1]


async def test_as_completed_yields_in_completion_order(cc: FakeCloudController) -> None:
    """Outcomes arrive as jobs end, not in input order."""
    slow = cc.add_job(states=("PROCESSING",) * 5 + ("COMPLETE",))
    quick = cc.add_job(states=("COMPLETE",))
    async with cc.client() as cf:
        order = [outcome.guid async for outcome in cf.as_completed([slow, quick], timeout=5)]
    assert order == [quick, slow]


async def test_server_never_sees_more_than_max_in_flight(cc: FakeCloudController) -> None:
    """All requests of a client share one in-flight limit."""
    guids = cc.add_jobs(200, states=("PROCESSING", "COMPLETE"))
    cc.latency = 0.005
    async with cc.client(max_in_flight=7) as cf:
        outcomes = await cf.wait_for_jobs(guids, timeout=20)
    assert all(outcome.ok for outcome in outcomes.values())
    assert cc.peak_in_flight == 7


async def test_single_flight_across_bulk_and_single_waits(cc: FakeCloudController) -> None:
    """Waits on the same guid share one poll loop, whichever call started them."""
    set_testing(False)  # this test needs the intervals of its policies
    guid = cc.add_job(states=("PROCESSING",) * 5 + ("COMPLETE",))
    async with fast_client(cc) as cf:
        results = await asyncio.gather(
            cf.wait_for_job(guid, timeout=5),
            cf.wait_for_job(cc.job_url(guid), timeout=5),
            cf.wait_for_jobs([guid], timeout=5),
            cf.wait_for_jobs([guid, guid], timeout=5),
        )
    assert results[0].state == results[1].state == "COMPLETE"
    assert cc.polls(guid) == 6
    times = [r.time for r in cc.requests]
    assert all(b - a > 0.005 for a, b in itertools.pairwise(times))


async def test_status_check_joins_a_running_loop_with_a_fresh_poll(
    cc: FakeCloudController,
) -> None:
    """get_job on a guid being waited on polls now instead of waiting for the schedule."""
    set_testing(False)  # this test needs the intervals of its policies
    guid = cc.add_job(states=("POLLING",) * 3 + ("COMPLETE",))
    policy = jobwatch.PollPolicy(polling_initial=10, polling_maximum=10)
    async with fast_client(cc, poll=policy) as cf:
        waiter = asyncio.ensure_future(cf.wait_for_job(guid, timeout=5))
        while cf.stats.requests < 1:  # the first answer is in: no request on its way
            await asyncio.sleep(0.001)
        started = time.monotonic()
        assert (await cf.get_job(guid)).state == "POLLING"
        assert time.monotonic() - started < 0.5
        assert cc.polls(guid) == 2
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter


async def test_one_cancelled_waiter_leaves_the_others_polling(cc: FakeCloudController) -> None:
    """Cancelling one single-flight waiter ends only that caller."""
    set_testing(False)  # this test needs the intervals of its policies
    guid = cc.add_job(states=("PROCESSING",) * 8 + ("COMPLETE",))
    async with fast_client(cc) as cf:
        first = asyncio.ensure_future(cf.wait_for_job(guid, timeout=5))
        second = asyncio.ensure_future(cf.wait_for_jobs([guid], timeout=5))
        while cc.polls(guid) < 2:
            await asyncio.sleep(0.001)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        outcomes = await second
    assert outcomes[guid].ok
    assert cc.polls(guid) == 9


async def test_cancelling_a_bulk_wait_leaves_nothing_running(cc: FakeCloudController) -> None:
    """Cancelling midway ends every poll loop of the call and its requests."""
    guids = cc.add_jobs(300, states=("PROCESSING",))
    cc.latency = 0.002
    async with cc.client(max_in_flight=16) as cf:
        task = asyncio.ensure_future(cf.wait_for_jobs(guids, timeout=30))
        while len(cc.requests) < 100:
            await asyncio.sleep(0.001)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 0.2
        await asyncio.sleep(0.02)
        assert cf.stats.waiting == 0
        assert cf.stats.in_flight == 0
        count = len(cc.requests)
        await asyncio.sleep(0.05)
        assert len(cc.requests) == count


async def test_on_update_counts_states_across_a_bulk_wait(cc: FakeCloudController) -> None:
    """The bulk on_update sees every change of every job (for progress displays)."""
    guids = cc.add_jobs(20, states=("PROCESSING", "POLLING", "COMPLETE"))
    seen: list[tuple[str, str]] = []
    async with cc.client() as cf:
        await cf.wait_for_jobs(
            guids, timeout=5, on_update=lambda j: seen.append((j.guid, j.state))
        )
    assert len(seen) == 60
    assert {state for _, state in seen} == {"PROCESSING", "POLLING", "COMPLETE"}


async def test_rate_limited_budget_is_paced_without_429(cc: FakeCloudController) -> None:
    """With a budget too small for naive polling, all jobs complete and no 429 comes back."""
    set_testing(False)  # this test needs the intervals of its policies
    async with FakeCloudController(rate_limit=RateLimit(limit=40, window=1.0)) as limited:
        guids = [
            limited.add_job(timeline=((0.0, "PROCESSING"), (0.6, "COMPLETE"))) for _ in range(25)
        ]
        async with fast_client(limited) as cf:
            started = time.monotonic()
            outcomes = await cf.wait_for_jobs(guids, timeout=20)
            elapsed = time.monotonic() - started
            stats = cf.stats
    assert all(outcome.ok for outcome in outcomes.values())
    assert limited.rate_limited_count == 0
    assert stats.by_status.get(429) is None
    # Naive polling at 10-50 ms would need several hundred requests in the first second.
    assert len(limited.requests) < 40 * (elapsed + 1.5)
    assert elapsed < 6


async def test_without_rate_limit_headers_nothing_is_paced(cc: FakeCloudController) -> None:
    """An API that sends no rate-limit headers is polled on the plain schedule."""
    set_testing(False)  # this test needs the intervals of its policies
    guids = cc.add_jobs(30, states=("PROCESSING",) * 3 + ("COMPLETE",))
    async with fast_client(cc) as cf:
        started = time.monotonic()
        await cf.wait_for_jobs(guids, timeout=5)
        assert time.monotonic() - started < 1.0
        assert cf.stats.rate_limit_paused_seconds == 0


async def test_stats_count_requests_retries_and_waiting(cc: FakeCloudController) -> None:
    """Client.stats tells requests by status, retries, and jobs waiting now."""
    guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
    cc.inject(guid, FakeResponse.router_502())
    async with cc.client() as cf:
        task = asyncio.ensure_future(cf.wait_for_job(guid, timeout=5))
        await asyncio.sleep(0)
        assert cf.stats.waiting == 1
        await task
        stats = cf.stats
    assert stats.by_status == {502: 1, 200: 2}
    assert stats.requests == 3
    assert stats.retries == 1
    assert stats.waiting == 0


async def test_leaving_early_gives_every_request_slot_back(cc: FakeCloudController) -> None:
    """Polls cancelled before their first step still free their slot: nothing hangs later."""
    quick = cc.add_job(states=("COMPLETE",))
    never = cc.add_job(states=("PROCESSING",))
    later = cc.add_job(states=("PROCESSING", "COMPLETE"))
    async with cc.client(max_in_flight=1) as cf:
        for _ in range(3):
            async with aclosing(cf.as_completed([quick, never], timeout=5)) as outcomes:
                async for _outcome in outcomes:
                    break
        assert (await cf.wait_for_job(later, timeout=2)).state == "COMPLETE"


async def test_failing_bulk_on_update_ends_the_call_with_its_error(
    cc: FakeCloudController,
) -> None:
    """The caller's callback error reaches the caller, and the call's polls stop."""
    guids = cc.add_jobs(5, states=("PROCESSING",))

    def boom(job: jobwatch.Job) -> None:
        raise RuntimeError("display broke")

    async with cc.client() as cf:
        with pytest.raises(RuntimeError, match="display broke"):
            await cf.wait_for_jobs(guids, timeout=5, on_update=boom)
        await asyncio.sleep(0.01)
        assert cf.stats.waiting == 0
        with pytest.raises(RuntimeError, match="display broke"):
            async for _ in cf.as_completed(guids, timeout=5, on_update=boom):
                pass
        await asyncio.sleep(0.01)
        assert cf.stats.waiting == 0


async def test_an_async_bulk_on_update_is_awaited_in_the_callers_task(
    cc: FakeCloudController,
) -> None:
    """One contract for every call: an async on_update works, awaited in the caller's task."""
    guids = cc.add_jobs(10, states=("PROCESSING", "COMPLETE"))
    seen: list[tuple[str, str]] = []
    tasks: set[asyncio.Task[object] | None] = set()

    async def show(job: jobwatch.Job) -> None:
        tasks.add(asyncio.current_task())
        await asyncio.sleep(0)  # really suspends: the scheduler polls on meanwhile
        seen.append((job.guid, job.state))

    async with cc.client() as cf:
        caller = asyncio.current_task()
        outcomes = await cf.wait_for_jobs(guids, timeout=5, on_update=show)
        assert all(outcome.ok for outcome in outcomes.values())
        assert len(seen) == 20
        assert tasks == {caller}
        seen.clear()
        order: list[str] = []
        async for outcome in cf.as_completed(guids, timeout=5, on_update=show):
            # Every change of a job is handed over before its outcome.
            assert (outcome.guid, "COMPLETE") in seen
            order.append(outcome.guid)
        assert sorted(order) == sorted(guids)


async def test_cancelled_waits_do_not_keep_their_jobs_in_the_heap(
    cc: FakeCloudController,
) -> None:
    """After a big wait is cancelled, its jobs are not held until their next poll time."""
    set_testing(False)  # this test needs the intervals of its policies
    guids = cc.add_jobs(3000, states=("PROCESSING",))
    slow = jobwatch.PollPolicy(initial=3600, maximum=3600)
    async with fast_client(cc, poll=slow, max_in_flight=64) as cf:
        task = asyncio.ensure_future(cf.wait_for_jobs(guids, timeout=None))
        while cf.stats.requests < len(guids):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        heap = cf._scheduler._heap
        assert all(poll.last is None for _, _, poll in heap)  # let go of at once
        await asyncio.sleep(0.01)
        assert heap == []  # and swept, with the dispatcher gone, once nothing waits
        assert cf._scheduler._dispatcher is None
