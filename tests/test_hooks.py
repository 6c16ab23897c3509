"""Instrumentation hooks over loopback: polls, retries, waits, outages, pauses, raising hooks."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from contextlib import aclosing

import pytest

import jobwatch
from jobwatch import (
    Hook,
    OutageBegan,
    OutageEnded,
    Polled,
    RateLimitPaused,
    RetryScheduled,
    WaitEnded,
    WaitStarted,
)
from jobwatch.testing import FakeCloudController, FakeResponse, Outage, set_testing

from .helpers import FAST_RETRY, fast_client


class Recorder(Hook):
    """Keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def of(self, kind: type[object]) -> list[object]:
        return [event for event in self.events if isinstance(event, kind)]

    def polled(self, event: Polled, /) -> None:
        self.events.append(event)

    def retry_scheduled(self, event: RetryScheduled, /) -> None:
        self.events.append(event)

    def wait_started(self, event: WaitStarted, /) -> None:
        self.events.append(event)

    def wait_ended(self, event: WaitEnded, /) -> None:
        self.events.append(event)

    def outage_began(self, event: OutageBegan, /) -> None:
        self.events.append(event)

    def outage_ended(self, event: OutageEnded, /) -> None:
        self.events.append(event)

    def rate_limit_paused(self, event: RateLimitPaused, /) -> None:
        self.events.append(event)


def polls(recorder: Recorder) -> list[Polled]:
    return [e for e in recorder.events if isinstance(e, Polled)]


def ends(recorder: Recorder) -> list[WaitEnded]:
    return [e for e in recorder.events if isinstance(e, WaitEnded)]


def starts(recorder: Recorder) -> list[WaitStarted]:
    return [e for e in recorder.events if isinstance(e, WaitStarted)]


async def test_no_hook_means_no_emitter(cc: FakeCloudController) -> None:
    """Without hooks the scheduler holds None: the poll path tests one falsy attribute."""
    async with fast_client(cc) as cf:
        assert cf.hooks == ()
        assert cf._scheduler.hooks is None
        assert cf._scheduler.gate.hooks is None


async def test_hooks_must_be_a_sequence(cc: FakeCloudController) -> None:
    """A single hook passed bare is refused with a clear TypeError."""
    with pytest.raises(TypeError, match="sequence of hooks"):
        jobwatch.Client(cc.url, hooks=Recorder())  # type: ignore[arg-type]


async def test_a_wait_reports_each_poll_then_its_end(cc: FakeCloudController) -> None:
    """Each poll is reported with status, state, attempt and request id; then the wait's end."""
    guid = cc.add_job(states=("PROCESSING", "PROCESSING", "COMPLETE"), operation="app.delete")
    recorder = Recorder()
    async with fast_client(cc, hooks=[recorder]) as cf:
        job = await cf.wait_for_job(guid, timeout=5)
    seen = polls(recorder)
    assert [p.state for p in seen] == ["PROCESSING", "PROCESSING", "COMPLETE"]
    assert all(p.status == 200 and p.attempt == 1 and p.error is None for p in seen)
    assert all(p.operation == "app.delete" and p.request_id for p in seen)
    assert all(0 < p.seconds < 5 and p.api_url == cf.api_url and p.guid == guid for p in seen)
    # Only the answer that saw the job turn terminal has a detection delay (whole seconds
    # on the server's clock: within a second or two on loopback).
    assert [p.detection_delay is not None for p in seen] == [False, False, True]
    assert seen[-1].detection_delay is not None
    assert 0 <= seen[-1].detection_delay < 3
    (start,) = starts(recorder)
    (end,) = ends(recorder)
    assert recorder.events[0] is start
    assert recorder.events[-1] is end
    assert (start.call, start.guid, start.timeout) == ("wait_for_job", guid, 5)
    assert (end.wait_id, end.call, end.guid) == (start.wait_id, "wait_for_job", guid)
    assert end.job == job
    assert (end.outcome, end.state, end.operation, end.polls) == (
        "ok",
        "COMPLETE",
        "app.delete",
        3,
    )
    assert end.error is None
    assert 0 < end.seconds < 5


