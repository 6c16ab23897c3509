"""The helpers for users' tests: `set_testing`, `FakeCloudController.client`, the pytest plugin."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import jobwatch
import jobwatch.testing
from jobwatch.testing import FakeCloudController, FakeResponse, Outage, is_testing, set_testing

from .helpers import TOKEN

FIVE_POLLS = ("PROCESSING", "PROCESSING", "PROCESSING", "PROCESSING", "COMPLETE")

#: Every name `jobwatch.testing` exported when it was one module (but `serve_forever`,
#: removed), plus the test switch.
PROMISED = {
    "CC_ERRORS",
    "FakeCloudController",
    "FakeResponse",
    "Fault",
    "Outage",
    "RateLimit",
    "RecordedRequest",
    "set_testing",
}


# -- set_testing --------------------------------------------------------------------------


def test_set_testing_as_a_plain_call_turns_test_mode_on_and_off() -> None:
    """`set_testing()` turns it on, `set_testing(False)` off; it starts off."""
    assert not is_testing()
    set_testing()
    assert is_testing()
    set_testing(False)
    assert not is_testing()
    set_testing(True)
    assert is_testing()
    set_testing(False)


def test_set_testing_as_a_with_block_restores_the_previous_setting() -> None:
    """The block restores what was set before the call, nested blocks and errors too."""
    with set_testing():
        assert is_testing()
        with set_testing(False):
            assert not is_testing()
            with set_testing():
                assert is_testing()
            assert not is_testing()
        assert is_testing()
    assert not is_testing()
    set_testing()
    with pytest.raises(KeyError), set_testing(False):
        raise KeyError("boom")
    assert is_testing()  # the plain call's setting is back
    set_testing(False)


def test_set_testing_returns_a_context_manager_with_a_readable_repr() -> None:
    """What it returns says what is on and what it restores."""
    restore = set_testing()
    assert repr(restore) == "<jobwatch set_testing: True, restores False>"
    with restore:
        pass
    assert not is_testing()


@pytest.mark.usefixtures("testing_mode")
async def test_a_five_poll_job_with_default_policies_ends_in_well_under_a_second() -> None:
    """Default policies would sleep ~10 s through four intervals; test mode sleeps none."""
    async with FakeCloudController(token=TOKEN) as cc, cc.client() as cf:
        assert cf.poll_policy == jobwatch.PollPolicy()
        assert cf.retry_policy == jobwatch.RetryPolicy()
        processing = cc.add_job(states=FIVE_POLLS)
        polling = cc.add_job(states=("POLLING", "POLLING", "POLLING", "COMPLETE"))
        started = time.perf_counter()
        job = await cf.wait_for_job(processing, timeout=30)
        outcomes = await cf.wait_for_jobs([polling], timeout=30)
        elapsed = time.perf_counter() - started
    assert job.state == "COMPLETE"
    assert outcomes[polling].ok
    assert cc.polls(processing) == 5
    assert cc.polls(polling) == 4
    assert elapsed < 0.5


@pytest.mark.usefixtures("testing_mode")
async def test_retries_and_the_waits_a_server_asks_for_are_not_slept_through() -> None:
    """Backoff and Retry-After are zero; the error and the stats keep what the server said."""
    async with FakeCloudController(token=TOKEN) as cc, cc.client() as cf:
        guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
        cc.inject(
            guid,
            FakeResponse.router_502(),
            FakeResponse.rate_limited(retry_after=3600),
            FakeResponse(503, "API down for maintenance", "text/html", {"Retry-After": "60"}),
        )
        started = time.perf_counter()
        # A 0.5 s deadline: outside test mode, a Retry-After past it raises at once.
        job = await cf.wait_for_job(guid, timeout=0.5)
        elapsed = time.perf_counter() - started
        stats = cf.stats
    assert job.state == "COMPLETE"
    assert elapsed < 0.4
    assert stats.retries == 3
    assert stats.rate_limit_paused_seconds >= 3599  # what the 429 asked for, not slept


@pytest.mark.usefixtures("testing_mode")
async def test_the_outage_gate_probes_without_spacing() -> None:
    """A 0.1 s outage costs about 0.1 s, not RetryPolicy's 0.5 s first probe interval."""
    async with FakeCloudController(token=TOKEN) as cc, cc.client() as cf:
        first = cc.add_job(states=("COMPLETE",))
        await cf.wait_for_job(first)  # the API has answered: waits ride through outages
        guids = cc.add_jobs(3, states=("PROCESSING", "COMPLETE"))
        cc.schedule_outage(Outage.ROUTER_502, 0.1)
        started = time.perf_counter()
        outcomes = await cf.wait_for_jobs(guids, timeout=5)
        elapsed = time.perf_counter() - started
        stats = cf.stats
    assert all(outcome.ok for outcome in outcomes.values())
    assert stats.outages == 1
    assert elapsed < 0.4


