"""The soak run (`python -m benchmarks.soak`): 20,000 jobs through faults, outages, a rate limit.

On top of 10 % random faults, every round of jobs goes through outage windows
(every `Outage` kind but REFUSED, 5-20 s each at the soak's time scale) under
the controller's rate limiter (fixed windows at a per-token offset, resets
truncated to the second, a limit the soak's demand runs into). Every outcome
is checked against its job's plan, and every GET is accounted for on both
sides: the server attributes each one to the plan, the rate limiter or an
outage window, and a client middleware counts what went on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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

import aiohttp
import attrs
from aiohttp import web

import jobwatch
from jobwatch.testing import FakeCloudController, FakeResponse, Fault, Outage, RateLimit

from ._server import ServerProcess, _reply

REPORT = Path(__file__).with_name("SOAK.md")
TOKEN = "soak-token"
FAULT_RATE = 0.10
#: The mix, each: (what the fake serves, the error it is, transient?). A wait retries a
#: transient fault until its deadline; any other ends the wait with that error.
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
#: Three attempts: they bound nothing here (waits retry until their deadline) but say so.
RETRY = jobwatch.RetryPolicy(initial=0.02, maximum=0.2, attempts=3)
REQUEST_TIMEOUT = 0.5  #: what a STALL or a DRIP costs
#: Per wait: never reached unless something hangs (a round takes 5-20 s, a limiter's pause
#: up to a window, 30 s, on top).
TIMEOUT = 120.0
MAX_IN_FLIGHT = 32
#: The soak's time scale: its poll schedule is the default one times this (x0.02).
SCALE = POLL.initial / jobwatch.PollPolicy().initial
#: Outage windows, 5-20 s each at the default schedule's scale: every kind but REFUSED.
#: Its listener restart resets every keep-alive connection, and with them answers already
#: sent but not yet read, so no plan can say what such a job should end with (the deploy
#: benchmark, `benchmarks.outage`, goes through refused connections, without faults).
OUTAGE_KINDS = tuple(kind for kind in Outage if kind is not Outage.REFUSED)
OUTAGE_SECONDS = (5.0 * SCALE, 20.0 * SCALE)
OUTAGES_PER_ROUND = 2

Plan = list[str]  # "ok:STATE" answers and FAULTS keys, in the order the server serves them


@attrs.frozen
class Config:
    """One soak run: its size, and the fake's rate limiter and clock."""

    name: str
    jobs: int
    rounds: int
    limit: int
    window: float
    retry_after: str = "seconds"
    vms: int = 1
    clock_skew: float = 0.0

    def rate_limit(self) -> RateLimit:
        # No offset: the token's windows start at an offset of its own, as on the controller.
        return RateLimit(
            self.limit,
            self.window,
            retry_after=self.retry_after,  # type: ignore[arg-type]
            vms=self.vms,
        )

    def describe(self) -> str:
        text = (
            f"`RateLimit({self.limit:,}, {self.window:g}, retry_after={self.retry_after!r}"
            + (f", vms={self.vms}" if self.vms > 1 else "")
            + ")`, windows at the token's own offset"
        )
        if self.clock_skew:
            text += f"; the server's clock {self.clock_skew:+g} s off the client's"
        return text


#: The main run, and a smaller one as an older foundation looks: the reset epoch as
#: Retry-After, two API VMs each enforcing half the limit, the server's clock minutes off.
MAIN = Config("main", jobs=20_000, rounds=8, limit=15_000, window=30.0)
LEGACY = Config(
    "legacy",
    jobs=5_000,
    rounds=2,
    limit=15_000,
    window=30.0,
    retry_after="epoch",
    vms=2,
    clock_skew=-150.0,
)
CONFIGS = {config.name: config for config in (MAIN, LEGACY)}


# -- the child: the fake, fed plans ---------------------------------------------------------