async def test_a_retry_is_reported_with_attempt_wait_and_error(cc: FakeCloudController) -> None:
    """A router 502 is a failed poll (status 502, attempt 1), a retry, then attempt 2 answers."""
    guid = cc.add_job(states=("COMPLETE",))
    cc.inject(guid, FakeResponse.router_502())
    recorder = Recorder()
    async with fast_client(cc, hooks=[recorder]) as cf:
        await cf.wait_for_job(guid, timeout=5)
    failed, answered = polls(recorder)
    assert (failed.status, failed.attempt, failed.job, failed.operation) == (502, 1, None, None)
    assert isinstance(failed.error, jobwatch.BadGateway)
    assert failed.detection_delay is None
    assert (answered.status, answered.attempt, answered.state) == (200, 2, "COMPLETE")
    (retry,) = recorder.of(RetryScheduled)
    assert isinstance(retry, RetryScheduled)
    assert (retry.guid, retry.attempt, retry.error) == (guid, 1, failed.error)
    assert 0 < retry.wait <= FAST_RETRY.maximum * 2
    order = [type(e).__name__ for e in recorder.events]
    assert order == ["WaitStarted", "Polled", "RetryScheduled", "Polled", "WaitEnded"]
    (end,) = ends(recorder)
    assert end.polls == 2


async def test_every_way_of_waiting_ends_once_per_waiter(cc: FakeCloudController) -> None:
    """Seven calls on one job share one poll loop: polls reported once, each wait ended once."""
    guid = cc.add_job(states=("PROCESSING",) * 3 + ("COMPLETE",))
    recorder = Recorder()
    updates: list[str] = []

    async def watch(cf: jobwatch.Client) -> None:
        async for _ in cf.watch_job(guid, timeout=5):
            pass

    async def stream(cf: jobwatch.Client) -> None:
        async for _ in cf.as_completed([guid], timeout=5):
            pass

    async with fast_client(cc, hooks=[recorder]) as cf:
        await asyncio.gather(
            cf.wait_for_job(guid, timeout=5),
            cf.wait_for_job(guid, timeout=5, on_update=lambda job: updates.append(job.state)),
            watch(cf),
            cf.wait_for_jobs([guid, guid], timeout=5),
            stream(cf),
            cf.get_job(guid),
            cf.get_jobs([guid]),
        )
    assert len(polls(recorder)) == cc.polls(guid)
    started = {s.wait_id: s.call for s in starts(recorder)}
    ended = {e.wait_id: e.call for e in ends(recorder)}
    assert len(ends(recorder)) == len(started) == 7
    assert ended == started
    assert sorted(started.values()) == sorted(
        [
            "wait_for_job",
            "wait_for_job",
            "watch_job",
            "wait_for_jobs",
            "as_completed",
            "get_job",
            "get_jobs",
        ]
    )
    assert all(e.outcome == "ok" for e in ends(recorder))
    checks = [e for e in ends(recorder) if e.call in ("get_job", "get_jobs")]
    assert all(e.state == "PROCESSING" for e in checks)
    waits = [e for e in ends(recorder) if e.call not in ("get_job", "get_jobs")]
    assert all(e.state == "COMPLETE" and e.polls >= 1 for e in waits)


async def test_failed_timed_out_and_cancelled_waits_say_so(cc: FakeCloudController) -> None:
    """FAILED ends `failed` with JobFailed, a deadline `timeout`, a cancelled wait `cancelled`."""
    failed = cc.add_job(states=("PROCESSING", "FAILED"))
    slow = cc.add_job(states=("PROCESSING",))
    recorder = Recorder()
    async with fast_client(cc, hooks=[recorder]) as cf:
        with pytest.raises(jobwatch.JobFailed):
            await cf.wait_for_job(failed, timeout=5)
        with pytest.raises(jobwatch.JobTimeout):
            await cf.wait_for_job(slow, timeout=0.05)
        task = asyncio.create_task(cf.wait_for_job(slow, timeout=5))
        await asyncio.sleep(0.03)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        outcomes = await cf.wait_for_jobs([failed, slow], timeout=0.05)
    assert isinstance(outcomes[slow].error, jobwatch.JobTimeout)
    got = [(e.call, e.guid, e.outcome, e.state) for e in ends(recorder)]
    assert got[:3] == [
        ("wait_for_job", failed, "failed", "FAILED"),
        ("wait_for_job", slow, "timeout", "PROCESSING"),
        ("wait_for_job", slow, "cancelled", "PROCESSING"),
    ]
    assert sorted(got[3:]) == sorted(
        [
            ("wait_for_jobs", failed, "failed", "FAILED"),
            ("wait_for_jobs", slow, "timeout", "PROCESSING"),
        ]
    )
    first = ends(recorder)[0]
    assert isinstance(first.error, jobwatch.JobFailed)
    assert isinstance(ends(recorder)[2].error, asyncio.CancelledError)
    assert len(starts(recorder)) == len(ends(recorder)) == 5


