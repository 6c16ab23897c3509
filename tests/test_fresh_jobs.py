"""Jobs handed over as their 202 response: the first GET waits for the first interval."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections import Counter
from collections.abc import Mapping

import aiohttp
import pytest

import jobwatch
from jobwatch import InvalidJobReference, PollPolicy
from jobwatch.testing import FakeCloudController, RateLimit, set_testing

from .helpers import AUTH, TOKEN

#: 0.3 s before the first GET of a fresh job, then 0.3, 0.6, ...: no jitter, to measure.
POLICY = PollPolicy(initial=0.3, maximum=1.2, multiplier=2.0, jitter=0.0)
#: What "at once" allows for: a loop turn and a loopback round trip on a busy machine.
AT_ONCE = 0.15
#: How early a timer may fire (the loop's clock resolution) and the clocks' rounding.
EARLY = 0.02


class Response:
    """The least a 202 response needs: a `headers` mapping (a plain dict here)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = dict(headers)
        self.status = 202


def accepted(cc: FakeCloudController, guid: str, *, age: float = 0.0) -> Response:
    """A 202 for `guid` as the fake would send it, `age` seconds ago by the server's clock."""
    date = email.utils.formatdate(cc.server_time() - age, usegmt=True)
    return Response({"Location": cc.job_url(guid), "Date": date})


def first_get(cc: FakeCloudController, guid: str) -> float:
    """Loop time (`time.monotonic()`) of the job's first GET."""
    return next(request.time for request in cc.requests if request.guid == guid)


def gets(cc: FakeCloudController, guid: str) -> list[float]:
    """Loop times of every GET of the job."""
    return [request.time for request in cc.requests if request.guid == guid]


async def test_a_fresh_202_is_first_polled_after_its_first_interval(
    cc: FakeCloudController,
) -> None:
    """A 202 just received: the first GET goes one first interval later, then the schedule."""
    guid = cc.add_job(states=("PROCESSING", "PROCESSING", "COMPLETE"))
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        job = await cf.wait_for_job(accepted(cc, guid), timeout=5)
    assert job.state == "COMPLETE"
    times = gets(cc, guid)
    assert times[0] - started >= POLICY.initial - EARLY
    # The wait before the first GET is no step of the schedule: 0.3 s again, then 0.6 s.
    assert 0.3 - EARLY <= times[1] - times[0] < 0.6 - EARLY
    assert times[2] - times[1] >= 0.6 - EARLY


async def test_an_old_202_is_polled_at_once(cc: FakeCloudController) -> None:
    """A 202 whose `Date` is long past: its first interval is over, the GET goes at once."""
    guid = cc.add_job(states=("COMPLETE",))
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        await cf.wait_for_job(accepted(cc, guid, age=60), timeout=5)
    assert first_get(cc, guid) - started < AT_ONCE


async def test_a_202_part_way_through_its_interval_waits_the_rest(
    cc: FakeCloudController,
) -> None:
    """A 202 dated 2 s ago with a 3 s first interval: the GET goes within about a second."""
    guid = cc.add_job(states=("COMPLETE",))
    policy = PollPolicy(initial=3.0, maximum=3.0, jitter=0.0)
    async with cc.client(poll=policy) as cf:
        started = time.monotonic()
        await cf.wait_for_job(accepted(cc, guid, age=2.0), timeout=5)
    # Dated to the whole second, so the job is 1 to 2 s old by the time it is handed over.
    assert 1.0 - EARLY <= first_get(cc, guid) - started <= 2.0 + AT_ONCE


@pytest.mark.parametrize("as_url", [False, True])
async def test_a_guid_or_url_string_is_polled_at_once(
    cc: FakeCloudController, as_url: bool
) -> None:
    """A string may name an old job: its first GET goes at once."""
    guid = cc.add_job(states=("COMPLETE",))
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        await cf.wait_for_job(cc.job_url(guid) if as_url else guid, timeout=5)
    assert first_get(cc, guid) - started < AT_ONCE


async def test_a_status_check_of_a_202_goes_at_once(cc: FakeCloudController) -> None:
    """`get_job` and `get_jobs` of a fresh 202 ask for the state now."""
    first, second = cc.add_job(), cc.add_job()
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        job = await cf.get_job(accepted(cc, first))
        outcomes = await cf.get_jobs([accepted(cc, second)])
    assert job.state == "PROCESSING"
    assert list(outcomes) == [second]
    assert max(first_get(cc, first), first_get(cc, second)) - started < AT_ONCE


async def test_a_202_without_a_date_counts_as_just_received(cc: FakeCloudController) -> None:
    """No `Date` header: the first GET waits the whole first interval from the hand-over."""
    guid = cc.add_job(states=("COMPLETE",))
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        await cf.wait_for_job(Response({"Location": cc.job_url(guid)}), timeout=5)
    assert first_get(cc, guid) - started >= POLICY.initial - EARLY


