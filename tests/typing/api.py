"""Uses the public API as a user would; type-checked by mypy, never run."""

from __future__ import annotations

import aiohttp

import jobwatch
from jobwatch import Client, Job, JobState, Outcome, PollPolicy, RetryPolicy


async def service(guids: list[str]) -> None:
    async def token() -> str:
        return "bearer abc"

    def on_update(job: Job) -> None:
        print(job.state)

    async with Client(
        "https://api.example.org",
        token=token,
        max_in_flight=16,
        poll=PollPolicy(initial=0.5, maximum=10.0),
        retry=RetryPolicy(initial=0.2, maximum=5.0, attempts=4),
    ) as cf:
        job: Job = await cf.wait_for_job(guids[0], timeout=60, on_update=on_update)
        assert job.state == JobState.COMPLETE
        assert job.is_terminal
        fetched: Job = await cf.get_job(guids[0])
        print(fetched.errors, fetched.warnings, fetched.links["self"].href)
        outcomes: dict[str, Outcome] = await cf.wait_for_jobs(guids, timeout=600)

        async def show(job: Job) -> None:
            print(job.state)

        # One on_update contract for every call: sync or async.
        await cf.wait_for_jobs(guids, on_update=on_update)
        await cf.wait_for_jobs(guids, on_update=show)
        await cf.wait_for_job(guids[0], on_update=show)
        async for _ in cf.as_completed(guids, on_update=show):
            pass
        error: jobwatch.JobwatchError | None = outcomes[guids[0]].error
        print(error)
        for outcome in outcomes.values():
            if not outcome.ok and isinstance(outcome.error, jobwatch.JobFailed):
                print(outcome.error.errors)
        async for done in cf.as_completed(guids):
            print(done.guid, done.job)
        async for seen in cf.watch_job(guids[0]):
            print(seen.updated_at)
        statuses: dict[str, Outcome] = await cf.get_jobs(guids)
        print(statuses, cf.stats.requests)
    try:
        await jobwatch.wait_for_job(guids[0])
    except jobwatch.JobTimeout as exc:
        print(exc.job, exc.timeout)
    except jobwatch.ApiError as exc:
        print(exc.status, exc.errors, exc.request_id, exc.url)
    cf2 = Client.from_cf_config()
    await cf2.aclose()
    learning: bool = PollPolicy(learn=True).learn
    async with Client("https://api.example.org", poll=PollPolicy(learn=True, maximum=15)) as cf3:
        print(learning, await cf3.wait_for_job(guids[0]))


class Accepted202:
    """A user's own response type: anything with a `headers` mapping holding `Location`."""

    def __init__(self, location: str) -> None:
        self.headers: dict[str, str] = {
            "Location": location,
            "Date": "Wed, 02 Dec 2026 06:00:00 GMT",
        }


async def fresh_jobs(session: aiohttp.ClientSession, app_url: str) -> None:
    async with Client("https://api.example.org", token="bearer abc") as cf:
        async with session.delete(app_url) as resp:
            job: Job = await cf.wait_for_job(resp, timeout=600)
        accepted: jobwatch.AcceptedResponse = Accepted202(app_url)
        refs: list[jobwatch.JobRef] = [accepted, "some-guid", f"{cf.api_url}/v3/jobs/other"]
        outcomes: dict[str, Outcome] = await cf.wait_for_jobs(refs)
        statuses: dict[str, Outcome] = await cf.get_jobs(refs)
        async for done in cf.as_completed(refs):
            print(done.guid)
        async for seen in cf.watch_job(accepted):
            print(seen.state)
        fetched: Job = await cf.get_job(accepted)
        print(job, outcomes, statuses, fetched)
        share: float | None = cf.stats.rate_limit_share_used
        print(share)
    await jobwatch.wait_for_job(accepted)
    await jobwatch.get_job(accepted)
    await jobwatch.wait_for_jobs(refs)
    await jobwatch.get_jobs(refs)


async def users_test() -> None:
    from jobwatch.testing import FakeCloudController, is_testing, set_testing

    set_testing()
    on: bool = is_testing()
    print(on)
    set_testing(False)
    with set_testing(True):
        async with FakeCloudController() as cc:
            guid: str = cc.add_job(states=("PROCESSING", "COMPLETE"))
            async with cc.client(max_in_flight=4) as cf:
                client: Client = cf
                done: Job = await client.wait_for_job(guid, timeout=5)
                print(done.state)


class Telemetry(jobwatch.Hook):
    """A user's hook: overrides what it needs, inherits the other no-ops."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def polled(self, event: jobwatch.Polled, /) -> None:
        status: int | None = event.status
        state: str | None = event.state
        delay: float | None = event.detection_delay
        print(event.guid, status, state, event.attempt, event.request_id, event.operation, delay)

    def retry_scheduled(self, event: jobwatch.RetryScheduled, /) -> None:
        error: jobwatch.JobwatchError = event.error
        print(event.guid, event.attempt, event.wait, error)

    def wait_started(self, event: jobwatch.WaitStarted, /) -> None:
        call: jobwatch.WaitCall = event.call
        print(event.wait_id, call, event.timeout)

    def wait_ended(self, event: jobwatch.WaitEnded, /) -> None:
        self.seconds.append(event.seconds)
        print(event.wait_id, event.outcome, event.state, event.operation, event.polls, event.error)

    def outage_began(self, event: jobwatch.OutageBegan, /) -> None:
        print(event.since, event.seconds, event.error)

    def outage_ended(self, event: jobwatch.OutageEnded, /) -> None:
        print(event.since, event.seconds)

    def rate_limit_paused(self, event: jobwatch.RateLimitPaused, /) -> None:
        print(event.guid, event.seconds, event.api_url)


async def instrumented(guid: str) -> None:
    from jobwatch.otel import OpenTelemetryHook

    hooks: list[jobwatch.Hook] = [Telemetry(), OpenTelemetryHook()]
    async with Client("https://api.example.org", token="bearer abc", hooks=hooks) as cf:
        print(cf.hooks, await cf.wait_for_job(guid))
    await Client.from_cf_config(hooks=(OpenTelemetryHook(tracer_provider=None),)).aclose()
