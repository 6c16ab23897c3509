"""Benchmark: 5,000 broker jobs on a controller budget that binds.

The controller's rate limiter (`jobwatch.testing.RateLimit`: fixed windows per
token, at the token's own offset) is given a budget smaller than the jobs'
polling wants; jobwatch spends `rate_limit_share` 0.8 and 1.0 of it, and a cf
CLI-like loop (every 3 s, no rate-limit handling, 5xx retried twice at once)
runs on the same budget beside it. Everything is time-scaled by `SCALE`
(durations, poll intervals, the window) and reported unscaled. The server
counts every job GET per window (its `X-RateLimit-Reset`) and its 429s.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

import jobwatch
from jobwatch.testing import FakeCloudController, RateLimit

from ._report import Figure, Progress, Section, percentile
from ._server import AUTHORIZATION, TOKEN, ServerProcess, _reply, now
from .economy import Job, _lognormal, scaled

#: Durations, intervals and the window all run this much faster than real time.
SCALE = 0.02
#: Broker jobs: 0.5-2 s PROCESSING, then POLLING; log-normal, median 3 min, at most 30 min.
MEDIAN, SIGMA, CAP = 180.0, 1.0, 1800.0
#: The controller's budget, unscaled: `LIMIT` job GETs per `WINDOW` seconds and token.
LIMIT, WINDOW = 15_000, 600.0
CF_INTERVAL = 3.0
#: aiohttp's default connection limit: the cf CLI-like loop's.
CF_CONNECTIONS = 100
#: Each run starts this far into a window (of its length), `LEAD` s after its server starts.
PHASE, LEAD = 0.1, 1.0


def broker_jobs(n: int, seed: int = 21, cap: float = CAP) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for _ in range(n):
        ends = _lognormal(rng, MEDIAN, SIGMA, cap)
        jobs.append(Job(ends, min(rng.uniform(0.5, 2.0), ends)))
    return jobs


def demand(jobs: Sequence[Job], policy: jobwatch.PollPolicy, window: float) -> list[int]:
    """GETs per window (from the jobs' creation) that `policy` wants with no budget."""
    rng = random.Random(3)
    counts: dict[int, int] = {}
    for job in jobs:
        t, intervals, last = 0.0, None, ""
        while True:
            counts[int(t // window)] = counts.get(int(t // window), 0) + 1
            state = job.state(t)
            if state == "COMPLETE":
                break
            if intervals is None or state != last:
                intervals = policy.delays(state, rng)
            last = state
            t += next(intervals)
    return [counts.get(i, 0) for i in range(max(counts) + 1)]


def cf_demand(jobs: Sequence[Job], window: float) -> list[int]:
    counts: dict[int, int] = {}
    for job in jobs:
        for k in range(math.floor(job.ends / CF_INTERVAL) + 2):
            t = k * CF_INTERVAL
            counts[int(t // window)] = counts.get(int(t // window), 0) + 1
            if t >= job.ends:
                break
    return [counts.get(i, 0) for i in range(max(counts) + 1)]


# -- the child: the fake with its limiter, counting per window ------------------------------


class _LimitedFake(FakeCloudController):
    """The fake; jobs' clocks start when they are made; GETs counted per limiter window."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Job GETs the limiter counted, per window (its X-RateLimit-Reset): [answered, 429].
        self.rate_windows: dict[str, list[int]] = {}

    async def _job_request(
        self, request: web.BaseRequest, guid: str, auth: str | None, now: float
    ) -> web.StreamResponse:
        response = await super()._job_request(request, guid, auth, now)
        reset = response.headers.get("X-RateLimit-Reset")
        if reset is not None:
            self.rate_windows.setdefault(reset, [0, 0])[response.status == 429] += 1
        return response


def _handle(cc: _LimitedFake, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "add":
        made = time.monotonic()
        guids = [
            cc.add_job(timeline=[(float(o), str(s)) for o, s in timeline])
            for timeline in command["timelines"]
        ]
        for guid in guids:  # the job's clock starts now, not at its first GET
            cc._jobs[guid].started = made  # a benchmark's own fixture
        return {"guids": guids}
    if op == "stats":
        guids = command["guids"]
        times = os.times()
        return {
            "polls": [cc.polls(g) for g in guids],
            "finished": [cc.finished_at(g) for g in guids],
            "rate_windows": cc.rate_windows,
            "rate_limited": cc.rate_limited_count,
            "cpu": times.user + times.system,
        }
    return {"error": f"unknown op {op!r}"}


async def _serve(limit: int, window: float, offset: float) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with _LimitedFake(
        token=TOKEN, record_requests=False, rate_limit=RateLimit(limit, window, offset=offset)
    ) as cc:
        _reply({"url": cc.url})
        while line := await reader.readline():
            _reply(_handle(cc, json.loads(line)))


# -- the clients ----------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    gets: int
    rate_limited: int
    windows: list[tuple[int, int, int]]  # (reset epoch, answered, 429s), in order
    delays: list[float]  # unscaled seconds, jobs whose end was seen
    lost: int  # waits that ended in an error
    wall: float  # unscaled seconds
    cpu: float  # client CPU seconds (not scaled)
    paused: float = 0.0  # jobwatch: seconds paused by 429s (unscaled)

    @property
    def mean_delay(self) -> float:
        return statistics.fmean(self.delays) if self.delays else math.nan

    def delay(self, p: float) -> float:
        return percentile(self.delays, p)


async def _jobwatch(
    url: str, guids: list[str], share: float, timeout: float, scale: float
) -> dict[str, Any]:
    seen: dict[str, float] = {}
    lost = 0
    policy = scaled(jobwatch.PollPolicy(), scale)
    async with jobwatch.Client(
        url, token=AUTHORIZATION, poll=policy, rate_limit_share=share
    ) as client:
        async for outcome in client.as_completed(guids, timeout=timeout):
            if outcome.ok:
                seen[outcome.guid] = now()
            else:
                lost += 1
        stats = client.stats
    return {"seen": seen, "lost": lost, "paused": stats.rate_limit_paused_seconds}


async def _cf_cli(
    url: str, guids: list[str], scale: float, *, poll_on_429: bool
) -> dict[str, Any]:
    """A plain aiohttp loop per job: GET, then every 3 s (scaled) after the answer.

    No rate-limit handling; a 5xx is retried twice at once (the cf CLI's retry); any other
    error ends the wait, as it ends the cf CLI's command, unless `poll_on_429`: then a 429
    is taken as "not yet" and the loop polls on (a script re-running the CLI)."""
    seen: dict[str, float] = {}
    lost = 0
    interval = CF_INTERVAL * scale
    connector = aiohttp.TCPConnector(limit=CF_CONNECTIONS)
    async with aiohttp.ClientSession(
        connector=connector, headers={"Authorization": AUTHORIZATION}
    ) as session:

        async def one(guid: str) -> None:
            nonlocal lost
            target = f"{url}/v3/jobs/{guid}"
            while True:
                for _ in range(3):
                    async with session.get(target) as response:
                        body = await response.read()
                        status = response.status
                    if status < 500:
                        break
                if status == 200:
                    if json.loads(body)["state"] in ("COMPLETE", "FAILED"):
                        seen[guid] = now()
                        return
                elif not (status == 429 and poll_on_429):
                    lost += 1
                    return
                await asyncio.sleep(interval)

        await asyncio.gather(*(one(g) for g in guids))
    return {"seen": seen, "lost": lost, "paused": 0.0}


def _one_run(
    name: str,
    jobs: Sequence[Job],
    limit: int,
    window: float,
    scale: float,
    client: Any,
    lead: float = LEAD,
) -> Run:
    timelines = [
        [(0.0, "PROCESSING"), (j.polling_from * scale, "POLLING"), (j.ends * scale, "COMPLETE")]
        for j in jobs
    ]
    # The token's windows start at an offset of its own, chosen so that every client's run
    # starts at the same point of a window (a tenth into it): their windows compare.
    length = window * scale
    begin = time.time() + lead
    offset = (begin - PHASE * length) % length
    argv = ("-m", "benchmarks.ratelimited", "--serve", str(limit), repr(length), repr(offset))
    with ServerProcess(argv) as server:
        time.sleep(max(begin - time.time(), 0.0))
        guids: list[str] = server.call(op="add", timelines=timelines)["guids"]
        start, cpu = now(), time.process_time()
        got = asyncio.run(client(server.url, guids, scale))
        wall, cpu = now() - start, time.process_time() - cpu
        stats = server.call(op="stats", guids=guids)
    delays = [
        (got["seen"][g] - end) / scale
        for g, end in zip(guids, stats["finished"], strict=True)
        if g in got["seen"] and end is not None
    ]
    windows = sorted((int(k), a, r) for k, (a, r) in stats["rate_windows"].items())
    return Run(
        name,
        sum(stats["polls"]),
        stats["rate_limited"],
        windows,
        delays,
        got["lost"],
        wall / scale,
        cpu,
        got["paused"] / scale,
    )


def run(quick: bool, progress: Progress) -> Section:
    # Quick: a smoke test, in seconds (a coarser time scale, fewer and shorter jobs).
    n, cap, scale = (200, 60.0, 0.005) if quick else (5_000, CAP, SCALE)
    limit, window = (LIMIT // 40, WINDOW / 4) if quick else (LIMIT, WINDOW)
    jobs = broker_jobs(n, cap=cap)
    timeout = (cap * 3 + 600) * scale
    wants = demand(jobs, jobwatch.PollPolicy(), window)
    cf_wants = cf_demand(jobs, window)
    clients: list[tuple[str, Any]] = [
        ("jobwatch, rate_limit_share 0.8", lambda u, g, s: _jobwatch(u, g, 0.8, timeout, s)),
        ("jobwatch, rate_limit_share 1.0", lambda u, g, s: _jobwatch(u, g, 1.0, timeout, s)),
        ("cf CLI-like (a 429 ends the wait)", lambda u, g, s: _cf_cli(u, g, s, poll_on_429=False)),
        (
            "cf CLI-like (polls on through 429s)",
            lambda u, g, s: _cf_cli(u, g, s, poll_on_429=True),
        ),
    ]
    runs = []
    for name, client in clients:
        runs.append(_one_run(name, jobs, limit, window, scale, client, 0.0 if quick else LEAD))
        progress(f"ratelimited: {name} done")

    section = Section("ratelimited", "7. On a rate limit that binds")
    jw = {r.name: r for r in runs}
    for share in ("0.8", "1.0"):
        r = jw[f"jobwatch, rate_limit_share {share}"]
        busiest = max((a + b for _, a, b in r.windows), default=0)
        section.figures.append(
            Figure(
                f"{n:,} broker jobs on {limit:,} GETs / {window:g} s, share {share}: 429s",
                f"{r.rate_limited} (busiest window {busiest:,} = {busiest / limit:.0%} of the "
                f"limit, {busiest / (limit * float(share)):.0%} of its share; "
                f"{r.lost} waits lost)",
                "0",
                r.rate_limited == 0 and r.lost == 0,
            )
        )
    cf = runs[2]
    section.figures.append(
        Figure(
            f"{n:,} broker jobs on the same budget: cf CLI-like 429s, waits lost",
            f"{cf.rate_limited:,} 429s, {cf.lost:,} of {n:,} waits lost; polling on: "
            f"{runs[3].rate_limited:,} 429s",
            "",
            None,
        )
    )
    section.add(
        f"{n:,} broker-like jobs (PROCESSING 0.5-2 s, then POLLING; log-normal, median "
        f"{MEDIAN / 60:g} min, sigma {SIGMA:g}, at most {cap / 60:g} min; all made at the start, "
        "each job's clock starting then) on the fake's rate limiter, "
        f"`RateLimit({limit:,}, {window:g} s)` (the token's windows at an offset of its own, "
        f"set so that every run starts {PHASE:.0%} into a window: the windows of the runs "
        "compare), "
        f"everything time-scaled by {scale:g} (durations, poll intervals, the window; figures "
        "unscaled). Each client runs on a fresh server of its own, one after the other, on "
        "the same jobs. With no budget, jobwatch's default schedule would want "
        f"{', '.join(f'{w:,}' for w in wants)} GETs in the successive {window:g} s windows "
        f"from the start, the cf CLI's {', '.join(f'{w:,}' for w in cf_wants)} (exact "
        "simulation): the budget binds. jobwatch: `as_completed` over all jobs, default "
        "`PollPolicy` (scaled), `max_in_flight=32`. The cf CLI-like client: a plain aiohttp "
        "loop per job, GET then every 3 s (scaled) after each answer, no rate-limit "
        f"handling, a 5xx retried twice at once, {CF_CONNECTIONS} connections (aiohttp's "
        "default); a 429 ends its wait, as it ends the cf CLI's command (second row: a "
        "script that polls on through them). The delay runs from the job's end on the server "
        "to its outcome in the client (one monotonic clock). Time scaling magnifies the "
        f"client's own CPU time {1 / scale:g}x (a burst of 5,000 first GETs takes seconds "
        "of it) and the whole-second truncation of `X-RateLimit-Reset` against a "
        f"{window * scale:g} s window: the delays here lean high."
    )
    section.add()
    section.table(
        ["client", "GETs", "GETs per job", "429s", "waits lost", "delay mean (s)",
         "delay p95 (s)", "paused by 429s (s)", "wall (s)", "client CPU (s)"],
        [[r.name, f"{r.gets:,}", f"{r.gets / n:.1f}", f"{r.rate_limited:,}", f"{r.lost:,}",
          f"{r.mean_delay:.1f}", f"{r.delay(95):.1f}", f"{r.paused:.1f}", f"{r.wall:.0f}",
          f"{r.cpu:.1f}"] for r in runs],
    )  # fmt: skip
    section.add(
        f"**Per window**, as the server counted them (job GETs answered / 429s; limit "
        f"{limit:,}). Windows are the limiter's own (its `X-RateLimit-Reset`), numbered from "
        "each run's first; the first and last are partial."
    )
    section.add()
    most = max(len(r.windows) for r in runs)
    section.table(
        ["client", *[f"window {i + 1}" for i in range(most)]],
        [
            [r.name, *[f"{a:,} / {b:,}" for _, a, b in r.windows]] + [""] * (most - len(r.windows))
            for r in runs
        ],
    )
    section.data = {
        "jobs": n,
        "limit": limit,
        "window": window,
        "demand": wants,
        "cf_demand": cf_wants,
        "runs": [
            {
                "name": r.name,
                "gets": r.gets,
                "rate_limited": r.rate_limited,
                "lost": r.lost,
                "mean_delay": r.mean_delay,
                "p95_delay": r.delay(95),
                "windows": r.windows,
                "wall": r.wall,
                "cpu": r.cpu,
            }
            for r in runs
        ],
    }
    return section


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    asyncio.run(_serve(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