@pytest.mark.usefixtures("testing_mode")
async def test_rate_limit_pacing_is_off_in_test_mode() -> None:
    """A budget that would be spread over the window is spent at once (no 429 drawn)."""
    limit = jobwatch.testing.RateLimit(limit=40, window=60.0)
    async with FakeCloudController(token=TOKEN, rate_limit=limit) as cc, cc.client() as cf:
        guids = cc.add_jobs(10, states=("PROCESSING", "PROCESSING", "COMPLETE"))
        started = time.perf_counter()
        outcomes = await cf.wait_for_jobs(guids, timeout=10)
        elapsed = time.perf_counter() - started
    assert all(outcome.ok for outcome in outcomes.values())
    assert cc.rate_limited_count == 0
    assert elapsed < 1.0


# -- deadlines hold -----------------------------------------------------------------------


async def ticks_while(awaitable: asyncio.Future[jobwatch.Job]) -> int:
    """How many 10 ms sleeps another task got through while `awaitable` ran."""
    count = 0
    while not awaitable.done():
        await asyncio.sleep(0.01)
        count += 1
    return count


@pytest.mark.usefixtures("testing_mode")
async def test_a_deadline_holds_in_test_mode_and_the_loop_stays_free() -> None:
    """A job that never ends still times out on time, polled through the fake all along."""
    async with FakeCloudController(token=TOKEN) as cc, cc.client() as cf:
        guid = cc.add_job(states=("PROCESSING",))
        started = time.perf_counter()
        wait = asyncio.ensure_future(cf.wait_for_job(guid, timeout=0.2))
        ticks = await ticks_while(wait)
        with pytest.raises(jobwatch.JobTimeout) as caught:
            await wait
        elapsed = time.perf_counter() - started
    assert caught.value.job is not None
    assert caught.value.job.state == "PROCESSING"
    assert 0.2 <= elapsed < 0.35
    assert cc.polls(guid) > 10  # zero intervals, every one a real request
    assert ticks >= 10  # the loop was never held: other tasks ran all along


@pytest.mark.usefixtures("testing_mode")
async def test_deadlines_of_every_kind_of_wait_hold_in_test_mode() -> None:
    """Bulk waits, streams and watches end at their deadline too."""
    async with FakeCloudController(token=TOKEN) as cc, cc.client() as cf:
        guid = cc.add_job(states=("POLLING",))
        started = time.perf_counter()
        outcomes = await cf.wait_for_jobs([guid], timeout=0.1)
        streamed = [outcome async for outcome in cf.as_completed([guid], timeout=0.1)]
        with pytest.raises(jobwatch.JobTimeout):
            async for _ in cf.watch_job(guid, timeout=0.1):
                pass
        elapsed = time.perf_counter() - started
    assert isinstance(outcomes[guid].error, jobwatch.JobTimeout)
    assert isinstance(streamed[0].error, jobwatch.JobTimeout)
    assert 0.3 <= elapsed < 0.6


@pytest.mark.usefixtures("testing_mode")
async def test_a_deadline_holds_through_an_outage_in_test_mode() -> None:
    """Probes go without spacing while the API is down, and the wait still ends on time."""
    async with FakeCloudController(token=TOKEN) as cc, cc.client() as cf:
        await cf.wait_for_job(cc.add_job(states=("COMPLETE",)))
        guid = cc.add_job(states=("PROCESSING",))
        cc.schedule_outage(Outage.REFUSED, 30)
        started = time.perf_counter()
        with pytest.raises(jobwatch.JobTimeout):
            await cf.wait_for_job(guid, timeout=0.2)
        elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 0.35


# -- FakeCloudController.client -----------------------------------------------------------


async def test_client_points_at_the_fake_with_its_token() -> None:
    """`cc.client()` talks to the fake's URL and sends the token it accepts."""
    async with FakeCloudController(token=TOKEN) as cc, cc.client() as cf:
        guid = cc.add_job(states=("COMPLETE",))
        job = await cf.get_job(guid)
    assert cf.api_url == cc.url
    assert job.guid == guid
    assert [request.authorization for request in cc.requests] == [f"bearer {TOKEN}"]


async def test_client_keywords_override_the_defaults() -> None:
    """Any `Client` keyword goes through; `token=` replaces the fake's own."""
    poll = jobwatch.PollPolicy(initial=0.01, maximum=0.01)
    async with FakeCloudController(token=TOKEN) as cc:
        async with cc.client(poll=poll, max_in_flight=3) as cf:
            assert cf.poll_policy is poll
            assert cf.max_in_flight == 3
        async with cc.client(token="bearer wrong") as cf:
            with pytest.raises(jobwatch.Unauthorized):
                await cf.get_job(cc.add_job())