async def test_leaving_a_stream_or_a_watch_early_ends_the_rest_cancelled(
    cc: FakeCloudController,
) -> None:
    """Jobs still going when the caller stops iterating end once, as `cancelled`."""
    done = cc.add_job(states=("COMPLETE",))
    slow = cc.add_job(states=("PROCESSING",))
    recorder = Recorder()
    async with fast_client(cc, hooks=[recorder]) as cf:
        async with aclosing(cf.as_completed([done, slow], timeout=5)) as outcomes:
            async for outcome in outcomes:
                assert outcome.guid == done
                break
        async with aclosing(cf.watch_job(slow, timeout=5)) as jobs:
            async for job in jobs:
                assert job.state == "PROCESSING"
                break
    got = [(e.call, e.guid, e.outcome) for e in ends(recorder)]
    assert got == [
        ("as_completed", done, "ok"),
        ("as_completed", slow, "cancelled"),
        ("watch_job", slow, "cancelled"),
    ]


async def test_an_outage_is_reported_once_when_it_counts_and_when_it_ends(
    cc: FakeCloudController,
) -> None:
    """The gate reports the outage once it outlives a probe, and its end on the first answer."""
    guids = cc.add_jobs(4, timeline=((0.0, "PROCESSING"), (0.5, "COMPLETE")))
    recorder = Recorder()
    async with fast_client(cc, hooks=[recorder]) as cf:
        cc.schedule_outage(Outage.ROUTER_503, 0.3, start=0.05)
        outcomes = await cf.wait_for_jobs(guids, timeout=10)
        stats = cf.stats
    assert all(outcome.ok for outcome in outcomes.values())
    (began,) = recorder.of(OutageBegan)
    (ended,) = recorder.of(OutageEnded)
    assert isinstance(began, OutageBegan)
    assert isinstance(ended, OutageEnded)
    assert isinstance(began.error, jobwatch.ServiceUnavailable)
    assert began.since == ended.since
    assert 0 < began.seconds < ended.seconds
    assert 0.2 < ended.seconds < 2
    assert recorder.events.index(began) < recorder.events.index(ended)
    assert stats.outages == 1
    assert stats.outage_seconds == pytest.approx(ended.seconds)
    assert recorder.of(RetryScheduled)
    assert {p.status for p in polls(recorder)} >= {200, 503}


async def test_a_rate_limit_pause_is_reported_with_its_seconds(cc: FakeCloudController) -> None:
    """A 429 pauses the client: the hook hears how long (test mode skips the sleeping)."""
    guid = cc.add_job(states=("COMPLETE",))
    cc.inject(guid, FakeResponse.rate_limited(retry_after=7))
    recorder = Recorder()
    with set_testing():
        async with fast_client(cc, hooks=[recorder]) as cf:
            await cf.wait_for_job(guid, timeout=5)
            paused = cf.stats.rate_limit_paused_seconds
    (pause,) = recorder.of(RateLimitPaused)
    assert isinstance(pause, RateLimitPaused)
    assert isinstance(pause.error, jobwatch.RateLimited)
    assert pause.guid == guid
    assert pause.seconds == pytest.approx(paused)
    assert 6 <= pause.seconds <= 8
    assert polls(recorder)[0].status == 429


class Raising(Hook):
    """Every method raises."""

    def __init__(self) -> None:
        self.calls = 0

    def _boom(self) -> None:
        self.calls += 1
        raise RuntimeError("hook bug")

    def polled(self, event: Polled, /) -> None:
        self._boom()

    def retry_scheduled(self, event: RetryScheduled, /) -> None:
        self._boom()

    def wait_started(self, event: WaitStarted, /) -> None:
        self._boom()

    def wait_ended(self, event: WaitEnded, /) -> None:
        self._boom()