async def test_headers_of_a_plain_dict_are_read_case_insensitively(
    cc: FakeCloudController,
) -> None:
    """`location` and `date` in lower case, as HTTP/2 and some clients give them."""
    guid = cc.add_job(states=("COMPLETE",))
    old = email.utils.formatdate(cc.server_time() - 60, usegmt=True)
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        job = await cf.wait_for_job(Response({"location": cc.job_url(guid), "date": old}))
    assert job.guid == guid
    assert first_get(cc, guid) - started < AT_ONCE  # the date was read: an old job


@pytest.mark.parametrize(
    ("skew", "age", "waits"),
    [
        (-120.0, 0.0, True),  # the server 2 min behind: without the offset it looks old
        (120.0, 60.0, False),  # 2 min ahead: without the offset a minute-old job looks fresh
    ],
)
async def test_a_skewed_server_clock_is_read_through_the_learnt_offset(
    skew: float, age: float, waits: bool
) -> None:
    """The 202's `Date` is read against the server's clock, learnt from earlier answers."""
    async with FakeCloudController(clock_skew=skew) as cc:
        known, guid = cc.add_job(states=("COMPLETE",)), cc.add_job(states=("COMPLETE",))
        async with cc.client(poll=POLICY) as cf:
            await cf.get_job(known)  # the client learns the server's clock
            assert cf._transport.budget.clock_offset == pytest.approx(skew, abs=1.5)
            started = time.monotonic()
            await cf.wait_for_job(accepted(cc, guid, age=age), timeout=5)
        waited = first_get(cc, guid) - started
    if waits:
        assert waited >= POLICY.initial - EARLY
    else:
        assert waited < AT_ONCE


async def test_before_the_server_clock_is_known_this_machines_is_used() -> None:
    """No answer yet: a `Date` from a server 2 min behind reads as an old job, polled at once."""
    async with FakeCloudController(clock_skew=-120.0) as cc:
        guid = cc.add_job(states=("COMPLETE",))
        async with cc.client(poll=POLICY) as cf:
            started = time.monotonic()
            await cf.wait_for_job(accepted(cc, guid), timeout=5)
    assert first_get(cc, guid) - started < AT_ONCE


@pytest.mark.parametrize(
    "response",
    [
        Response({}),
        Response({"Date": "Wed, 02 Dec 2026 06:00:00 GMT"}),
        Response({"Location": ""}),
        Response({"Location": "https://elsewhere.example.org/v3/jobs/abc"}),
        Response({"Location": "{api}/v3/apps/abc"}),
        42,
        None,
    ],
    ids=["no-headers", "no-location", "empty", "foreign", "not-a-job", "int", "none"],
)
async def test_a_bad_202_is_refused_before_any_request(
    cc: FakeCloudController, response: object
) -> None:
    """No `Location`, a foreign or non-job one, or no headers: `InvalidJobReference` at once."""
    if isinstance(response, Response):  # a copy: the parameters are shared between runs
        response = Response({k: v.format(api=cc.url) for k, v in response.headers.items()})
    good = cc.add_job(states=("COMPLETE",))
    async with cc.client() as cf:
        with pytest.raises(InvalidJobReference) as refused:
            await cf.wait_for_job(response)  # type: ignore[arg-type]
        with pytest.raises(InvalidJobReference):
            await cf.wait_for_jobs([good, response])  # type: ignore[list-item]
        with pytest.raises(InvalidJobReference):
            cf.watch_job(response)  # type: ignore[arg-type]
        with pytest.raises(InvalidJobReference):
            await cf.get_job(response)  # type: ignore[arg-type]
    assert cc.requests == []
    assert isinstance(refused.value, ValueError)


async def test_a_202_without_location_names_its_status(cc: FakeCloudController) -> None:
    """The refusal says what came back, not the response's headers."""
    response = Response({"Set-Cookie": "session=secret"})
    response.status = 404
    async with cc.client() as cf:
        with pytest.raises(InvalidJobReference, match=r"status 404.*no Location") as refused:
            await cf.wait_for_job(response)
    assert "secret" not in str(refused.value)


@pytest.mark.usefixtures("testing_mode")
async def test_a_relative_location_names_the_clients_api(cc: FakeCloudController) -> None:
    """`Location: /v3/jobs/<guid>` is on the client's own origin."""
    guid = cc.add_job(states=("COMPLETE",))
    async with cc.client() as cf:
        job = await cf.wait_for_job(Response({"Location": f"/v3/jobs/{guid}"}))
    assert job.guid == guid


