"""Waits ride through outages: one probe per client, nothing lost, a bounded number of requests.

The policies are the defaults scaled down in time, so the behaviour is the
defaults' and the suite stays quick: outages and the retry backoff x0.05 (a
20 s outage lasts 1 s, the backoff starts at 25 ms and caps at 0.5 s), the
poll schedule x0.2 (2.5 s becomes 0.5 s: a thousand jobs polled 20 times as
often as the defaults would only measure this machine's CPU).
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

import jobwatch
from jobwatch.testing import FakeCloudController, FakeResponse, Outage

from .helpers import TOKEN

SCALE = 0.05
OUTAGE = 20 * SCALE
DEFAULT_POLL = jobwatch.PollPolicy()
DEFAULT_RETRY = jobwatch.RetryPolicy()
POLL_SCALE = 0.2
POLL = jobwatch.PollPolicy(
    initial=DEFAULT_POLL.initial * POLL_SCALE,
    maximum=DEFAULT_POLL.maximum * POLL_SCALE,
    polling_initial=DEFAULT_POLL.polling_initial * POLL_SCALE,
    polling_maximum=DEFAULT_POLL.polling_maximum * POLL_SCALE,
)
RETRY = jobwatch.RetryPolicy(
    initial=DEFAULT_RETRY.initial * SCALE,
    maximum=DEFAULT_RETRY.maximum * SCALE,
    attempts=DEFAULT_RETRY.attempts,
)
#: The longest the probe backoff gets (its cap plus jitter): how late after the
#: API's return the first probe may come.
PROBE_GAP = RETRY.maximum + RETRY.initial


async def answered(cf: jobwatch.Client) -> None:
    """Until the API has answered once: a client never answered gives up after `attempts`."""
    while not cf.stats.by_status.get(200):
        await asyncio.sleep(0.002)


def sent_during(cc: FakeCloudController, stats: jobwatch.ClientStats) -> int:
    """Requests sent while the API was down: what the server answered as the outage, plus
    the connections it refused (which only the client counts)."""
    refused = Outage.REFUSED in {kind for kind, _, _ in cc.outage_windows}
    return cc.outage_requests + (stats.no_answer if refused else 0)


def client(cc: FakeCloudController, **kwargs: object) -> jobwatch.Client:
    """A client with the scaled default policies."""
    return jobwatch.Client(cc.url, token=TOKEN, poll=POLL, retry=RETRY, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(Outage))
async def test_one_wait_rides_through_an_outage(kind: Outage) -> None:
    """A job that completes while the API is down is found once it is back; a few requests."""
    async with FakeCloudController(token=TOKEN) as cc:
        guid = cc.add_job(timeline=((0.0, "PROCESSING"), (OUTAGE * 0.6, "COMPLETE")))
        async with client(cc) as cf:
            wait = asyncio.ensure_future(cf.wait_for_job(guid, timeout=10))
            await answered(cf)
            cc.schedule_outage(kind, OUTAGE)
            job = await wait
            found = time.monotonic()
            stats = cf.stats
        _, _, back = cc.outage_windows[0]
    assert job.state == "COMPLETE"
    assert found - back < PROBE_GAP + POLL.initial * 1.1
    during = sent_during(cc, stats)
    assert 1 <= during <= 12, during
    assert stats.outages == 1
    assert stats.unavailable_since is None
    # Counted from the first failure seen: up to one poll interval after the outage began.
    assert OUTAGE - POLL.initial * 1.2 < stats.outage_seconds < OUTAGE + PROBE_GAP


@pytest.mark.parametrize("kind", list(Outage))
async def test_a_thousand_waits_ride_through_an_outage_on_one_probe(kind: Outage) -> None:
    """1,000 jobs through a 20 s outage: none lost; the requests while it lasts are a few dozen."""
    async with FakeCloudController(token=TOKEN, record_requests=False) as cc:
        guids = [
            cc.add_job(timeline=((0.0, "PROCESSING"), (0.1 + OUTAGE * i / 1000, "COMPLETE")))
            for i in range(1000)
        ]
        async with client(cc) as cf:
            wait = asyncio.ensure_future(cf.wait_for_jobs(guids, timeout=10))
            await answered(cf)
            cc.schedule_outage(kind, OUTAGE)
            outcomes = await wait
            stats = cf.stats
    lost = [o for o in outcomes.values() if not o.ok]
    assert not lost, lost[:3]
    # What was in flight when it broke (max_in_flight), then one probe at a time;
    # aiohttp sends a GET reset before any byte once more by itself.
    resends = 2 if kind is Outage.RESET else 1
    assert sent_during(cc, stats) <= resends * (cf.max_in_flight + 3 + 12), sent_during(cc, stats)
    assert stats.outages == 1
    assert stats.retries < 100


async def test_a_deploy_shaped_outage_loses_nothing() -> None:
    """Maintenance, then the router's 404 while the VMs restart, then refused connections."""
    steps = [(Outage.MAINTENANCE_503, OUTAGE / 3), (Outage.ROUTER_404, OUTAGE / 3)]
    steps.append((Outage.REFUSED, OUTAGE / 3))
    async with FakeCloudController(token=TOKEN, record_requests=False) as cc:
        guids = cc.add_jobs(500, timeline=((0.0, "PROCESSING"), (OUTAGE / 2, "COMPLETE")))
        async with client(cc) as cf:
            wait = asyncio.ensure_future(cf.wait_for_jobs(guids, timeout=10))
            await answered(cf)
            cc.schedule_deploy(steps)
            outcomes = await wait
            stats = cf.stats
    assert all(o.ok for o in outcomes.values())
    assert sent_during(cc, stats) <= cf.max_in_flight + 3 + 12
    assert stats.outages == 1


