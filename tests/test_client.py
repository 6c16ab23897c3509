"""The single-job poller over real HTTP: states, errors, retries, deadlines, references."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

import jobwatch
from jobwatch import JobState
from jobwatch.testing import FakeCloudController, FakeResponse, Fault, set_testing

from .helpers import AUTH, TOKEN, fast_client

# Test mode: clients keep the default policies and sleep through none of their
# intervals. The tests of the waits a server asks for turn it off.
pytestmark = pytest.mark.usefixtures("testing_mode")


@pytest.fixture
async def cf(cc: FakeCloudController) -> AsyncIterator[jobwatch.Client]:
    async with cc.client() as client:
        yield client


async def test_processing_then_complete(cc: FakeCloudController, cf: jobwatch.Client) -> None:
    """A job is polled until COMPLETE, which is returned."""
    guid = cc.add_job(states=("PROCESSING", "PROCESSING", "COMPLETE"))
    job = await cf.wait_for_job(guid, timeout=5)
    assert job.state is JobState.COMPLETE
    assert job.guid == guid
    assert cc.polls(guid) == 3


async def test_polling_state_is_not_terminal(cc: FakeCloudController, cf: jobwatch.Client) -> None:
    """POLLING (a broker at work) keeps the wait going."""
    guid = cc.add_job(states=("POLLING", "POLLING", "POLLING", "COMPLETE"))
    assert (await cf.wait_for_job(guid, timeout=5)).state == "COMPLETE"
    assert cc.polls(guid) == 4


async def test_unknown_state_keeps_polling(
    cc: FakeCloudController, cf: jobwatch.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A state from a future controller is not terminal, and is logged once as a warning."""
    guid = cc.add_job(states=("CANCELING", "CANCELING", "CANCELING", "COMPLETE"))
    with caplog.at_level(logging.WARNING, logger="jobwatch"):
        assert (await cf.wait_for_job(guid, timeout=5)).state == "COMPLETE"
    unknown = [r for r in caplog.records if "CANCELING" in r.getMessage()]
    assert len(unknown) == 1


@pytest.mark.parametrize(
    "errors",
    [
        [{"code": 10009, "title": "CF-UnableToPerform", "detail": "broker said no"}],
        [],
        None,
    ],
    ids=["with-errors", "empty-errors", "null-errors"],
)
async def test_failed_job_raises_job_failed(
    cc: FakeCloudController, cf: jobwatch.Client, errors: list[dict[str, object]] | None
) -> None:
    """FAILED raises JobFailed carrying the job and its errors, even when they are empty."""
    guid = cc.add_job(states=("PROCESSING", "FAILED"), errors=errors, operation="app.delete")
    with pytest.raises(jobwatch.JobFailed) as caught:
        await cf.wait_for_job(guid, timeout=5)
    assert caught.value.job.state == "FAILED"
    assert len(caught.value.errors) == len(errors or [])
    assert guid in str(caught.value)


async def test_get_job_returns_current_state_without_waiting(
    cc: FakeCloudController, cf: jobwatch.Client
) -> None:
    """get_job is one logical GET; a FAILED job is returned, not raised."""
    guid = cc.add_job(states=("FAILED",), warnings=("disk is slow",))
    job = await cf.get_job(guid)
    assert job.state == "FAILED"
    assert job.warnings[0].detail == "disk is slow"
    assert cc.polls(guid) == 1


async def test_location_url_is_accepted(cc: FakeCloudController, cf: jobwatch.Client) -> None:
    """The Location header of a 202 works like a guid."""
    guid = cc.add_job(states=("COMPLETE",))
    assert (await cf.wait_for_job(cc.job_url(guid), timeout=5)).guid == guid


@pytest.mark.parametrize(
    "reference",
    [
        "",
        "..",
        "a/b",
        "a b",
        "abc?x=1",
        "abc#f",
        "https://evil.example.com/v3/jobs/abc",
        "http://127.0.0.2:1/v3/jobs/abc",
    ],
)
async def test_bad_references_are_refused_before_any_request(
    cc: FakeCloudController, cf: jobwatch.Client, reference: str
) -> None:
    """Invalid guids and foreign URLs raise InvalidJobReference and send nothing."""
    for call in (cf.get_job, cf.wait_for_job):
        with pytest.raises(jobwatch.InvalidJobReference):
            await call(reference)
    with pytest.raises(jobwatch.InvalidJobReference):
        await cf.wait_for_jobs(["good-guid", reference])
    with pytest.raises(jobwatch.InvalidJobReference):
        cf.watch_job(reference)
    assert cc.requests == []


