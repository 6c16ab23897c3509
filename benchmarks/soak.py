"""The soak run (`python -m benchmarks.soak`): 20,000 jobs through 10 % random faults."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import random
import sys
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

import jobwatch
from jobwatch.testing import FakeCloudController, FakeResponse, Fault

from ._server import ServerProcess, _reply

REPORT = Path(__file__).with_name("SOAK.md")
TOKEN = "soak-token"
FAULT_RATE = 0.10
#: The mix, each: (what the fake serves, the error once retries are spent, transient?).
#: `Fault.RATE_LIMITED_429` is left out: its Retry-After: 1 would pause the whole client.
FAULTS: dict[str, tuple[FakeResponse | Fault, type[jobwatch.JobwatchError], bool]] = {
    "reset": (Fault.RESET, jobwatch.TransportError, True),
    "reset_mid_body": (Fault.RESET_MID_BODY, jobwatch.TransportError, True),
    "short_body": (Fault.SHORT_BODY, jobwatch.TransportError, True),
    "stall": (Fault.STALL, jobwatch.TransportError, True),
    "drip": (Fault.DRIP, jobwatch.TransportError, True),
    "server_error": (Fault.SERVER_ERROR, jobwatch.InternalServerError, True),
    "router_502": (Fault.ROUTER_502, jobwatch.BadGateway, True),
    "bare_502": (FakeResponse.bare_502(), jobwatch.BadGateway, True),
    "maintenance_503": (Fault.MAINTENANCE_503, jobwatch.ServiceUnavailable, True),
    "rate_limited_0": (FakeResponse.rate_limited(0), jobwatch.RateLimited, True),
    "gateway_timeout_504": (FakeResponse.error(504), jobwatch.ApiError, True),
    "invalid_json": (Fault.INVALID_JSON, jobwatch.MalformedResponse, False),
    "wrong_shape": (Fault.WRONG_SHAPE, jobwatch.MalformedResponse, False),
    "huge_body": (Fault.HUGE_BODY, jobwatch.MalformedResponse, False),
}
POLL = jobwatch.PollPolicy(initial=0.05, maximum=0.2, polling_initial=0.1, polling_maximum=0.3)
#: Three attempts, so that giving up after consecutive faults happens, and is checked, too.
RETRY = jobwatch.RetryPolicy(initial=0.02, maximum=0.2, attempts=3)
REQUEST_TIMEOUT = 0.5  #: what a STALL or a DRIP costs
TIMEOUT = 300.0  #: per wait: never reached unless something hangs

Plan = list[str]  # "ok:STATE" answers and FAULTS keys, in the order the server serves them


# -- the child: the fake, fed plans ---------------------------------------------------------


def _job_body(url: str, guid: str, state: str, step: int) -> dict[str, Any]:
    created = 1_700_000_000
    errors = (
        [{"code": 10009, "title": "CF-UnableToPerform", "detail": "broker said no"}]
        if state == "FAILED"
        else []
    )
    return {
        "guid": guid,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + step)),
        "operation": "service_instance.create",
        "state": state,
        "errors": errors,
        "warnings": [],
        "links": {"self": {"href": f"{url}/v3/jobs/{guid}"}},
    }


class _Child:
    """The server process's side: add planned jobs, report what was served."""

    def __init__(self, cc: FakeCloudController) -> None:
        self.cc = cc
        self.logged: Counter[str] = Counter()

    def add(self, plans: Sequence[Plan]) -> list[str]:
        guids = []
        for plan in plans:
            terminal = plan[-1].removeprefix("ok:")
            guid = self.cc.add_job(states=(terminal,))  # served only if the plan ran out
            served: list[FakeResponse | Fault] = []
            for step, item in enumerate(plan):
                if item.startswith("ok:"):
                    body = _job_body(self.cc.url, guid, item[3:], step)
                    served.append(FakeResponse(200, body))
                else:
                    served.append(FAULTS[item][0])
            self.cc.inject(guid, *served)
            guids.append(guid)
        return guids

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        if command["op"] == "add":
            return {"guids": self.add(command["plans"])}
        if command["op"] == "stats":
            times = os.times()
            return {
                "polls": [self.cc.polls(guid) for guid in command["guids"]],
                "faults": {fault.name: n for fault, n in self.cc.faults_injected.items()},
                "in_flight": self.cc.in_flight,
                "logged": dict(self.logged),
                "cpu": times.user + times.system,
            }
        return {"error": f"unknown op {command['op']!r}"}


