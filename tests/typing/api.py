"""Uses the public API as a user would; type-checked by mypy, never run."""

from __future__ import annotations

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
