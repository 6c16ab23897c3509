"""Benchmark 5: thousands of waits through a deploy-shaped outage, against the same jobs without.

One `Client` with its default policies waits (`as_completed`) on jobs that end
a uniform 1-30 s after their first GET. A few seconds in, the API goes through
what a deploy looks like from outside: nginx's maintenance 503, then the
router's 404 (`unknown_route`), then refused connections. The same timelines
are then waited on with no outage (a fresh server each run, runs alternating),
so that every figure has its baseline. The fake runs in its own process,
recording the time of every GET it sees; refused connections never reach it,
so the client counts those (`stats.no_answer`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import jobwatch

from ._report import Figure, Progress, Section, Summary, percentile
from ._server import AUTHORIZATION, ServerProcess, Timeline, Window, now

#: The deploy, as the client sees it: (`Outage` name, seconds), back to back.
DEPLOY: tuple[tuple[str, float], ...] = (
    ("MAINTENANCE_503", 5.0),
    ("ROUTER_404", 5.0),
    ("REFUSED", 5.0),
)
QUICK_DEPLOY: tuple[tuple[str, float], ...] = tuple((kind, 0.3) for kind, _ in DEPLOY)
#: "A few dozen requests, not one retry loop per job" (DESIGN.md, section 3), read as
#: at most five dozen.
DOWN_TARGET = 60
TIMEOUT = 600.0  #: per wait: never reached unless something hangs


class _GateLog(logging.Handler):
    """Notes when the outage gate closes and reopens (its log records), and counts retries."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.closed: list[float] = []
        self.reopened: list[float] = []
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if message.startswith("the API looks unavailable"):
            self.closed.append(now())
        elif message.startswith("the API answers again"):
            self.reopened.append(now())
        elif "attempt %d failed" in message:
            self.retries += 1


async def _wait(
    server: ServerProcess, guids: list[str], deploy: Sequence[tuple[str, float]], start: float
) -> dict[str, Any]:
    """Wait on every job with a default `Client`; the deploy (if any) starts `start` s in."""
    gate = _GateLog()
    log = logging.getLogger("jobwatch")
    log.addHandler(gate)
    propagate, log.propagate = log.propagate, False
    level = log.level
    log.setLevel(logging.INFO)  # the gate says it closes at INFO, reopens at WARNING
    seen: dict[str, float] = {}
    errors: Counter[str] = Counter()
    try:
        async with jobwatch.Client(server.url, token=AUTHORIZATION) as client:
            windows = server.deploy(deploy, start) if deploy else []
            t0, cpu0 = now(), time.process_time()
            async for outcome in client.as_completed(guids, timeout=TIMEOUT):
                seen[outcome.guid] = now()
                if not (outcome.ok and outcome.job is not None):
                    errors[type(outcome.error).__name__] += 1
            wall, cpu = now() - t0, time.process_time() - cpu0
            stats = client.stats
    finally:
        log.removeHandler(gate)
        log.propagate = propagate
        log.setLevel(level)
    ended = server.finished(guids)
    if any(end is None for end in ended):
        raise RuntimeError("a job has not ended on the server although its wait is over")
    return {
        "t0": t0,
        "wall": wall,
        "cpu": cpu,
        "windows": windows,
        "seen": [seen[guid] for guid in guids],
        "ended": ended,
        "lost": sum(errors.values()),
        "errors": dict(errors),
        "polls": server.polls(guids),
        "times": server.request_times(),
        "outage_requests": server.outage_requests(),
        "client_requests": stats.requests,
        "by_status": {str(k): v for k, v in stats.by_status.items()},
        "no_answer": stats.no_answer,
        "outages": stats.outages,
        "outage_seconds": stats.outage_seconds,
        "gate_closed": gate.closed,
        "gate_reopened": gate.reopened,
        "retry_warnings": gate.retries,
        "peak_in_flight": server.call(op="stats", guids=[])["peak_in_flight"],
    }


def _count(times: Sequence[float], lo: float, hi: float) -> int:
    return sum(lo <= t < hi for t in times)