class _SoakFake(FakeCloudController):
    """The fake, with every job GET attributed: a planned fault or state, the rate
    limiter's 429, or an outage window's answer.

    A job's states are its poll-count script, so that they go through the rate
    limiter as the controller's own answers do; the faults planned before each
    state are injected once the state before it has been served (injections are
    served first, ahead of the limiter, as a fault in the router would be). The
    fake's two per-request handlers are wrapped to keep the tally.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.segments: dict[str, collections.deque[list[FakeResponse | Fault]]] = {}
        self.pending: dict[str, int] = {}  #: faults injected and not served yet
        self.tally: dict[str, Counter[str]] = {}
        self.by_kind: Counter[str] = Counter()
        #: GETs the rate limiter counted, per window (its X-RateLimit-Reset): [answered, 429].
        self.rate_windows: dict[str, list[int]] = {}

    def add_planned(self, plan: Plan) -> str:
        states: list[str] = []
        segments: list[list[FakeResponse | Fault]] = [[]]
        for item in plan:
            if item.startswith("ok:"):
                states.append(item[3:])
                segments.append([])
            else:
                segments[-1].append(FAULTS[item][0])
        segments.pop()  # nothing is planned after the terminal state
        guid = self.add_job(states=tuple(states), operation="service_instance.create")
        self.tally[guid] = Counter()
        self.segments[guid] = collections.deque(segments[1:])
        self._inject(guid, segments[0])
        return guid

    def _inject(self, guid: str, faults: list[FakeResponse | Fault]) -> None:
        if faults:
            self.inject(guid, *faults)
            self.pending[guid] = self.pending.get(guid, 0) + len(faults)

    async def _job_request(
        self, request: web.BaseRequest, guid: str, auth: str | None, now: float
    ) -> web.StreamResponse:
        tally = self.tally.get(guid)
        if tally is None:
            return await super()._job_request(request, guid, auth, now)
        if self.pending.get(guid):
            self.pending[guid] -= 1
            tally["fault"] += 1  # counted first: a STALL's handler ends cancelled
            return await super()._job_request(request, guid, auth, now)
        response = await super()._job_request(request, guid, auth, now)
        if response.status == 200:
            tally["state"] += 1
            segments = self.segments[guid]
            if segments:
                self._inject(guid, segments.popleft())
        elif response.status == 429:
            tally["limited"] += 1
        else:
            tally["other"] += 1
        reset = response.headers.get("X-RateLimit-Reset")
        if reset is not None:
            self.rate_windows.setdefault(reset, [0, 0])[response.status == 429] += 1
        return response

    async def _serve_outage(
        self, request: web.BaseRequest, kind: Outage, guid: str | None, now: float
    ) -> web.StreamResponse:
        tally = self.tally.get(guid) if guid is not None else None
        if tally is not None and kind is not Outage.REFUSED:
            tally["outage"] += 1
            self.by_kind[kind.name] += 1
        return await super()._serve_outage(request, kind, guid, now)


class _Child:
    """The server process's side: add planned jobs, schedule outages, report what was served."""

    def __init__(self, cc: _SoakFake) -> None:
        self.cc = cc
        self.logged: Counter[str] = Counter()

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        cc = self.cc
        if command["op"] == "add":
            return {"guids": [cc.add_planned(plan) for plan in command["plans"]]}
        if command["op"] == "outages":
            known = len(cc.outage_windows)
            for kind, seconds, start in command["windows"]:
                cc.schedule_outage(Outage[kind], seconds, start=start)
            return {
                "windows": [[k.name, b, e] for k, b, e in cc.outage_windows[known:]],
            }
        if command["op"] == "stats":
            times = os.times()
            guids = command["guids"]
            tallies = [dict(cc.tally.pop(guid)) for guid in guids]  # checked once: let go
            for guid in guids:
                cc.segments.pop(guid, None)
                cc.pending.pop(guid, None)
            return {
                "polls": [cc.polls(guid) for guid in guids],
                "tallies": tallies,
                "faults": {fault.name: n for fault, n in cc.faults_injected.items()},
                "rate_limited": cc.rate_limited_count,
                "outage_requests": cc.outage_requests,
                "by_kind": dict(cc.by_kind),
                "rate_windows": cc.rate_windows,
                "in_flight": cc.in_flight,
                "logged": dict(self.logged),
                "cpu": times.user + times.system,
            }
        return {"error": f"unknown op {command['op']!r}"}