async def test_client_of_a_fake_without_a_token_sends_none() -> None:
    """A fake that accepts any request gets a client without a token."""
    async with FakeCloudController() as cc, cc.client() as cf:
        await cf.get_job(cc.add_job(states=("COMPLETE",)))
    assert cc.requests[0].authorization is None


async def test_client_of_a_fake_bound_beyond_loopback_may_use_plain_http() -> None:
    """The fake only speaks http: bound to every address, its client allows that."""
    async with FakeCloudController(token=TOKEN, host="0.0.0.0") as cc, cc.client() as cf:
        job = await cf.get_job(cc.add_job(states=("COMPLETE",)))
    assert job.state == "COMPLETE"


def test_client_of_a_fake_not_started_is_refused() -> None:
    """There is no URL to point at before `start()`."""
    with pytest.raises(RuntimeError, match="not started"):
        FakeCloudController().client()


# -- the module and the plugin ------------------------------------------------------------


def test_testing_all_is_sorted_complete_and_keeps_every_name() -> None:
    """`jobwatch.testing` is a package now: every name it had is still there."""
    exported = jobwatch.testing.__all__
    assert exported == sorted(exported)
    assert set(exported) >= PROMISED
    assert all(hasattr(jobwatch.testing, name) for name in exported)


async def test_the_fake_cloud_controller_fixture_is_a_started_fake(
    fake_cloud_controller: FakeCloudController,
) -> None:
    """The plugin's fixture, as our own suite sees it (loaded from conftest.py)."""
    cc = fake_cloud_controller
    guid = cc.add_job(states=FIVE_POLLS)
    with set_testing():
        async with cc.client() as cf:
            job = await cf.wait_for_job(guid, timeout=5)
    assert job.state == "COMPLETE"
    assert cc.token
    assert cc.requests[0].authorization == f"bearer {cc.token}"


USER_TESTS = """
import aiohttp
import pytest

import jobwatch
from jobwatch.testing import set_testing

seen = []


{mark}
async def test_waits_on_a_job(fake_cloud_controller):
    seen.append(fake_cloud_controller.url)
    guid = fake_cloud_controller.add_job(states=["PROCESSING"] * 4 + ["COMPLETE"])
    with set_testing():
        async with fake_cloud_controller.client() as cf:
            job = await cf.wait_for_job(guid, timeout=5)
    assert job.state == "COMPLETE"
    assert fake_cloud_controller.polls(guid) == 5


{mark}
async def test_sees_a_failure(fake_cloud_controller):
    guid = fake_cloud_controller.add_job(states=["FAILED"])
    async with jobwatch.Client(
        fake_cloud_controller.url, token=fake_cloud_controller.token
    ) as cf:
        with pytest.raises(jobwatch.JobFailed):
            await cf.wait_for_job(guid)


{mark}
async def test_the_fake_of_the_last_test_was_stopped():
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(seen[0])
"""


def run_pytest(tmp_path: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run pytest on `tmp_path` in a process of its own, as a user's suite would be run."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the root: none of our config
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "COV_CORE_", "COVERAGE_"))
    }
    command = f"{prelude}\nimport sys, pytest\nsys.exit(pytest.main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", command, "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_a_users_suite_gets_the_fixture_in_both_asyncio_modes(tmp_path: Path, mode: str) -> None:
    """Installed jobwatch, user's tests: the entry point gives them `fake_cloud_controller`."""
    mark = "@pytest.mark.asyncio" if mode == "strict" else ""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS.format(mark=mark)))
    done = run_pytest(
        tmp_path,
        "-o",
        f"asyncio_mode={mode}",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-q",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout


#: As if pytest-asyncio were not installed: importing it fails.
BLOCK_PYTEST_ASYNCIO = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pytest_asyncio":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocker())
"""


@pytest.mark.parametrize("absent", [True, False], ids=["not-installed", "turned-off"])
def test_without_pytest_asyncio_the_plugin_loads_and_the_fixture_says_why_not(
    tmp_path: Path, absent: bool
) -> None:
    """The suite still runs; only a test asking for the fixture fails, saying what to install."""
    (tmp_path / "test_user.py").write_text(
        "def test_other():\n    pass\n\n\ndef test_fake(fake_cloud_controller):\n    pass\n"
    )
    prelude = BLOCK_PYTEST_ASYNCIO if absent else ""
    done = run_pytest(tmp_path, "-p", "no:asyncio", "-q", prelude=prelude)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed, 1 error" in done.stdout
    assert "needs pytest-asyncio: `pip install pytest-asyncio`" in done.stdout


def test_the_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    """`pip install jobwatch` is all a suite needs: the entry point names the plugin."""
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "jobwatch"]
    assert plugin.value == "jobwatch.testing._pytest_plugin"