def _phases(down: float, up: float, answer: float, wall: float) -> list[tuple[str, float, float]]:
    """Intervals of a run, in seconds since the wait began."""
    return [
        ("before the outage", 0.0, down),
        ("during the outage", down, up),
        ("from the API's return to the first request it got", up, answer),
        ("the first second after that request", answer, answer + 1.0),
        ("the 4 s after that", answer + 1.0, answer + 5.0),
        ("the rest of the run", answer + 5.0, max(wall, answer + 5.0) + 1.0),
    ]


def _busiest(times: Sequence[float], lo: float, hi: float, width: float = 1.0) -> int:
    """The most GETs in any `width` seconds between `lo` and `hi`."""
    inside = sorted(t for t in times if lo <= t < hi)
    best, first = 0, 0
    for last, t in enumerate(inside):
        while inside[first] <= t - width:
            first += 1
        best = max(best, last - first + 1)
    return best


def analyse(outage: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """One round's figures: the outage run against the baseline run of the same timelines."""
    windows: list[Window] = outage["windows"]
    t0 = outage["t0"]
    down, up = windows[0][1], windows[-1][2]
    ended, seen = outage["ended"], outage["seen"]
    during = [i for i, end in enumerate(ended) if down <= end < up]
    delays = [seen[i] - ended[i] for i in during]
    base_delays = [baseline["seen"][i] - baseline["ended"][i] for i in during]
    before_up = [seen[i] for i, end in enumerate(ended) if end < up]
    refused = outage["no_answer"]
    server_gets, base_gets = sum(outage["polls"]), sum(baseline["polls"])
    closed = outage["gate_closed"]
    # The first request to reach the API once it is back (the gate's probe) is its answer.
    answer = min((t for t in outage["times"] if t >= up), default=up)
    per_window = [(kind, _count(outage["times"], b, e)) for kind, b, e in windows]
    after_up = [seen[i] - up for i in during]
    phases = []
    for name, lo, hi in _phases(down - t0, up - t0, answer - t0, outage["wall"]):
        phases.append(
            (
                name,
                hi - lo,
                _count(outage["times"], t0 + lo, t0 + hi),
                _count(baseline["times"], baseline["t0"] + lo, baseline["t0"] + hi),
            )
        )
    return {
        "jobs": len(ended),
        "lost": outage["lost"],
        "base_lost": baseline["lost"],
        "errors": outage["errors"],
        "ended_during": len(during),
        "down_requests": outage["outage_requests"] + refused,
        "outage_requests": outage["outage_requests"],
        "refused": refused,
        "per_window": per_window,
        "server_gets": server_gets,
        "base_gets": base_gets,
        "client_requests": outage["client_requests"],
        "base_client_requests": baseline["client_requests"],
        "gets_ratio": server_gets / base_gets,
        "first_answer_after_up": answer - up,
        "closed_after_down": (closed[0] - down) if closed else None,
        "first_found_after_up": min((s for s in seen if s >= up), default=up) - up,
        "last_found_after_up": max(seen) - up,
        "last_ended_before_up_found_after_up": max(before_up) - up,
        "base_last_found": max(baseline["seen"]) - baseline["t0"],
        "last_found": max(seen) - t0,
        "delay_p50": percentile(delays, 50),
        "delay_p95": percentile(delays, 95),
        "delay_max": max(delays, default=float("nan")),
        "after_up_p50": percentile(after_up, 50),
        "after_up_p95": percentile(after_up, 95),
        "busiest_after_up": _busiest(outage["times"], up, float("inf")),
        "busiest_before_down": _busiest(outage["times"], t0, down),
        "base_busiest": _busiest(baseline["times"], baseline["t0"], float("inf")),
        "base_delay_p50": percentile(base_delays, 50),
        "base_delay_p95": percentile(base_delays, 95),
        "all_delay_p50": percentile([s - e for s, e in zip(seen, ended, strict=True)], 50),
        "base_all_delay_p50": percentile(
            [s - e for s, e in zip(baseline["seen"], baseline["ended"], strict=True)], 50
        ),
        "outages": outage["outages"],
        "outage_seconds": outage["outage_seconds"],
        "retry_warnings": outage["retry_warnings"],
        "phases": phases,
        "wall": outage["wall"],
        "base_wall": baseline["wall"],
        "cpu": outage["cpu"],
        "base_cpu": baseline["cpu"],
        "by_status": outage["by_status"],
        "peak_in_flight": outage["peak_in_flight"],
    }


def _timelines(rng: random.Random, n: int, lo: float, hi: float) -> list[Timeline]:
    return [[(0.0, "PROCESSING"), (rng.uniform(lo, hi), "COMPLETE")] for _ in range(n)]


def _one(timelines: list[Timeline], deploy: Sequence[tuple[str, float]], start: float) -> Any:
    with ServerProcess(ServerProcess.RECORDING) as server:
        guids = server.add(timelines)
        return asyncio.run(_wait(server, guids, deploy, start))


def run(quick: bool, progress: Progress) -> Section:
    """Outage and baseline runs, alternating, and the section."""
    n, rounds = (100, 1) if quick else (2_000, 3)
    lo, hi = (0.5, 2.0) if quick else (1.0, 30.0)
    deploy = QUICK_DEPLOY if quick else DEPLOY
    start = 2.0 if quick else 5.0
    rng = random.Random(11)
    results = []
    for i in range(rounds):
        timelines = _timelines(rng, n, lo, hi)
        outage = _one(timelines, deploy, start)
        progress(f"outage: {n} jobs through the deploy, round {i + 1}/{rounds}")
        baseline = _one(timelines, (), start)
        progress(f"outage: the same {n} jobs without it, round {i + 1}/{rounds}")
        results.append(analyse(outage, baseline))
    return _section(results, n=n, lo=lo, hi=hi, deploy=deploy, start=start)


def _s(results: Sequence[dict[str, Any]], key: str) -> Summary:
    return Summary.of([r[key] for r in results if r[key] is not None])


def _f(results: Sequence[dict[str, Any]], key: str, digits: int, unit: str = "") -> str:
    """The summary of a figure some rounds may lack (None): "-" when none has it."""
    values = [r[key] for r in results if r[key] is not None]
    return Summary.of(values).fmt(digits, unit) if values else "-"


def _section(
    results: list[dict[str, Any]],
    *,
    n: int,
    lo: float,
    hi: float,
    deploy: Sequence[tuple[str, float]],
    start: float,
) -> Section:
    down_seconds = sum(seconds for _, seconds in deploy)
    steps = ", ".join(f"{kind} {seconds:g} s" for kind, seconds in deploy)
    lost = max(r["lost"] for r in results)
    down = _s(results, "down_requests")
    ratio = _s(results, "gets_ratio")
    last = _s(results, "last_ended_before_up_found_after_up")
    who = f"{n:,} waits through a {down_seconds:g} s deploy"
    section = Section("outage", "5. Through a deploy")
    section.figures = [
        Figure(f"{who}: jobs lost", f"{lost} of {n:,}", "none", lost == 0),
        Figure(
            f"{who}: requests sent while the API was down",
            down.fmt(0),
            f"a few dozen (<= {DOWN_TARGET})",
            down.median <= DOWN_TARGET,
        ),
        Figure(f"{who}: GETs in all / the same jobs without the outage", ratio.fmt(3, "x")),
        Figure(
            f"{who}: the last job that ended before the API's return, found after it",
            last.fmt(2, " s"),
        ),
        Figure(
            f"{who}: jobs that ended during it, delay from their end p50 / p95",
            f"{_s(results, 'delay_p50').fmt(2, ' s')} / {_s(results, 'delay_p95').fmt(2, ' s')}"
            f" (the same jobs without the outage: {_s(results, 'base_delay_p50').median:.2f} s"
            f" / {_s(results, 'base_delay_p95').median:.2f} s); from the API's return: "
            f"{_s(results, 'after_up_p50').median:.2f} s / "
            f"{_s(results, 'after_up_p95').median:.2f} s",
        ),
    ]
    section.add(
        f"{n:,} jobs, each COMPLETE a uniform {lo:g}-{hi:g} s after its first GET, waited "
        "on with one `as_completed` call through a `Client` with its default policies "
        "(`PollPolicy()`, `RetryPolicy()`, `max_in_flight=32`; the fake reports no rate "
        f"limit). {start:g} s after the wait begins the API goes through a deploy: {steps}, "
        "back to back (`FakeCloudController.schedule_deploy`). Each round then waits on "
        "the same timelines again on a fresh server with no outage: the baseline. "
        f"{len(results)} round(s), outage and baseline alternating. The server records the "
        "time of every GET it sees; refused connections never reach it, so the client "
        "counts them (`stats.no_answer`: requests with no HTTP answer). A job's "
        "delay runs from its end on the server (`finished_at`) to its outcome in the "
        "client, on the monotonic clock both processes share; a job that ends while the "
        "API is down cannot be seen before the API's return, so the delay from that "
        "return is given too."
    )
    section.add()
    section.table(
        ["round", "lost", "jobs ended during the outage", "sent while down (server + refused)",
         "GETs: outage / baseline", "first request after the return (s)",
         "last job ended before the return: found after it (s)",
         "delay p50 / p95 (s)", "baseline delay p50 / p95 (s)",
         "from the return p50 / p95 (s)"],
        [
            [i + 1, r["lost"], f"{r['ended_during']:,}",
             f"{r['down_requests']} ({r['outage_requests']} + {r['refused']})",
             f"{r['server_gets']:,} / {r['base_gets']:,} ({r['gets_ratio']:.3f}x)",
             f"{r['first_answer_after_up']:.2f}",
             f"{r['last_ended_before_up_found_after_up']:.2f}",
             f"{r['delay_p50']:.2f} / {r['delay_p95']:.2f}",
             f"{r['base_delay_p50']:.2f} / {r['base_delay_p95']:.2f}",
             f"{r['after_up_p50']:.2f} / {r['after_up_p95']:.2f}"]
            for i, r in enumerate(results)
        ],
    )  # fmt: skip
    mid = sorted(results, key=lambda r: r["gets_ratio"])[len(results) // 2]
    section.add(
        "**Where the requests went** (the round with the median GET ratio). Seconds count "
        "from the start of each run's wait; the baseline's GETs are counted over the same "
        "intervals of its own run."
    )
    section.add()
    section.table(
        ["interval", "seconds", "GETs seen by the server, outage run", "baseline"],
        [[name, f"{secs:.1f}", f"{a:,}", f"{b:,}"] for name, secs, a, b in mid["phases"]],
    )
    windows = "; ".join(f"{kind} {count}" for kind, count in mid["per_window"])
    section.add(
        f"Seen by the server per window, that round: {windows} (a REFUSED window's are "
        "requests that reached the socket before it closed); the client counted "
        f"{mid['refused']} requests with no answer. Client statuses: "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(mid["by_status"].items()))
        + f". The gate closed {_f(results, 'closed_after_down', 2, ' s')} after the API "
        f"went down and counted {_s(results, 'outages').fmt(0)} outage(s) of "
        f"{_s(results, 'outage_seconds').fmt(1, ' s')}; the first request to reach the API "
        f"after its return came {_s(results, 'first_answer_after_up').fmt(2, ' s')} after it "
        "(the gate's probe; probes "
        "back off 0.5 s doubling to 10 s, plus up to 0.5 s of jitter each). The held polls "
        "then went out at once: the busiest second after the return saw "
        f"{_s(results, 'busiest_after_up').fmt(0)} GETs, the busiest before the outage "
        f"(the first polls) {_s(results, 'busiest_before_down').fmt(0)}, the baseline's "
        f"busiest {_s(results, 'base_busiest').fmt(0)}. Retry WARNINGs "
        f"logged: {_s(results, 'retry_warnings').fmt(0)}. Wall time "
        f"{_s(results, 'wall').fmt(1, ' s')} (baseline {_s(results, 'base_wall').fmt(1, ' s')}); "
        f"client CPU {_s(results, 'cpu').fmt(2, ' s')} (baseline "
        f"{_s(results, 'base_cpu').fmt(2, ' s')})."
    )
    section.data = {
        "jobs": n,
        "durations": [lo, hi],
        "deploy": [list(step) for step in deploy],
        "start": start,
        "rounds": results,
        "down_target": DOWN_TARGET,
    }
    return section