@pytest.mark.parametrize(
    ("response", "cls"),
    [
        (FakeResponse.error(400), jobwatch.BadRequest),
        (FakeResponse.error(403), jobwatch.Forbidden),
        (FakeResponse.error(404), jobwatch.NotFound),
        (FakeResponse.error(409), jobwatch.Conflict),
        (FakeResponse.error(422), jobwatch.UnprocessableEntity),
    ],
)
async def test_permanent_errors_raise_at_once(
    cc: FakeCloudController,
    cf: jobwatch.Client,
    response: FakeResponse,
    cls: type[jobwatch.ApiError],
) -> None:
    """4xx answers are not retried: their class is raised after one request."""
    guid = cc.add_job()
    cc.inject(guid, response)
    with pytest.raises(cls) as caught:
        await cf.wait_for_job(guid, timeout=5)
    assert caught.value.status == response.status
    assert caught.value.errors[0].title.startswith("CF-")
    assert caught.value.request_id
    assert cc.polls(guid) == 1


@pytest.mark.parametrize(
    ("response", "cls"),
    [
        (FakeResponse.error(500), jobwatch.InternalServerError),
        (FakeResponse.router_502(), jobwatch.BadGateway),
        (FakeResponse.bare_502(), jobwatch.BadGateway),
        (FakeResponse.maintenance_503(), jobwatch.ServiceUnavailable),
        (FakeResponse.error(503), jobwatch.ServiceUnavailable),
        (FakeResponse.error(504), jobwatch.ApiError),
    ],
    ids=["500", "502-text", "502-bare", "503-html", "503-json", "504"],
)
async def test_transient_errors_are_retried_then_raised(
    cc: FakeCloudController,
    cf: jobwatch.Client,
    response: FakeResponse,
    cls: type[jobwatch.ApiError],
) -> None:
    """5xx answers are retried: a wait rides through any number, a status check `attempts`."""
    cured = cc.add_job(states=("COMPLETE",))
    cc.inject(cured, response)
    assert (await cf.wait_for_job(cured, timeout=5)).state == "COMPLETE"
    assert cc.polls(cured) == 2

    attempts = cf.retry_policy.attempts
    outlasting = cc.add_job(states=("COMPLETE",))
    cc.inject(outlasting, *[response] * (attempts * 2))
    assert (await cf.wait_for_job(outlasting, timeout=5)).state == "COMPLETE"
    assert cc.polls(outlasting) == attempts * 2 + 1

    broken = cc.add_job(states=("COMPLETE",))
    cc.inject(broken, *[response] * attempts)
    with pytest.raises(cls) as caught:
        await cf.get_job(broken, timeout=5)
    assert type(caught.value) is cls
    assert cc.polls(broken) == attempts


async def test_bare_502_keeps_its_details(cc: FakeCloudController, cf: jobwatch.Client) -> None:
    """A bare {code, title, detail} 502 body is parsed; router text keeps an excerpt."""
    guid = cc.add_job()
    cc.inject(guid, *[FakeResponse.bare_502()] * cf.retry_policy.attempts)
    with pytest.raises(jobwatch.BadGateway) as caught:
        await cf.get_job(guid)
    assert caught.value.errors
    text = cc.add_job()
    cc.inject(text, *[FakeResponse.router_502()] * cf.retry_policy.attempts)
    with pytest.raises(jobwatch.BadGateway, match="Registered endpoint failed"):
        await cf.get_job(text)


