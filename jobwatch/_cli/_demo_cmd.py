"""`jobwatch demo`: the embedded fake controller's scenario, run as a `wait`, and its numbers.

It lives with the command, not in `jobwatch._demo`: the scenario knows nothing
of the command line, and this module imports it only when the demo runs
(`_demo` imports aiohttp.web, through the fake controller).
"""

from __future__ import annotations

import argparse

from jobwatch import Client, Outcome

from ._display import Output
from ._report import COMPLETE, EXIT_OK, FAILED
from ._run import Interrupt, Run


async def cmd_demo(args: argparse.Namespace, output: Output, interrupt: Interrupt) -> int:
    """`jobwatch demo`: the embedded fake controller, thousands of jobs, and the numbers."""
    from jobwatch import _demo  # imports aiohttp.web: only the demo pays for it

    scenario = _demo.Scenario(jobs=args.jobs, seed=args.seed, speed=args.speed)
    plans = scenario.plans()
    expect = scenario.expected_seconds(plans)
    async with scenario.controller() as cc:
        guids = _demo.add_jobs(cc, plans)
        limit = scenario.rate_limit()
        faults = " and ".join(
            f"{share:.0%} {fault.name.split('_')[-1]}" for fault, share in _demo.FAULTS.items()
        )
        policies = (
            "default PollPolicy and RetryPolicy"
            if args.speed == 1
            else f"default PollPolicy and RetryPolicy with every interval divided by "
            f"{args.speed:g}\n  (--speed {args.speed:g}: so are the jobs' durations and the "
            f"rate-limit window)"
        )
        output.say(
            f"jobwatch demo: {args.jobs} jobs on a fake Cloud Controller at {cc.url}\n"
            f"  quick app.delete and space.apply_manifest jobs; service_instance.create and\n"
            f"  service_bindings.create spending seconds in POLLING; "
            f"{_demo.FAILED_SHARE:.0%} end FAILED\n"
            f"  rate limit {limit.limit} requests per {limit.window:g} s; {faults} faults; "
            f"{_demo.LATENCY * 1000:.0f} ms per GET\n"
            f"  {policies}, max_in_flight 32\n"
            # The replayed schedule leaves out pacing and the machine's load: a range.
            f"  this takes about {expect:.0f} to {expect * 1.4 + 1:.0f} s"
        )
        delays: list[float] = []

        def detected(outcome: Outcome, now: float) -> None:
            finished = cc.finished_at(outcome.guid)
            if finished is not None:
                # `finished_at` is time.monotonic(), the clock of asyncio's loop.
                delays.append(max(now - finished, 0.0))

        async with Client(
            cc.url,
            token=_demo.DEMO_TOKEN,
            poll=scenario.poll_policy(),
            retry=scenario.retry_policy(),
        ) as cf:
            run = Run(cf, output, interrupt, f"jobwatch demo: {args.jobs} jobs at {cc.url}")
            await run.wait(guids, timeout=_demo.TIMEOUT, on_outcome=detected)
            code = run.report(limit=5)
        scripted = sum(plan.timeline[-1][1] == FAILED for plan in plans)
        ended = run.tally.ended
        if (
            not run.interrupted
            and ended[FAILED] == scripted
            and ended[COMPLETE] == len(plans) - scripted
        ):
            # The FAILED jobs are part of the show: the demo itself went right.
            code = EXIT_OK
        served = ", ".join(
            f"{cc.faults_injected[fault]} x {fault.name.split('_')[-1]}" for fault in _demo.FAULTS
        )
        output.say(
            f"faults served: {served}; 429s served: {cc.rate_limited_count}; "
            f"peak concurrent requests at the server: {cc.peak_in_flight}"
        )
        p50, p95 = _demo.p50_p95(delays)
        output.say(
            f"detection delay (job ended on the server -> reported): p50 {p50:.2f} s, "
            f"p95 {p95:.2f} s, max {max(delays, default=0.0):.2f} s"
        )
        return code