class _Counting(logging.Handler):
    """Counts WARNING and worse records, by logger and level (never by message: that grows)."""

    def __init__(self, counter: Counter[str]) -> None:
        super().__init__(logging.WARNING)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        self.counter[f"{record.name} {record.levelname}"] += 1


async def _serve() -> None:
    warnings.simplefilter("error")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with FakeCloudController(token=TOKEN, record_requests=False) as cc:
        cc.stall_seconds = 30.0
        child = _Child(cc)
        # aiohttp's and asyncio's complaints about the faults would be a finding: count them.
        for name in ("aiohttp", "asyncio"):
            logging.getLogger(name).addHandler(_Counting(child.logged))
        _reply({"url": cc.url})
        while line := await reader.readline():
            _reply(child.handle(json.loads(line)))


def soak_server() -> ServerProcess:
    """The child process serving the soak's fake, warnings as errors."""
    return ServerProcess(("-W", "error", "-m", "benchmarks.soak", "--serve"))


# -- plans and what they must give ----------------------------------------------------------


def make_plan(rng: random.Random) -> Plan:
    """A job's answers, in order: a few PROCESSING then its end, each maybe after faults."""
    states = ["PROCESSING"] * rng.randrange(4) + ["FAILED" if rng.random() < 0.1 else "COMPLETE"]
    plan: Plan = []
    kinds = list(FAULTS)
    for state in states:
        while rng.random() < FAULT_RATE:
            plan.append(rng.choice(kinds))
        plan.append(f"ok:{state}")
    return plan


@attrs.frozen
class Expected:
    """What one job must end with, and the GETs the server must see for it."""

    error: type[jobwatch.JobwatchError] | None
    state: str | None  #: the last state the client saw
    gets: int
    resends: int  #: GETs aiohttp resent by itself after a reset
    faults: tuple[str, ...]  #: the faults actually served


def expect(plan: Plan, attempts: int) -> Expected:
    """Replay the plan through jobwatch's rules (and aiohttp's one resend after a reset)."""
    tail = plan[-1]
    position = gets = resends = failures = 0
    served: list[str] = []
    seen: str | None = None

    def take() -> str:
        nonlocal position, gets
        item = plan[position] if position < len(plan) else tail
        position += 1
        gets += 1
        if not item.startswith("ok:"):
            served.append(item)
        return item

    while True:
        item = take()
        if item == "reset":
            resends += 1
            item = take()  # aiohttp's own second try; a second reset fails the attempt
        if item.startswith("ok:"):
            seen, failures = item[3:], 0
            if seen in ("COMPLETE", "FAILED"):
                error = jobwatch.JobFailed if seen == "FAILED" else None
                return Expected(error, seen, gets, resends, tuple(served))
            continue
        _, error_class, transient = FAULTS[item]
        failures += 1
        if not transient or failures == attempts:
            return Expected(error_class, seen, gets, resends, tuple(served))


# -- the client side ------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@attrs.define
class Round:
    jobs: int
    seconds: float
    traced: int  #: tracemalloc's current bytes after the round, results dropped
    peak: int
    rss: int  #: resident memory, less tracemalloc's own bookkeeping