async def test_retry_after_is_honoured(cc: FakeCloudController) -> None:
    """A 429 with Retry-After waits that long before the next request."""
    set_testing(False)  # this test needs the waits the server asks for
    guid = cc.add_job(states=("COMPLETE",))
    cc.inject(guid, FakeResponse.rate_limited(retry_after=1))
    async with fast_client(cc) as cf:
        started = time.monotonic()
        job = await cf.wait_for_job(guid, timeout=5)
        waited = time.monotonic() - started
        assert cf.stats.rate_limit_paused_seconds >= 0.9
    assert job.state == "COMPLETE"
    assert 0.95 <= waited < 1.5


async def test_rate_limit_pauses_the_whole_client(cc: FakeCloudController) -> None:
    """After a 429, no other job of the client is polled until the pause ends."""
    set_testing(False)  # this test needs the waits the server asks for
    limited = cc.add_job(states=("COMPLETE",))
    other = cc.add_job(states=("PROCESSING",) * 3 + ("COMPLETE",))
    cc.inject(limited, FakeResponse.rate_limited(retry_after=1))
    async with fast_client(cc) as cf:
        first = asyncio.ensure_future(cf.wait_for_job(limited, timeout=5))
        while not cc.requests:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        paused_at = time.monotonic()
        await cf.wait_for_job(other, timeout=5)
        await first
    other_times = [r.time for r in cc.requests if r.guid == other]
    assert min(other_times) >= paused_at + 0.8


async def test_server_wait_past_the_deadline_raises_at_once(cc: FakeCloudController) -> None:
    """If Retry-After would end after the deadline, the error comes now, not at the deadline."""
    set_testing(False)  # this test needs the waits the server asks for
    guid = cc.add_job()
    cc.inject(guid, FakeResponse.rate_limited(retry_after=30))
    async with fast_client(cc) as cf:
        started = time.monotonic()
        with pytest.raises(jobwatch.RateLimited) as caught:
            await cf.wait_for_job(guid, timeout=2)
    assert time.monotonic() - started < 0.5
    assert caught.value.retry_after == 30


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault.INVALID_JSON, "not JSON"),
        (Fault.WRONG_SHAPE, "expected a JSON object"),
        (Fault.HUGE_BODY, "more than"),
    ],
)
async def test_malformed_200_is_permanent(
    cc: FakeCloudController, cf: jobwatch.Client, fault: Fault, match: str
) -> None:
    """A 200 that is not a job is a MalformedResponse, raised without retrying."""
    guid = cc.add_job()
    cc.inject(guid, fault)
    with pytest.raises(jobwatch.MalformedResponse, match=match) as caught:
        await cf.wait_for_job(guid, timeout=5)
    assert caught.value.status == 200
    assert cc.polls(guid) == 1


async def test_deadline_carries_the_last_job_and_is_punctual(
    cc: FakeCloudController, cf: jobwatch.Client
) -> None:
    """JobTimeout comes at the deadline (not a poll later) with the last job seen."""
    guid = cc.add_job(states=("POLLING",))
    started = time.monotonic()
    with pytest.raises(jobwatch.JobTimeout) as caught:
        await cf.wait_for_job(guid, timeout=0.3)
    late = time.monotonic() - started - 0.3
    assert -0.005 <= late < 0.2
    assert caught.value.job is not None
    assert caught.value.job.state == "POLLING"
    assert caught.value.timeout == 0.3


async def test_deadline_holds_against_a_stalled_server(cc: FakeCloudController) -> None:
    """A server that never answers cannot hold the caller past its deadline."""
    guid = cc.add_job()
    cc.inject(guid, Fault.STALL)
    async with cc.client() as cf:
        started = time.monotonic()
        with pytest.raises(jobwatch.JobTimeout) as caught:
            await cf.wait_for_job(guid, timeout=0.3)
    assert time.monotonic() - started < 0.5
    assert caught.value.job is None


async def test_stalled_request_times_out_and_is_retried(cc: FakeCloudController) -> None:
    """A request that outlives request_timeout is a transient failure, then retried."""
    guid = cc.add_job(states=("COMPLETE",))
    cc.inject(guid, Fault.STALL)
    async with cc.client(request_timeout=0.1) as cf:
        assert (await cf.wait_for_job(guid, timeout=5)).state == "COMPLETE"
        assert cf.stats.no_answer == 1