async def test_a_raising_hook_is_logged_once_and_polling_carries_on(
    cc: FakeCloudController, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook's error never reaches the wait; one ERROR per event kind, the rest at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="jobwatch")
    guids = cc.add_jobs(3, states=("PROCESSING", "PROCESSING", "COMPLETE"))
    cc.inject(guids[0], FakeResponse.router_502())
    raising, recorder = Raising(), Recorder()
    async with fast_client(cc, hooks=[raising, recorder]) as cf:
        outcomes = await cf.wait_for_jobs(guids, timeout=5)
        job = await cf.wait_for_job(guids[1], timeout=5)
    assert all(outcome.ok for outcome in outcomes.values())
    assert job.state == "COMPLETE"
    assert len(ends(recorder)) == 4  # the hook after the raising one heard everything
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert sorted(r.args[1] for r in errors) == [  # type: ignore[index]
        "polled",
        "retry_scheduled",
        "wait_ended",
        "wait_started",
    ]
    assert all(r.exc_info and "hook bug" in str(r.exc_info[1]) for r in errors)
    later = [r for r in caplog.records if r.levelno == logging.DEBUG and "raised in" in r.message]
    assert len(later) == raising.calls - 4 > 0


class EndsOnly:
    """A duck-typed hook, not a `Hook` subclass, with one method only."""

    def __init__(self) -> None:
        self.ended: list[WaitEnded] = []

    def wait_ended(self, event: WaitEnded, /) -> None:
        self.ended.append(event)


class StartsOnly(Hook):
    """A `Hook` subclass overriding one method: the others are never called."""

    def __init__(self) -> None:
        self.started: list[WaitStarted] = []

    def wait_started(self, event: WaitStarted, /) -> None:
        self.started.append(event)


async def test_a_hook_needs_only_the_methods_it_uses(cc: FakeCloudController) -> None:
    """Missing methods and `Hook`'s no-ops are skipped when the client is built."""
    guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
    ends_only, starts_only = EndsOnly(), StartsOnly()
    async with fast_client(cc, hooks=[ends_only, starts_only]) as cf:  # type: ignore[list-item]
        await cf.wait_for_job(guid, timeout=5)
        emitter = cf._scheduler.hooks
        assert emitter is not None
        assert emitter._calls["polled"] == ()
    assert [e.outcome for e in ends_only.ended] == ["ok"]
    assert [e.call for e in starts_only.started] == ["wait_for_job"]
    with pytest.raises(TypeError, match="not callable"):
        broken = EndsOnly()
        broken.wait_ended = 3  # type: ignore[assignment,method-assign]
        jobwatch.Client(cc.url, hooks=[broken])  # type: ignore[list-item]


def test_jobwatch_imports_without_opentelemetry() -> None:
    """`import jobwatch` needs no OpenTelemetry; `jobwatch.otel` says which extra it needs."""
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if it were not installed\n"
        "import jobwatch, jobwatch.testing\n"
        "assert jobwatch.Hook\n"
        "try:\n"
        "    import jobwatch.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert "pip install 'jobwatch[otel]'" in done.stdout


async def test_a_wait_ended_by_an_error_or_a_closed_client_says_error(
    cc: FakeCloudController,
) -> None:
    """NotFound ends the wait as `error`; so does a client closed under a running wait."""
    slow = cc.add_job(states=("PROCESSING",))
    recorder = Recorder()
    cf = fast_client(cc, hooks=[recorder])
    with pytest.raises(jobwatch.NotFound):
        await cf.wait_for_job("no-such-job", timeout=5)
    task = asyncio.create_task(cf.wait_for_job(slow, timeout=5))
    await asyncio.sleep(0.03)
    await cf.aclose()
    with pytest.raises(jobwatch.ClientClosed):
        await task
    missing, closed = ends(recorder)
    assert (missing.outcome, missing.job, missing.polls, missing.operation) == (
        "error",
        None,
        1,
        None,
    )
    assert isinstance(missing.error, jobwatch.NotFound)
    assert (closed.outcome, closed.state) == ("error", "PROCESSING")
    assert isinstance(closed.error, jobwatch.ClientClosed)
    assert StartsOnly().polled(polls(recorder)[0]) is None  # the protocol's defaults do nothing