async def test_bulk_calls_take_202s_and_strings_keyed_by_guid(cc: FakeCloudController) -> None:
    """`wait_for_jobs` and `as_completed`: 202s wait their interval, strings go at once."""
    fresh, old = cc.add_job(states=("COMPLETE",)), cc.add_job(states=("COMPLETE",))
    streamed = cc.add_job(states=("COMPLETE",))
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        outcomes = await cf.wait_for_jobs([accepted(cc, fresh), old, accepted(cc, fresh)])
        assert list(outcomes) == [fresh, old]
        assert all(outcome.ok for outcome in outcomes.values())
        assert first_get(cc, old) - started < AT_ONCE
        assert first_get(cc, fresh) - started >= POLICY.initial - EARLY
        assert cc.polls(fresh) == 1  # duplicates: one poll loop
        started = time.monotonic()
        async for outcome in cf.as_completed([accepted(cc, streamed)]):
            assert outcome.guid == streamed
    assert first_get(cc, streamed) - started >= POLICY.initial - EARLY


async def test_watch_job_and_on_update_take_a_202(cc: FakeCloudController) -> None:
    """`watch_job` and `wait_for_job(on_update=...)`: the first GET waits, then each change."""
    watched = cc.add_job(states=("PROCESSING", "COMPLETE"))
    updated = cc.add_job(states=("PROCESSING", "COMPLETE"))
    seen: list[str] = []
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        states = [job.state async for job in cf.watch_job(accepted(cc, watched))]
        assert first_get(cc, watched) - started >= POLICY.initial - EARLY
        started = time.monotonic()
        await cf.wait_for_job(accepted(cc, updated), on_update=lambda job: seen.append(job.state))
        assert first_get(cc, updated) - started >= POLICY.initial - EARLY
    assert states == seen == ["PROCESSING", "COMPLETE"]


async def test_a_string_joining_a_fresh_wait_keeps_its_schedule(cc: FakeCloudController) -> None:
    """Single flight: a guid wait joining keeps the fresh schedule; a status check pulls it in."""
    guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
    async with cc.client(poll=POLICY) as cf:
        started = time.monotonic()
        fresh = asyncio.ensure_future(cf.wait_for_job(accepted(cc, guid), timeout=5))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(cf.wait_for_job(guid, timeout=5))
        await asyncio.sleep(0.05)
        assert cc.requests == []  # the string did not start a poll of its own
        await asyncio.gather(fresh, second)
        assert first_get(cc, guid) - started >= POLICY.initial - EARLY
        other = cc.add_job(states=("PROCESSING", "COMPLETE"))
        started = time.monotonic()
        waiting = asyncio.ensure_future(cf.wait_for_job(accepted(cc, other), timeout=5))
        await asyncio.sleep(0)
        check = await cf.get_job(other)
        assert check.state == "PROCESSING"
        assert first_get(cc, other) - started < AT_ONCE
        await waiting


async def test_testing_mode_sends_a_fresh_jobs_first_get_at_once(
    cc: FakeCloudController,
) -> None:
    """`set_testing()`: no first interval is slept through either."""
    guid = cc.add_job(states=("COMPLETE",))
    async with cc.client(poll=POLICY) as cf:
        with set_testing():
            started = time.monotonic()
            await cf.wait_for_job(accepted(cc, guid), timeout=5)
    assert first_get(cc, guid) - started < AT_ONCE


async def test_a_deadline_before_the_first_interval_times_out_without_a_get(
    cc: FakeCloudController,
) -> None:
    """The deadline holds as always: a wait shorter than the first interval sends nothing."""
    guid = cc.add_job(states=("COMPLETE",))
    async with cc.client(poll=PollPolicy(initial=1.0, jitter=0.0)) as cf:
        with pytest.raises(jobwatch.JobTimeout) as late:
            await cf.wait_for_job(accepted(cc, guid), timeout=0.1)
    assert late.value.job is None
    assert cc.polls(guid) == 0


async def test_a_real_aiohttp_202_is_taken_as_it_comes(cc: FakeCloudController) -> None:
    """`async with session.delete(url) as resp: await cf.wait_for_job(resp)`, over loopback."""
    guid = cc.accept("DELETE", "/v3/apps/my-app", timeline=[(0, "PROCESSING"), (0.1, "COMPLETE")])
    async with (
        aiohttp.ClientSession() as session,
        cc.client(poll=POLICY) as cf,
        session.delete(f"{cc.url}/v3/apps/my-app", headers=AUTH) as resp,
    ):
        assert resp.status == 202
        started = time.monotonic()
        job = await cf.wait_for_job(resp, timeout=5)
    assert job.guid == guid
    assert job.state == "COMPLETE"
    assert first_get(cc, guid) - started >= POLICY.initial - EARLY
    assert cc.polls(guid) == 1  # done before its first interval: found by the first GET


# -- the rate-limit share ----------------------------------------------------------------------