async def run_round(
    cf: jobwatch.Client, guids: list[str], *, singles: int
) -> dict[str, jobwatch.Outcome]:
    """Most jobs through one bulk wait, the rest through single waits, all at once."""

    async def single(guid: str) -> jobwatch.Outcome:
        try:
            return jobwatch.Outcome(guid, await cf.wait_for_job(guid, timeout=TIMEOUT))
        except jobwatch.JobFailed as exc:
            return jobwatch.Outcome(guid, exc.job, exc)
        except (jobwatch.ApiError, jobwatch.TransportError, jobwatch.MalformedResponse) as exc:
            return jobwatch.Outcome(guid, None, exc)

    bulk = asyncio.ensure_future(cf.wait_for_jobs(guids[singles:], timeout=TIMEOUT))
    alone = await asyncio.gather(*(single(guid) for guid in guids[:singles]))
    outcomes = await bulk
    outcomes.update({outcome.guid: outcome for outcome in alone})
    return outcomes


def check(outcome: jobwatch.Outcome, want: Expected) -> str | None:
    """None when the outcome is the one the plan calls for; else what went wrong."""
    got = type(outcome.error) if outcome.error is not None else None
    if got is not want.error:
        return f"{outcome.guid}: {outcome.error!r}, expected {want.error}"
    ended = outcome.job.state if outcome.job is not None else None
    if want.error in (None, jobwatch.JobFailed) and ended != want.state:
        return f"{outcome.guid}: ended {outcome.job!r}, expected {want.state}"
    return None


@attrs.define
class Tally:
    """What the rounds add up to: every figure that needs no job to stay in memory."""

    wrong: list[str] = attrs.Factory(list)
    outcomes: Counter[str] = attrs.Factory(Counter)
    faults: Counter[str] = attrs.Factory(Counter)
    server_gets: int = 0
    expected_gets: int = 0
    mismatched_gets: int = 0
    resends: int = 0

    def add(self, outcome: jobwatch.Outcome, want: Expected, served: int) -> None:
        problem = check(outcome, want)
        if problem:
            self.wrong.append(problem)
        error = outcome.error
        self.outcomes["COMPLETE" if error is None else type(error).__name__] += 1
        self.faults.update(want.faults)
        self.server_gets += served
        self.expected_gets += want.gets
        self.mismatched_gets += served != want.gets
        self.resends += want.resends