async def test_on_update_sees_each_change_sync_and_async(
    cc: FakeCloudController, cf: jobwatch.Client
) -> None:
    """on_update is called once per observed change, sync or async."""
    guid = cc.add_job(states=("PROCESSING", "PROCESSING", "POLLING", "POLLING", "COMPLETE"))
    seen: list[str] = []
    await cf.wait_for_job(guid, timeout=5, on_update=lambda job: seen.append(job.state))
    assert seen == ["PROCESSING", "POLLING", "COMPLETE"]

    other = cc.add_job(states=("PROCESSING", "COMPLETE"))
    seen_async: list[str] = []

    async def record(job: jobwatch.Job) -> None:
        await asyncio.sleep(0)
        seen_async.append(job.state)

    await cf.wait_for_job(other, timeout=5, on_update=record)
    assert seen_async == ["PROCESSING", "COMPLETE"]


async def test_failing_on_update_propagates_and_stops_the_poll(
    cc: FakeCloudController, cf: jobwatch.Client
) -> None:
    """An exception in the callback reaches the caller, and polling stops."""
    guid = cc.add_job(states=("PROCESSING",))

    def boom(job: jobwatch.Job) -> None:
        raise RuntimeError("callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        await cf.wait_for_job(guid, timeout=5, on_update=boom)
    # The request in flight when the wait ended may still reach the server; no other.
    polls = cc.polls(guid) + 1
    await asyncio.sleep(0.05)
    assert cc.polls(guid) <= polls
    await asyncio.sleep(0.05)
    assert cc.polls(guid) <= polls


async def test_watch_yields_each_change_and_the_failed_end(
    cc: FakeCloudController, cf: jobwatch.Client
) -> None:
    """watch_job yields every state change and ends after FAILED without raising."""
    guid = cc.add_job(states=("PROCESSING", "PROCESSING", "POLLING", "FAILED"))
    states = [job.state async for job in cf.watch_job(guid, timeout=5)]
    assert states == ["PROCESSING", "POLLING", "FAILED"]


async def test_watch_timeout_raises(cc: FakeCloudController, cf: jobwatch.Client) -> None:
    """A watch past its deadline raises JobTimeout after what it yielded."""
    guid = cc.add_job(states=("PROCESSING",))
    seen = []
    with pytest.raises(jobwatch.JobTimeout):
        async for job in cf.watch_job(guid, timeout=0.1):
            seen.append(job)
    assert [job.state for job in seen] == ["PROCESSING"]


async def test_session_passed_in_stays_open(cc: FakeCloudController) -> None:
    """A borrowed session is used and never closed by jobwatch."""
    guid = cc.add_job(states=("COMPLETE",))
    async with aiohttp.ClientSession() as session:
        async with cc.client(session=session) as cf:
            await cf.wait_for_job(guid, timeout=5)
        assert not session.closed
        async with session.get(cc.job_url(guid), headers=AUTH) as resp:
            assert resp.status == 200


async def test_token_never_shows(
    cc: FakeCloudController, caplog: pytest.LogCaptureFixture
) -> None:
    """The token is in no repr, str, exception or log line, at DEBUG either."""
    token = cc.token  # the one the client sends
    assert token
    guid = cc.add_job(states=("PROCESSING", "FAILED"))
    missing = "no-such-job"
    cc.inject(guid, FakeResponse.router_502())
    with caplog.at_level(logging.DEBUG):
        async with cc.client() as cf:
            texts = [repr(cf), str(cf), repr(cf.stats), repr(cf._transport), repr(cf._scheduler)]
            for call in (cf.wait_for_job(guid), cf.get_job(missing)):
                with pytest.raises(jobwatch.JobwatchError) as caught:
                    await call
                texts += [str(caught.value), repr(caught.value), repr(vars(caught.value))]
    texts += [record.getMessage() for record in caplog.records]
    assert any("attempt" in text for text in texts)
    assert not [text for text in texts if token in text]


async def test_wrong_token_is_unauthorized(cc: FakeCloudController) -> None:
    """A rejected static token is a 401 Unauthorized, raised at once."""
    guid = cc.add_job()
    async with cc.client(token="bearer wrong") as cf:
        with pytest.raises(jobwatch.Unauthorized) as caught:
            await cf.get_job(guid)
    assert caught.value.errors[0].code == 1000


async def test_token_provider_is_asked_again_after_401(cc: FakeCloudController) -> None:
    """A callable provider gets one chance to hand out a fresh token after a 401."""
    guid = cc.add_job(states=("COMPLETE",))
    tokens = iter(["stale", TOKEN])
    async with cc.client(token=lambda: next(tokens)) as cf:
        assert (await cf.get_job(guid)).state == "COMPLETE"
    assert [r.authorization for r in cc.requests] == ["bearer stale", f"bearer {TOKEN}"]


async def test_every_aclose_returns_once_the_client_is_closed(cc: FakeCloudController) -> None:
    """Two at once: the second waits for the first's closing (its own session closed too);
    one cancelled mid-way leaves the closing to finish for the others."""
    cf = cc.client()
    guid = cc.add_job(states=("PROCESSING",))
    assert (await cf.get_job(guid)).state == "PROCESSING"  # the session is open
    session = cf._transport._session
    assert session is not None
    assert not session.closed
    assert " open " in repr(cf)
    first = asyncio.create_task(cf.aclose())
    await asyncio.sleep(0)  # the first is closing, not done
    assert " closing " in repr(cf)
    first.cancel()
    await cf.aclose()
    assert session.closed
    assert " closed " in repr(cf)
    with pytest.raises(asyncio.CancelledError):
        await first
    await cf.aclose()  # and again: at once


async def test_closed_client_refuses_work(cc: FakeCloudController) -> None:
    """A closed client says so clearly instead of hanging or half-working."""
    cf = cc.client()
    await cf.aclose()
    for call in (
        cf.get_job("abc"),
        cf.wait_for_job("abc"),
        cf.get_jobs(["abc"]),
        cf.wait_for_jobs(["abc"]),
    ):
        with pytest.raises(jobwatch.ClientClosed, match="closed"):
            await call
    with pytest.raises(jobwatch.ClientClosed):
        cf.watch_job("abc")
    with pytest.raises(jobwatch.ClientClosed):
        async with cf:
            pass
    assert "closed" in repr(cf)
    assert cc.requests == []


async def test_bad_arguments_fail_before_any_request(cc: FakeCloudController) -> None:
    """Nonsense timeouts and limits are typed errors, raised before anything is sent."""
    with pytest.raises(ValueError, match="max_in_flight"):
        jobwatch.Client(cc.url, max_in_flight=0)
    with pytest.raises(TypeError):
        jobwatch.Client(cc.url, max_in_flight="8")  # type: ignore[arg-type]
    async with cc.client() as cf:
        for timeout in (0, -1, float("nan")):
            with pytest.raises(ValueError, match="timeout"):
                await cf.wait_for_job("abc", timeout=timeout)
        with pytest.raises(TypeError):
            await cf.wait_for_jobs("abc")
    assert cc.requests == []


async def test_module_functions_use_the_cf_login(
    cc: FakeCloudController, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a client, the module-level functions read $CF_HOME/.cf/config.json."""
    import json
    from pathlib import Path

    home = Path(str(tmp_path))
    (home / ".cf").mkdir()
    (home / ".cf" / "config.json").write_text(
        json.dumps({"ConfigVersion": 3, "Target": cc.url, "AccessToken": f"bearer {TOKEN}"})
    )
    monkeypatch.setenv("CF_HOME", str(home))
    guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
    assert (await jobwatch.get_job(guid)).state == "PROCESSING"
    assert (await jobwatch.wait_for_job(guid, timeout=5)).state == "COMPLETE"
    outcomes = await jobwatch.wait_for_jobs([guid], timeout=5)
    assert outcomes[guid].ok
    assert (await jobwatch.get_jobs([guid]))[guid].job is not None


async def test_missing_cf_login_is_a_config_error(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cf login: a ConfigError that says to run `cf login`."""
    monkeypatch.setenv("CF_HOME", str(tmp_path))
    with pytest.raises(jobwatch.ConfigError, match="cf login"):
        await jobwatch.wait_for_job("abc")


async def test_compressed_body_cannot_inflate_past_the_limit(
    cc: FakeCloudController, cf: jobwatch.Client
) -> None:
    """A small gzip body that inflates past 1 MiB is refused, not read whole."""
    import gzip

    guid = cc.add_job()
    bomb = gzip.compress(b'{"guid": "x", "state": "COMPLETE", "pad": "' + b" " * 4_000_000)
    cc.inject(guid, FakeResponse(body=bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(jobwatch.MalformedResponse, match="more than"):
        await cf.get_job(guid)


async def test_closing_the_client_ends_waits_with_client_closed(cc: FakeCloudController) -> None:
    """Waits still going when the client closes end with ClientClosed, not a hang."""
    guid, other = cc.add_jobs(2, states=("PROCESSING",))
    cf = cc.client()
    single = asyncio.ensure_future(cf.wait_for_job(guid, timeout=5))
    bulk = asyncio.ensure_future(cf.wait_for_jobs([guid, other], timeout=5))
    while cc.polls(guid) < 2:
        await asyncio.sleep(0.001)
    await cf.aclose()
    with pytest.raises(jobwatch.ClientClosed):
        await single
    outcomes = await bulk
    assert all(isinstance(o.error, jobwatch.ClientClosed) for o in outcomes.values())


async def test_failing_token_provider_is_a_retried_transport_error(
    cc: FakeCloudController,
) -> None:
    """A provider's own failure (say, its aiohttp call) is a TransportError, retried."""
    guid = cc.add_job(states=("COMPLETE",))
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise aiohttp.ClientConnectionError("UAA unreachable")
        return TOKEN

    async with cc.client(token=provider) as cf:
        assert (await cf.get_job(guid)).state == "COMPLETE"

    def broken() -> str:
        raise aiohttp.ClientConnectionError("UAA unreachable")

    async with cc.client(token=broken) as cf:
        with pytest.raises(jobwatch.TransportError, match="token provider failed") as caught:
            await cf.get_job(guid)
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


async def test_endless_retry_after_is_capped(cc: FakeCloudController) -> None:
    """`Retry-After: inf` from a broken server pauses for at most an hour, not for ever."""
    set_testing(False)  # this test needs the waits the server asks for
    from jobwatch._ratelimit import MAX_SERVER_WAIT

    guid = cc.add_job()
    cc.inject(guid, FakeResponse(status=429, body="slow down", headers={"Retry-After": "inf"}))
    async with fast_client(cc) as cf:
        with pytest.raises(jobwatch.RateLimited) as caught:
            await cf.wait_for_job(guid, timeout=5)
    assert caught.value.retry_after == MAX_SERVER_WAIT


def test_a_client_from_another_event_loop_is_refused_cleanly() -> None:
    """A second loop gets a clear RuntimeError and leaves the client as it was."""
    with asyncio.Runner() as first, asyncio.Runner() as second:
        cc = FakeCloudController(token=TOKEN)
        first.run(cc.start())
        guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
        cf = cc.client()
        try:
            assert first.run(cf.get_job(guid)).state == "PROCESSING"
            requests = len(cc.requests)
            with pytest.raises(RuntimeError, match="event loop"):
                second.run(cf.get_job(guid))
            with pytest.raises(RuntimeError, match="event loop"):
                second.run(cf.wait_for_jobs([guid]))
            assert len(cc.requests) == requests
            assert cf.stats.waiting == 0
            assert first.run(cf.wait_for_job(guid, timeout=5)).state == "COMPLETE"
        finally:
            first.run(cf.aclose())
            first.run(cc.aclose())


async def test_no_background_task_outlives_the_last_wait(cc: FakeCloudController) -> None:
    """The dispatcher ends when nothing waits, and a new wait starts it again."""
    guid = cc.add_job(states=("PROCESSING",))
    async with cc.client() as cf:
        wait = asyncio.ensure_future(cf.wait_for_job(guid, timeout=None))
        while cc.polls(guid) < 2:
            await asyncio.sleep(0.005)
        wait.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait
        await asyncio.sleep(0.01)
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert "jobwatch-dispatcher" not in names
        done = cc.add_job(states=("COMPLETE",))
        assert (await cf.wait_for_job(done, timeout=5)).state == "COMPLETE"