@pytest.mark.usefixtures("testing_mode")
async def test_stats_report_no_share_used_without_a_rate_limit(cc: FakeCloudController) -> None:
    """An API that reports no rate limit: `rate_limit_share_used` is None."""
    async with cc.client() as cf:
        await cf.get_job(cc.add_job(states=("COMPLETE",)))
        assert cf.stats.rate_limit_share_used is None


@pytest.mark.parametrize("share", [0.5, 0.8])
async def test_the_share_is_never_exceeded_in_any_window(share: float) -> None:
    """Counted per `X-RateLimit-Reset` the server sent: never more than `share` of the limit."""
    limit = RateLimit(20, 1.0, offset=0.0)
    resets: Counter[str] = Counter()

    async def on_request_end(
        session: aiohttp.ClientSession,
        context: object,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        resets[params.response.headers.get("X-RateLimit-Reset", "")] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    async with (
        FakeCloudController(rate_limit=limit) as cc,
        aiohttp.ClientSession(trace_configs=[trace]) as session,
    ):
        guids = cc.add_jobs(12, states=("PROCESSING", "COMPLETE"))
        policy = PollPolicy(initial=0.05, maximum=0.05, jitter=0.1)
        async with cc.client(
            session=session, poll=policy, max_in_flight=4, rate_limit_share=share
        ) as cf:
            assert cf.stats.rate_limit_share_used is None  # nothing reported yet
            outcomes = await cf.wait_for_jobs(guids, timeout=20)
            used = cf.stats.rate_limit_share_used
    assert all(outcome.ok for outcome in outcomes.values())
    assert cc.rate_limited_count == 0
    assert "" not in resets  # every answer carried the window's reset
    assert sum(resets.values()) == 24
    assert len(resets) >= 2  # more than one window
    assert max(resets.values()) <= limit.limit * share
    assert used is not None
    assert 0 < used <= share


def test_share_used_counts_this_clients_requests_in_the_window() -> None:
    """The budget's own count: reset when a window begins, whoever reported it."""
    from jobwatch._ratelimit import RateBudget

    budget = RateBudget(share=0.5)
    assert budget.share_used(0.0) is None
    for _ in range(3):
        budget.sent(0.0)
    epoch = time.time()
    date = email.utils.formatdate(epoch, usegmt=True)
    headers = {
        "Date": date,
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "7",
        "X-RateLimit-Reset": str(int(epoch) + 5),
    }
    budget.observe(headers, now=0.0, others=0)
    assert budget.share_used(0.0) == pytest.approx(0.3)
    budget.sent(1.0)
    budget.sent(1.0)
    assert budget.share_used(1.0) == pytest.approx(0.5)
    # A new window the client did not see begin: of its own, only the answering
    # request and the one still in flight are known to be in it.
    budget.observe(
        dict(headers, **{"X-RateLimit-Reset": str(int(epoch) + 200)}), now=1.0, others=1
    )
    assert budget.share_used(1.0) == pytest.approx(0.2)
    assert budget.share_used(300.0) == 0.0  # that window is over too
    budget.sent(300.0)
    assert budget.share_used(300.0) == pytest.approx(0.1)


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("share", ["0", "-0.5", "1.5", "nan", "half"])
def test_cli_refuses_a_share_out_of_range(share: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--rate-limit-share` outside (0, 1]: exit 2 with one line, before any request."""
    from jobwatch._cli import main

    assert main(["wait", "--rate-limit-share", share, "some-guid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--rate-limit-share" in err[0]


def test_cli_help_documents_the_share_and_the_first_get(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`wait --help` names the flag, its default, and that the first GET goes at once."""
    from jobwatch._cli import main

    with pytest.raises(SystemExit):
        main(["wait", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--rate-limit-share SHARE" in out
    assert "(default 0.8)" in out
    assert "first GET goes at once" in out


async def test_cli_client_spends_the_share_it_was_given(
    cc: FakeCloudController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flag's value reaches the client's rate budget."""
    from jobwatch._cli import TOKEN_ENV, make_client

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    cf = await make_client(cc.url, max_in_flight=3, rate_limit_share=0.25)
    async with cf:
        assert cf._transport.budget.share == 0.25
        assert cf.max_in_flight == 3


async def test_headers_that_are_no_mapping_are_refused_without_showing_them(
    cc: FakeCloudController,
) -> None:
    """`headers` as a list of raw pairs is no 202 response; its repr is not shown."""

    class Raw:
        def __init__(self) -> None:
            self.headers = [("Location", cc.job_url("abc")), ("Set-Cookie", "secret")]

        def __repr__(self) -> str:
            return f"<Raw {self.headers}>"

    async with cc.client() as cf:
        with pytest.raises(InvalidJobReference, match="headers mapping") as refused:
            await cf.wait_for_job(Raw())  # type: ignore[arg-type]
    assert "secret" not in str(refused.value)
    assert cc.requests == []