async def play_round(
    cf: jobwatch.Client, server: ServerProcess, rng: random.Random, jobs: int, tally: Tally
) -> float:
    """Plan, serve, wait on and check one round of jobs; return its seconds."""
    plans = [make_plan(rng) for _ in range(jobs)]
    guids: list[str] = server.call(op="add", plans=plans)["guids"]
    wants = [expect(plan, RETRY.attempts) for plan in plans]
    started = time.monotonic()
    outcomes = await run_round(cf, guids, singles=jobs // 5)
    seconds = time.monotonic() - started
    polls = server.call(op="stats", guids=guids)["polls"]
    for guid, want, served in zip(guids, wants, polls, strict=True):
        tally.add(outcomes[guid], want, served)
    return seconds


async def soak(jobs: int, rounds: int, seed: int, log: Any) -> dict[str, Any]:
    """Run the rounds through one client; measure memory between them, with no job held."""
    rng = random.Random(seed)
    server = soak_server()
    retries_logged = Counter[str]()
    handler = _Counting(retries_logged)
    jobwatch_log = logging.getLogger("jobwatch")
    jobwatch_log.addHandler(handler)
    jobwatch_log.propagate = False
    per_round = jobs // rounds
    tally = Tally()
    history: list[Round] = []
    started = time.monotonic()
    try:
        async with jobwatch.Client(
            server.url,
            token=TOKEN,
            poll=POLL,
            retry=RETRY,
            request_timeout=REQUEST_TIMEOUT,
            rng=random.Random(seed),
        ) as cf:
            for index in range(rounds):
                tracemalloc.reset_peak()
                seconds = await play_round(cf, server, rng, per_round, tally)
                # asyncio drops its last references to finished tasks (and so to their
                # results) over the next loop iterations: let it, then measure.
                await asyncio.sleep(0.1)
                gc.collect()
                traced, peak = tracemalloc.get_traced_memory()
                rss = _rss() - tracemalloc.get_tracemalloc_memory()
                history.append(Round(per_round, seconds, traced, peak, rss))
                log(
                    f"round {index + 1}/{rounds}: {per_round} jobs in {seconds:.1f} s, "
                    f"traced {traced / 2**20:.1f} MiB (peak {peak / 2**20:.1f}), "
                    f"RSS {rss / 2**20:.0f} MiB, {len(tally.wrong)} wrong so far"
                )
            stats = cf.stats
        final = server.call(op="stats", guids=[])
    finally:
        status = server.close()
        jobwatch_log.removeHandler(handler)
        jobwatch_log.propagate = True
    return {
        "jobs": per_round * rounds,
        "rounds": history,
        "seconds": time.monotonic() - started,
        "wrong": tally.wrong,
        "outcomes": tally.outcomes,
        "faults": tally.faults,
        "faults_by_server": final["faults"],
        "server_gets": tally.server_gets,
        "expected_gets": tally.expected_gets,
        "mismatched_gets": tally.mismatched_gets,
        "resends": tally.resends,
        "client_requests": stats.requests,
        "by_status": stats.by_status,
        "retries": stats.retries,
        "retry_warnings": retries_logged["jobwatch WARNING"],
        "jobwatch_errors": sum(retries_logged.values()) - retries_logged["jobwatch WARNING"],
        "server_logged": final["logged"],
        "server_log_lines": sum(final["logged"].values()),
        "server_in_flight": final["in_flight"],
        "server_cpu": final["cpu"],
        "server_exit": status,
    }


#: Growth of traced memory from the first round's end to the last's that still counts as flat.
FLAT = 256 * 1024


def render(figures: dict[str, Any], *, seed: int, healthy: bool) -> str:
    """The Markdown report."""
    rounds: list[Round] = figures["rounds"]
    first, last = rounds[0], rounds[-1]
    faults_served = sum(figures["faults"].values())
    total_gets = figures["server_gets"]
    growth = last.traced - first.traced
    lines = [
        "# Soak run",
        "",
        f"Written by `python -m benchmarks.soak` on {datetime.now(UTC):%Y-%m-%d %H:%M UTC}, "
        f"Python {platform.python_version()}, jobwatch {jobwatch.__version__}, seed {seed}. "
        f"Every check passed: **{'yes' if healthy else 'NO'}**.",
        "",
        f"{figures['jobs']:,} jobs in {len(rounds)} rounds through one `Client` "
        "(each round: one `wait_for_jobs` over 80 % of its jobs and a `wait_for_job` each "
        "for the rest, all at once), against `FakeCloudController` in its own process. "
        "Every job has a random plan: up to three PROCESSING answers, then COMPLETE (or "
        f"FAILED, 1 in 10), each answer preceded by a fault with probability {FAULT_RATE:g} "
        "(and that fault by another with the same probability: faults come in runs), drawn "
        f"evenly from the {len(FAULTS)} kinds below and injected in order with "
        "`FakeCloudController.inject`, so the right outcome of every job, and the GETs it "
        f"takes, follow from its plan. `RetryPolicy(attempts={RETRY.attempts})`, "
        f"`request_timeout={REQUEST_TIMEOUT:g}`; Python warnings are errors in both processes.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| jobs | {figures['jobs']:,} |",
        f"| wall time | {figures['seconds']:.0f} s |",
        f"| GETs served | {total_gets:,} |",
        f"| faults served | {faults_served:,} ({faults_served / total_gets:.1%} of GETs) |",
        f"| jobs with the wrong outcome | {len(figures['wrong'])} |",
        f"| jobs whose GETs differ from their plan | {figures['mismatched_gets']} |",
        f"| client requests (`Client.stats.requests`) | {figures['client_requests']:,} |",
        f"| server GETs - client requests | {total_gets - figures['client_requests']:,} |",
        f"| resends by aiohttp after a reset (from the plans) | {figures['resends']:,} |",
        f"| retries (`Client.stats.retries`; retry WARNINGs logged) | {figures['retries']:,} "
        f"({figures['retry_warnings']:,}) |",
        f"| traced memory after round 1 / round {len(rounds)} | {first.traced / 2**10:,.0f} / "
        f"{last.traced / 2**10:,.0f} KiB ({growth / 2**10:+,.0f} KiB: "
        f"{'flat' if abs(growth) < FLAT else 'NOT flat'}) |",
        f"| traced peak during a round, first / last | {first.peak / 2**20:.1f} / "
        f"{last.peak / 2**20:.1f} MiB |",
        f"| RSS (less tracemalloc's own) after round 1 / round {len(rounds)} | "
        f"{first.rss / 2**20:.0f} / {last.rss / 2**20:.0f} MiB |",
        f"| Python warnings, unraisable exceptions | {figures['warnings']} |",
        f"| jobwatch log records above WARNING | {figures['jobwatch_errors']} |",
        f"| aiohttp / asyncio log records (WARNING+) in the server | "
        f"{figures['server_log_lines']} |",
        "",
        "Outcomes, each checked against its job's plan:",
        "",
        "| outcome | jobs |",
        "|---|---|",
        *(f"| {name} | {n:,} |" for name, n in figures["outcomes"].most_common()),
        "",
        "Faults served, from the plans (the fake's own `faults_injected` count of each "
        f"`Fault` agrees: {'yes' if figures['faults_agree'] else 'NO'}):",
        "",
        "| fault | served |",
        "|---|---|",
        *(f"| `{name}` | {figures['faults'][name]:,} |" for name in FAULTS),
        "",
        "**Reconciliation.** The server counts every GET that reaches it; "
        "`Client.stats.requests` counts jobwatch's requests. They differ by exactly the GETs "
        "aiohttp resends by itself, once, when a connection is reset before any byte of the "
        "answer: invisible to jobwatch, and counted from the plans. "
        "`Fault.RATE_LIMITED_429` is left out of the mix (its `Retry-After: 1` would pause "
        "the whole client for a second each time); `FakeResponse.rate_limited(0)` takes the "
        "same path without the pause.",
        "",
        "**Memory** is measured between rounds, with no job or result held by the soak, after "
        "a tenth of a second (asyncio lets go of finished tasks over the next loop "
        "iterations) and a `gc.collect()`.",
        "",
        "| round | jobs | seconds | traced after (KiB) | traced peak (MiB) | RSS (MiB) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {i} | {r.jobs:,} | {r.seconds:.1f} | {r.traced / 2**10:,.0f} | "
            f"{r.peak / 2**20:.1f} | {r.rss / 2**20:.0f} |"
            for i, r in enumerate(rounds, 1)
        ),
        "",
    ]
    if figures["wrong"]:
        lines += ["Wrong outcomes (first 20):", "", *(f"- {w}" for w in figures["wrong"][:20]), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak jobwatch: random faults, every outcome checked; writes SOAK.md.",
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=REPORT, help="'-' writes nothing")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0

    warnings.simplefilter("error")
    unraisable: list[str] = []
    sys.unraisablehook = lambda hook: unraisable.append(repr(hook.exc_value))
    tracemalloc.start()

    def log(line: str) -> None:
        print(line, flush=True)

    figures = asyncio.run(soak(args.jobs, args.rounds, args.seed, log))
    figures["warnings"] = len(unraisable)
    by_server = figures["faults_by_server"]
    figures["faults_agree"] = all(
        by_server.get(item.name, 0) == figures["faults"][key]
        for key, (item, _, _) in FAULTS.items()
        if isinstance(item, Fault)
    )
    rounds = figures["rounds"]
    healthy = (
        not figures["wrong"]
        and not figures["mismatched_gets"]
        and figures["server_gets"] - figures["client_requests"] == figures["resends"]
        and not unraisable
        and figures["faults_agree"]
        and figures["server_exit"] == 0
        and not figures["server_log_lines"]
        and not figures["jobwatch_errors"]
        and abs(rounds[-1].traced - rounds[0].traced) < FLAT
    )
    report = render(figures, seed=args.seed, healthy=healthy)
    print(report)
    if str(args.output) != "-":
        args.output.write_text(report, encoding="utf-8")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