class _Counting(logging.Handler):
    """Counts WARNING and worse records, by logger and level (never by message: that grows)."""

    def __init__(self, counter: Counter[str], level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        self.counter[f"{record.name} {record.levelname}"] += 1
        if record.name == "jobwatch" and "attempt %d failed" in str(record.msg):
            self.counter["jobwatch retry"] += 1


async def _serve(config: Config) -> None:
    warnings.simplefilter("error")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with _SoakFake(
        token=TOKEN,
        record_requests=False,
        rate_limit=config.rate_limit(),
        clock_skew=config.clock_skew,
    ) as cc:
        cc.stall_seconds = 30.0
        child = _Child(cc)
        # aiohttp's and asyncio's complaints about the faults would be a finding: count them.
        for name in ("aiohttp", "asyncio"):
            logging.getLogger(name).addHandler(_Counting(child.logged))
        _reply({"url": cc.url})
        while line := await reader.readline():
            _reply(child.handle(json.loads(line)))


def soak_server(config: Config) -> ServerProcess:
    """The child process serving the soak's fake, warnings as errors."""
    return ServerProcess(("-W", "error", "-m", "benchmarks.soak", "--serve", config.name))


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
    """What one job must end with, and how much of its plan the server must serve."""

    error: type[jobwatch.JobwatchError] | None
    state: str | None  #: the last state the client saw
    items: int  #: planned answers served: up to the terminal state or a permanent fault
    faults: tuple[str, ...]  #: the faults actually served


def expect(plan: Plan) -> Expected:
    """Replay the plan through jobwatch's rules: a wait retries transient faults to its end.

    Every GET that reaches the plan takes its next answer, so what a job ends
    with does not depend on how its GETs fell among outages, 429s and resends.
    """
    seen: str | None = None
    served: list[str] = []
    for index, item in enumerate(plan):
        if item.startswith("ok:"):
            seen = item[3:]
            if seen in ("COMPLETE", "FAILED"):
                error = jobwatch.JobFailed if seen == "FAILED" else None
                return Expected(error, seen, index + 1, tuple(served))
            continue
        served.append(item)
        _, error_class, transient = FAULTS[item]
        if not transient:
            return Expected(error_class, seen, index + 1, tuple(served))
    raise AssertionError(f"a plan ends with a terminal state: {plan}")


def outage_plan(rng: random.Random, index: int) -> list[tuple[str, float, float]]:
    """This round's outages: (kind, seconds, pause before it), the kinds taken in turn."""
    windows = []
    for k in range(OUTAGES_PER_ROUND):
        kind = OUTAGE_KINDS[(index * OUTAGES_PER_ROUND + k) % len(OUTAGE_KINDS)]
        pause = rng.uniform(0.5, 2.5) if k == 0 else rng.uniform(1.0, 3.0)
        windows.append((kind.name, rng.uniform(*OUTAGE_SECONDS), pause))
    return windows


async def cause_outages(
    server: ServerProcess, plan: list[tuple[str, float, float]], windows: list[Any]
) -> None:
    """Start each window after its pause, while the round runs (cancelled when it ends)."""
    for kind, seconds, pause in plan:
        await asyncio.sleep(pause)
        # One short blocking call on the pipe: the window starts now, on the server's clock.
        windows.extend(server.call(op="outages", windows=[[kind, seconds, 0.0]])["windows"])
        await asyncio.sleep(seconds)


# -- the client side ------------------------------------------------------------------------


class WireCount:
    """A client middleware: every request aiohttp puts on the wire, its own resends included.

    aiohttp traces the start of each request once (`on_request_start`, before its
    loop of attempts), and calls the middleware once per attempt: the attempts
    beyond the starts are its resends after a reset on a kept-alive connection.
    """

    def __init__(self) -> None:
        self.attempts = 0
        self.starts = 0
        self.connect_failed = 0
        self.disconnected = 0
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_start.append(self._started)

    @property
    def resends(self) -> int:
        return self.attempts - self.starts

    async def _started(self, *_: object) -> None:
        self.starts += 1

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        self.attempts += 1
        try:
            return await handler(request)
        except aiohttp.ClientConnectorError:
            self.connect_failed += 1
            raise
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            self.disconnected += 1
            raise


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
        except jobwatch.JobTimeout as exc:
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
    # A single wait's own errors carry no job (a bulk outcome has the last one seen).
    if (want.error in (None, jobwatch.JobFailed) or outcome.job is not None) and (
        ended != want.state
    ):
        return f"{outcome.guid}: ended {outcome.job!r}, expected {want.state}"
    return None


@attrs.define
class Tally:
    """What the rounds add up to: every figure that needs no job to stay in memory."""

    wrong: list[str] = attrs.Factory(list)
    outcomes: Counter[str] = attrs.Factory(Counter)
    faults: Counter[str] = attrs.Factory(Counter)
    #: GETs by what answered them (the server's attribution), summed over the jobs.
    answered: Counter[str] = attrs.Factory(Counter)
    server_gets: int = 0
    mismatched_items: int = 0  #: jobs whose served plan is not the expected length
    unattributed: int = 0  #: GETs the server counted that no tally explains
    windows: list[tuple[str, float, float]] = attrs.Factory(list)

    def add(
        self, outcome: jobwatch.Outcome, want: Expected, polls: int, tally: dict[str, int]
    ) -> None:
        problem = check(outcome, want)
        if problem:
            self.wrong.append(problem)
        error = outcome.error
        self.outcomes["COMPLETE" if error is None else type(error).__name__] += 1
        self.faults.update(want.faults)
        self.answered.update(tally)
        self.server_gets += polls
        served = tally.get("fault", 0) + tally.get("state", 0)
        self.mismatched_items += served != want.items
        self.unattributed += polls - sum(tally.values()) + tally.get("other", 0)


async def play_round(
    cf: jobwatch.Client,
    server: ServerProcess,
    rng: random.Random,
    index: int,
    jobs: int,
    tally: Tally,
) -> float:
    """Plan, serve, wait on and check one round of jobs; return its seconds."""
    plans = [make_plan(rng) for _ in range(jobs)]
    guids: list[str] = server.call(op="add", plans=plans)["guids"]
    wants = [expect(plan) for plan in plans]
    windows: list[Any] = []
    started = time.monotonic()
    outages = asyncio.create_task(cause_outages(server, outage_plan(rng, index), windows))
    try:
        outcomes = await run_round(cf, guids, singles=jobs // 5)
    finally:
        outages.cancel()
    seconds = time.monotonic() - started
    tally.windows.extend((str(k), float(b), float(e)) for k, b, e in windows)
    stats = server.call(op="stats", guids=guids)
    for guid, want, polls, served in zip(
        guids, wants, stats["polls"], stats["tallies"], strict=True
    ):
        tally.add(outcomes[guid], want, polls, served)
    return seconds


async def soak(config: Config, seed: int, log: Any) -> dict[str, Any]:
    """Run the rounds through one client; measure memory between them, with no job held."""
    rng = random.Random(seed)
    server = soak_server(config)
    logged = Counter[str]()
    handler = _Counting(logged)
    jobwatch_log = logging.getLogger("jobwatch")
    jobwatch_log.addHandler(handler)
    jobwatch_log.propagate = False
    per_round = config.jobs // config.rounds
    tally = Tally()
    history: list[Round] = []
    wire = WireCount()
    started = time.monotonic()
    try:
        # The session jobwatch would make for itself (connector limit, headers), plus the
        # middleware that counts the wire; borrowed, so closed here.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT),
            headers={"Accept": "application/json", "User-Agent": "jobwatch soak"},
            middlewares=(wire,),
            trace_configs=[wire.trace],
        )
        async with (
            session,
            jobwatch.Client(
                server.url,
                token=TOKEN,
                session=session,
                max_in_flight=MAX_IN_FLIGHT,
                poll=POLL,
                retry=RETRY,
                request_timeout=REQUEST_TIMEOUT,
                rng=random.Random(seed),
            ) as cf,
        ):
            for index in range(config.rounds):
                tracemalloc.reset_peak()
                seconds = await play_round(cf, server, rng, index, per_round, tally)
                # asyncio drops its last references to finished tasks (and so to their
                # results) over the next loop iterations: let it, then measure.
                await asyncio.sleep(0.1)
                gc.collect()
                traced, peak = tracemalloc.get_traced_memory()
                rss = _rss() - tracemalloc.get_tracemalloc_memory()
                history.append(Round(per_round, seconds, traced, peak, rss))
                log(
                    f"{config.name} round {index + 1}/{config.rounds}: {per_round} jobs in "
                    f"{seconds:.1f} s, traced {traced / 2**20:.1f} MiB (peak "
                    f"{peak / 2**20:.1f}), RSS {rss / 2**20:.0f} MiB, "
                    f"{len(tally.wrong)} wrong so far"
                )
            stats = cf.stats
        final = server.call(op="stats", guids=[])
    finally:
        status = server.close()
        jobwatch_log.removeHandler(handler)
        jobwatch_log.propagate = True
    warnings_logged = logged["jobwatch WARNING"]
    return {
        "config": config,
        "jobs": per_round * config.rounds,
        "rounds": history,
        "seconds": time.monotonic() - started,
        "wrong": tally.wrong,
        "outcomes": tally.outcomes,
        "faults": tally.faults,
        "faults_by_server": final["faults"],
        "answered": tally.answered,
        "server_gets": tally.server_gets,
        "mismatched_items": tally.mismatched_items,
        "unattributed": tally.unattributed,
        "windows": tally.windows,
        "by_kind": final["by_kind"],
        "outage_requests": final["outage_requests"],
        "rate_limited": final["rate_limited"],
        "rate_windows": final["rate_windows"],
        "wire": {
            "attempts": wire.attempts,
            "resends": wire.resends,
            "connect_failed": wire.connect_failed,
            "disconnected": wire.disconnected,
        },
        "client_requests": stats.requests,
        "by_status": stats.by_status,
        "retries": stats.retries,
        "retry_warnings": logged["jobwatch retry"],
        "other_warnings": warnings_logged - logged["jobwatch retry"],
        "outages": stats.outages,
        "outage_seconds": stats.outage_seconds,
        "paused": stats.rate_limit_paused_seconds,
        "jobwatch_errors": sum(
            n
            for key, n in logged.items()
            if key.startswith("jobwatch ") and key not in ("jobwatch WARNING", "jobwatch retry")
        ),
        "server_logged": final["logged"],
        "server_log_lines": sum(final["logged"].values()),
        "server_in_flight": final["in_flight"],
        "server_cpu": final["cpu"],
        "server_exit": status,
    }


#: Growth of traced memory from the first round's end to the last's that still counts as flat.
FLAT = 256 * 1024
FAULTS_AGREE = "faults served: from the plans = the fake's count"


def verdicts(figures: dict[str, Any]) -> dict[str, bool]:
    """Each check of a run, by name: all must hold."""
    rounds: list[Round] = figures["rounds"]
    wire = figures["wire"]
    answered = figures["answered"]
    by_server = figures["faults_by_server"]
    return {
        "every outcome as its plan says": not figures["wrong"],
        "every plan served exactly up to its end": not figures["mismatched_items"],
        "every GET the server counted attributed": not figures["unattributed"],
        "wire attempts = GETs the server saw": wire["attempts"] == figures["server_gets"],
        "wire attempts - aiohttp's resends = jobwatch's requests": (
            wire["attempts"] - wire["resends"] == figures["client_requests"]
        ),
        "outage answers: per job = the server's total": (
            answered["outage"] == figures["outage_requests"]
        ),
        "429s of the rate limiter: per job = its own count": (
            answered["limited"] == figures["rate_limited"]
        ),
        FAULTS_AGREE: all(
            by_server.get(item.name, 0) == figures["faults"][key]
            for key, (item, _, _) in FAULTS.items()
            if isinstance(item, Fault)
        ),
        "every outage window answered requests": all(
            figures["by_kind"].get(kind, 0) > 0 for kind, _, _ in figures["windows"]
        ),
        "memory flat": abs(rounds[-1].traced - rounds[0].traced) < FLAT,
        "no warning, unraisable exception or error logged": not (
            figures["warnings"] or figures["jobwatch_errors"] or figures["server_log_lines"]
        ),
        "the server exited cleanly": figures["server_exit"] == 0,
    }


def _rate_rows(figures: dict[str, Any]) -> list[str]:
    config: Config = figures["config"]
    rows = []
    windows = sorted(figures["rate_windows"].items(), key=lambda item: int(item[0]))
    for i, (reset, (answered, limited)) in enumerate(windows):
        counted = answered + limited
        note = "first (partial)" if i == 0 else "last (partial)" if i == len(windows) - 1 else ""
        rows.append(
            f"| {reset} | {counted:,} | {counted / config.limit:.0%} | {limited:,} | {note} |"
        )
    return rows


def _run_summary(figures: dict[str, Any], checks: dict[str, bool]) -> list[str]:
    """The figures of one run, as a table."""
    config: Config = figures["config"]
    rounds: list[Round] = figures["rounds"]
    first, last = rounds[0], rounds[-1]
    total = figures["server_gets"]
    wire = figures["wire"]
    answered = figures["answered"]
    growth = last.traced - first.traced
    faults_served = answered["fault"]
    windows = figures["windows"]
    down = sum(end - begin for _, begin, end in windows)
    status = figures["by_status"]
    return [
        "| figure | value |",
        "|---|---|",
        f"| jobs, rounds | {figures['jobs']:,} in {len(rounds)} |",
        f"| rate limiter | {config.describe()} |",
        f"| wall time | {figures['seconds']:.0f} s |",
        f"| jobs with the wrong outcome | {len(figures['wrong'])} |",
        f"| jobs whose plan was not served exactly to its end | {figures['mismatched_items']} |",
        f"| GETs the server saw | {total:,} |",
        f"| ... a planned fault | {faults_served:,} ({faults_served / total:.1%}) |",
        f"| ... a planned state | {answered['state']:,} |",
        f"| ... an outage window | {answered['outage']:,} (server's own count: "
        f"{figures['outage_requests']:,}) |",
        f"| ... the rate limiter's 429 | {answered['limited']:,} (its own count: "
        f"{figures['rate_limited']:,}) |",
        f"| ... nothing of these (unattributed) | {figures['unattributed']} |",
        f"| requests on the wire (client middleware) | {wire['attempts']:,} |",
        f"| ... of which aiohttp's own resends after a reset | {wire['resends']:,} |",
        f"| jobwatch's requests (`Client.stats.requests`) | {figures['client_requests']:,} |",
        f"| outage windows | {len(windows)}, {down:.1f} s in all "
        f"({down / SCALE:.0f} s at the default schedule's scale) |",
        f"| outages the client counted (`stats.outages`, `outage_seconds`) | "
        f"{figures['outages']:,}, {figures['outage_seconds']:.1f} s |",
        f"| 429s the client got (planned `rate_limited_0` + the limiter's) | "
        f"{status.get(429, 0):,} |",
        f"| client paused by 429s (`rate_limit_paused_seconds`) | {figures['paused']:.1f} s |",
        f"| retries (`Client.stats.retries`; retry WARNINGs logged) | {figures['retries']:,} "
        f"({figures['retry_warnings']:,}) |",
        f"| other jobwatch WARNINGs (the outage gate reopening) | {figures['other_warnings']:,} |",
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
        f"| checks passed | {sum(checks.values())} of {len(checks)}"
        + "".join(f"; **failed: {name}**" for name, ok in checks.items() if not ok)
        + " |",
    ]


def render(runs: list[dict[str, Any]], *, seed: int, healthy: bool) -> str:
    """The Markdown report."""
    main, others = runs[0], runs[1:]
    checks = [verdicts(figures) for figures in runs]
    rounds: list[Round] = main["rounds"]
    lines = [
        "# Soak run",
        "",
        f"Written by `python -m benchmarks.soak` on {datetime.now(UTC):%Y-%m-%d %H:%M UTC}, "
        f"Python {platform.python_version()}, jobwatch {jobwatch.__version__}, seed {seed}, "
        f"{sum(r['seconds'] for r in runs):.0f} s in all. Every check passed: "
        f"**{'yes' if healthy else 'NO'}**.",
        "",
        f"{main['jobs']:,} jobs in {len(rounds)} rounds through one `Client` (each round: "
        "one `wait_for_jobs` over 80 % of its jobs and a `wait_for_job` each for the rest, "
        "all at once), against `FakeCloudController` in its own process. Every job has a "
        "random plan: up to three PROCESSING answers, then COMPLETE (or FAILED, 1 in 10), "
        f"each answer preceded by a fault with probability {FAULT_RATE:g} (and that fault "
        "by another with the same probability: faults come in runs), drawn evenly from the "
        f"{len(FAULTS)} kinds below. The states are the job's script on the fake, so they "
        "go through its rate limiter; the faults are injected (`FakeCloudController.inject`) "
        "once the state before them has been served. A wait retries a transient fault until "
        "its deadline and ends on a permanent one (`MalformedResponse`), so the right "
        "outcome of every job, and how much of its plan the server serves, follow from the "
        "plan, however its GETs fall among outages, 429s and resends.",
        "",
        f"**Outages.** Each round, up to {OUTAGES_PER_ROUND} windows "
        "(`FakeCloudController.schedule_outage`), the first 0.5-2.5 s into the round, the "
        "next 1-3 s after the one before (none once the round is over), the kinds taken in "
        "turn from "
        + ", ".join(f"`{kind.name}`" for kind in OUTAGE_KINDS)
        + f"; {OUTAGE_SECONDS[0]:.1f}-{OUTAGE_SECONDS[1]:.1f} s each: 5-20 s at the "
        f"soak's time scale (its poll schedule is the default one x{SCALE:g}; the retry "
        f"backoff, {RETRY.initial:g} s doubling to {RETRY.maximum:g} s, is about the "
        "default's at the same scale). `REFUSED` is left out: its listener restart resets "
        "every keep-alive connection, and with them answers already sent but not yet read, "
        "so no plan can say how such a job should end (the deploy benchmark goes through "
        "refused connections, without faults).",
        "",
        f"**Rate limit.** {main['config'].describe()}; the client's default "
        "`rate_limit_share` (0.8). Planned faults are served ahead of the limiter and do not "
        "count in its windows. "
        f"`RetryPolicy(attempts={RETRY.attempts})`, `request_timeout={REQUEST_TIMEOUT:g}`, "
        f"`max_in_flight={MAX_IN_FLIGHT}`; Python warnings are errors in both processes.",
        "",
        *_run_summary(main, checks[0]),
        "",
    ]
    for figures, verdict in zip(others, checks[1:], strict=True):
        lines += [
            f"**A second run, an older foundation** (seed {seed + 1}): "
            f"{figures['config'].describe()}, otherwise the same.",
            "",
            *_run_summary(figures, verdict),
            "",
        ]
    lines += [
        "Checks, each run:",
        "",
        "| check | " + " | ".join(r["config"].name for r in runs) + " |",
        "|---|" + "---|" * len(runs),
        *(
            f"| {name} | " + " | ".join("yes" if c[name] else "**NO**" for c in checks) + " |"
            for name in checks[0]
        ),
        "",
        "Outcomes of the main run, each checked against its job's plan:",
        "",
        "| outcome | jobs |",
        "|---|---|",
        *(f"| {name} | {n:,} |" for name, n in main["outcomes"].most_common()),
        "",
        "Faults served in the main run, from the plans (the fake's own `faults_injected` "
        f"count of each `Fault` agrees: {'yes' if checks[0][FAULTS_AGREE] else 'NO'}):",
        "",
        "| fault | served |",
        "|---|---|",
        *(f"| `{name}` | {main['faults'][name]:,} |" for name in FAULTS),
        "",
        "Outage answers in the main run, by kind (requests the server answered as the outage):",
        "",
        "| kind | windows | seconds | answered |",
        "|---|---|---|---|",
        *(
            f"| `{kind.name}` | {sum(k == kind.name for k, _, _ in main['windows'])} | "
            f"{sum(e - b for k, b, e in main['windows'] if k == kind.name):.2f} | "
            f"{main['by_kind'].get(kind.name, 0):,} |"
            for kind in OUTAGE_KINDS
        ),
        "",
        "The rate limiter's windows in the main run (each counts the state GETs it saw, "
        f"429s included, against its limit of {main['config'].limit:,}):",
        "",
        "| window's X-RateLimit-Reset | GETs counted | of the limit | 429s | |",
        "|---|---|---|---|---|",
        *_rate_rows(main),
        "",
        "**Reconciliation.** The server attributes every job GET it counts to a planned "
        "fault, a planned state, the rate limiter's 429 or an outage window; the sums agree "
        "with the fake's own counters. A middleware on the client's session counts every "
        "request put on the wire, aiohttp's own resends after a reset included (aiohttp "
        "traces each request's start once, before its attempts, so the attempts beyond "
        "the starts are resends): the wire and the server agree, and the wire less the "
        "resends is "
        "`Client.stats.requests`. The session is the one jobwatch makes for itself "
        "(connection limit, headers) plus the middleware, handed in as `session=`. "
        "`Fault.RATE_LIMITED_429` is left out of the mix (its `Retry-After: 1` would pause "
        "the whole client for a second each time); `FakeResponse.rate_limited(0)` takes "
        "the same path without the pause.",
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
    for figures in runs:
        if figures["wrong"]:
            lines += [
                f"Wrong outcomes, {figures['config'].name} run (first 20):",
                "",
                *(f"- {w}" for w in figures["wrong"][:20]),
                "",
            ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak jobwatch: faults, outages, a rate limit, every outcome checked; "
        "writes SOAK.md.",
    )
    parser.add_argument("--jobs", type=int, default=MAIN.jobs, help="of the main run")
    parser.add_argument("--rounds", type=int, default=MAIN.rounds)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-legacy", action="store_true", help="skip the second run")
    parser.add_argument("--output", type=Path, default=REPORT, help="'-' writes nothing")
    parser.add_argument("--serve", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(CONFIGS[args.serve]))
        return 0

    warnings.simplefilter("error")
    unraisable: list[str] = []
    sys.unraisablehook = lambda hook: unraisable.append(repr(hook.exc_value))
    tracemalloc.start()

    def log(line: str) -> None:
        print(line, flush=True)

    configs = [attrs.evolve(MAIN, jobs=args.jobs, rounds=args.rounds)]
    if not args.no_legacy:
        scale = args.jobs / MAIN.jobs
        configs.append(attrs.evolve(LEGACY, jobs=max(round(LEGACY.jobs * scale), LEGACY.rounds)))
    runs = []
    for i, config in enumerate(configs):
        before = len(unraisable)
        figures = asyncio.run(soak(config, args.seed + i, log))
        figures["warnings"] = len(unraisable) - before
        runs.append(figures)
    healthy = all(all(verdicts(figures).values()) for figures in runs)
    report = render(runs, seed=args.seed, healthy=healthy)
    print(report)
    if str(args.output) != "-":
        args.output.write_text(report, encoding="utf-8")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