async def test_a_status_check_during_an_outage_is_bounded_by_attempts() -> None:
    """`get_job` gives up after `attempts` probes; a wait beside it carries on to the end."""
    async with FakeCloudController(token=TOKEN) as cc:
        waited = cc.add_job(timeline=((0.0, "PROCESSING"), (0.2, "COMPLETE")))
        checked = cc.add_job(states=("PROCESSING",))
        async with client(cc) as cf:
            assert (await cf.get_job(checked)).state == "PROCESSING"  # the API answered
            cc.schedule_outage(Outage.ROUTER_503, 2.0)
            wait = asyncio.ensure_future(cf.wait_for_job(waited, timeout=10))
            started = time.monotonic()
            with pytest.raises(jobwatch.ServiceUnavailable) as caught:
                await cf.get_job(checked, timeout=10)
            assert time.monotonic() - started < 2.0
            assert caught.value.router_error == "no_endpoints"
            assert not wait.done()
            assert (await wait).state == "COMPLETE"


async def test_a_wrong_url_stays_a_quick_clear_error() -> None:
    """Nothing has ever answered: the waits end after `attempts` rounds, not at the deadline."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    async with jobwatch.Client(f"http://127.0.0.1:{port}", poll=POLL, retry=RETRY) as cf:
        started = time.monotonic()
        outcomes = await cf.wait_for_jobs([f"job-{i}" for i in range(200)], timeout=60)
        elapsed = time.monotonic() - started
        stats = cf.stats
    assert elapsed < 3.0
    assert all(isinstance(o.error, jobwatch.TransportError) for o in outcomes.values())
    # Each outcome's message names its own job, not the probe's.
    assert all(o.error.url.endswith("/" + guid) for guid, o in outcomes.items())  # type: ignore[union-attr]
    assert stats.requests <= cf.max_in_flight + 3 + RETRY.attempts
    async with jobwatch.Client(f"http://127.0.0.1:{port}", poll=POLL, retry=RETRY) as cf:
        with pytest.raises(jobwatch.TransportError, match="attempts"):
            await cf.wait_for_job("job", timeout=60)


async def test_one_failing_job_among_healthy_ones_stays_its_own_problem() -> None:
    """A job that keeps answering 500 never closes the gate on the others."""
    async with FakeCloudController(token=TOKEN) as cc:
        sick = cc.add_job(timeline=((0.0, "PROCESSING"), (0.8, "COMPLETE")))
        cc.inject(sick, *[FakeResponse.error(500)] * 8)
        healthy = cc.add_jobs(30, timeline=((0.0, "PROCESSING"), (0.6, "COMPLETE")))
        async with client(cc) as cf:
            outcomes = await cf.wait_for_jobs([sick, *healthy], timeout=10)
            stats = cf.stats
    assert all(o.ok for o in outcomes.values())
    assert stats.outages == 0
    assert max(cc.polls(guid) for guid in healthy) <= 4


async def test_the_display_sees_the_outage_while_it_lasts() -> None:
    """`stats.unavailable_since` is the wall-clock start of the outage, while it lasts."""
    async with FakeCloudController(token=TOKEN) as cc:
        guids = cc.add_jobs(20, timeline=((0.0, "PROCESSING"), (1.0, "COMPLETE")))
        async with client(cc) as cf:
            task = asyncio.ensure_future(cf.wait_for_jobs(guids, timeout=10))
            while cf.stats.requests < 20:
                await asyncio.sleep(0.01)
            before = time.time()
            cc.schedule_outage(Outage.REFUSED, 0.6)
            while cf.stats.unavailable_since is None:
                await asyncio.sleep(0.01)
            since = cf.stats.unavailable_since
            assert before - 0.1 <= since <= time.time()
            assert cf.stats.outage_seconds > 0
            outcomes = await task
            assert cf.stats.unavailable_since is None
    assert all(o.ok for o in outcomes.values())


def _refused_url() -> str:
    """An http URL on loopback where nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("max_in_flight", [1, 2, 3])
@pytest.mark.parametrize("call", ["get_job", "wait_for_job"])
async def test_a_wrong_url_is_a_quick_error_whatever_max_in_flight(
    max_in_flight: int, call: str
) -> None:
    """Never answered: `attempts` GETs, then the TransportError, however few may fly at once.

    With `max_in_flight` below the three failures that close the outage gate, the
    client used to send that many requests and then none: the call hung until its
    deadline (a JobTimeout that lost the connection error).
    """
    async with jobwatch.Client(_refused_url(), retry=RETRY, max_in_flight=max_in_flight) as cf:
        started = time.monotonic()
        with pytest.raises(jobwatch.TransportError) as caught:
            await getattr(cf, call)("b19ae525-cbd3-4155-b156-dc0c2a431b4c", timeout=30)
        elapsed = time.monotonic() - started
    assert caught.value.attempts == RETRY.attempts
    assert cf.stats.no_answer == RETRY.attempts
    assert elapsed < 10  # the backoff (x0.05) adds up to about a second, never the 30 s
