"""Benchmark 6: the learned schedule (`PollPolicy(learn=True)`) against today's static one.

The exact simulation of `economy.py`, with what the learned schedule needs on
top: an operation per job, whole-second server stamps (`created_at` falls at a
random point of its second), and a model fed as the client feeds it (running
time at each poll, the stamps at the end). Constants were frozen on the quick
and broker fixtures; every other shape here is held out. Warm runs replay jobs
one after another after a warm-up of the same shape (a service's steady state);
cold runs start a bulk of jobs together on an empty model.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import statistics
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jobwatch
from jobwatch._learn import (
    COST,
    DRIFT_JOBS,
    DRIFT_SIGMAS,
    MEMORY,
    SUPPORT,
    WARMUP,
    LearnedSchedule,
)

from ._report import Figure, Progress, Section, Summary
from ._server import AUTHORIZATION, ServerProcess, now
from .economy import PEERS, Job, Result, broker_mix, quick_mix, simulate

POLICY = jobwatch.PollPolicy()
LEARN = jobwatch.PollPolicy(learn=True)
CF_CLI = PEERS[0]
#: A second of server time as an epoch, so that the stamps are whole seconds.
BASE = 1_700_000_000
#: Jobs measured per shift: "the first ~50 jobs after durations shift 5x".
SHIFT_JOBS = 50

Mix = list[tuple[str, Job]]


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def lognormal(n: int, median: float, sigma: float, seed: int, op: str = "op") -> Mix:
    rng = random.Random(seed)
    return [(op, Job(_lognormal(rng, median, sigma))) for _ in range(n)]


def weibull(n: int, scale: float, shape: float, seed: int) -> Mix:
    rng = random.Random(seed)
    return [("op", Job(rng.weibullvariate(scale, shape))) for _ in range(n)]


def bimodal(n: int, seed: int) -> Mix:
    """Half the jobs about 2 s, half about 20 s (one operation, two code paths)."""
    rng = random.Random(seed)
    return [
        ("op", Job(_lognormal(rng, 2.0 if rng.random() < 0.5 else 20.0, 0.3))) for _ in range(n)
    ]


def four_operations(n: int, seed: int) -> Mix:
    """app.delete (3 s), space.apply_manifest (8 s), buildpack.upload (25 s), a broker create."""
    rng = random.Random(seed)
    broker = iter(broker_mix(n, seed=seed + 1))
    jobs: Mix = []
    for _ in range(n):
        pick = rng.randrange(4)
        if pick == 0:
            jobs.append(("app.delete", Job(_lognormal(rng, 3.0, 0.8))))
        elif pick == 1:
            jobs.append(("space.apply_manifest", Job(_lognormal(rng, 8.0, 0.5))))
        elif pick == 2:
            jobs.append(("buildpack.upload", Job(_lognormal(rng, 25.0, 0.6))))
        else:
            jobs.append(("service_instance.create", next(broker)))
    return jobs


def named(jobs: Sequence[Job], op: str = "op") -> Mix:
    return [(op, job) for job in jobs]


def stretched(jobs: Mix, factor: float) -> Mix:
    """The same jobs, every duration (and the POLLING start) multiplied by `factor`."""
    return [(op, Job(j.ends * factor, j.polling_from * factor)) for op, j in jobs]


def replay(
    jobs: Mix, learned: LearnedSchedule | None, *, measure_from: int = 0, seed: int = 3
) -> Result:
    """Each job in turn, as `JobPoll` runs it: the first GET at once, then the schedule.

    Without `learned` this is `economy.simulate` of the static policy (the same
    draws of the same generator); with it, the model sees what the client would.
    """
    rng, phases = random.Random(seed), random.Random(seed + 1000)
    requests, delays = [], []
    for k, (op, job) in enumerate(jobs):
        phase = phases.random()  # created_at truncates the creation time to its second
        t, n, step, last, seen = 0.0, 0, 0, "", 0.0
        while True:
            n += 1
            state = job.state(t)
            if state == "COMPLETE":
                if learned is not None:
                    learned.observe_end(op, BASE, BASE + math.floor(phase + job.ends), seen)
                break
            if state != last:
                step = 0
            last = state
            if learned is None:
                wait = POLICY.interval(state, step, rng)
            else:
                age = t + phase
                learned.observe_running(op, age, seen)
                seen = max(seen, age)
                wait = learned.next_interval(op, state, age, step, rng)
            step += 1
            t += wait
        if k >= measure_from:
            requests.append(n)
            delays.append(t - job.ends)
    return Result(requests, delays)


def bulk(
    jobs: Mix, learned: LearnedSchedule | None, *, spread: float = 2.0, seed: int = 3
) -> Result:
    """All the jobs created within `spread` seconds and waited on together (one heap)."""
    rng, phases = random.Random(seed), random.Random(seed + 1000)
    starts = sorted(phases.uniform(0, spread) for _ in jobs)
    heap = [(start, i) for i, start in enumerate(starts)]
    heapq.heapify(heap)
    steps, lasts, seens, counts = (
        [0] * len(jobs),
        [""] * len(jobs),
        [0.0] * len(jobs),
        [0] * len(jobs),
    )
    delays = [0.0] * len(jobs)
    while heap:
        t, i = heapq.heappop(heap)
        op, job = jobs[i]
        start = starts[i]
        created = math.floor(start)
        age = t - created  # the stamps' frame
        counts[i] += 1
        state = job.state(t - start)
        if state == "COMPLETE":
            if learned is not None:
                learned.observe_end(
                    op, BASE + created, BASE + math.floor(start + job.ends), seens[i]
                )
            delays[i] = t - start - job.ends
            continue
        if state != lasts[i]:
            steps[i] = 0
        lasts[i] = state
        if learned is None:
            wait = POLICY.interval(state, steps[i], rng)
        else:
            learned.observe_running(op, age, seens[i])
            seens[i] = max(seens[i], age)
            wait = learned.next_interval(op, state, age, steps[i], rng)
        steps[i] += 1
        heapq.heappush(heap, (t + wait, i))
    return Result(counts, delays)


@dataclass(frozen=True)
class Row:
    name: str
    static: Result
    learned: Result
    cf: Result


def warm(name: str, make: Callable[[int, int], Mix], n: int, warmup: int = 600) -> Row:
    """Steady state: `warmup` jobs of the shape teach the model, the next `n` are measured."""
    jobs = make(warmup + n, 11)
    measured = [job for _, job in jobs[warmup:]]
    return Row(
        name,
        replay(jobs, None, measure_from=warmup),
        replay(jobs, LearnedSchedule(LEARN), measure_from=warmup),
        simulate(measured, CF_CLI),
    )


def shift(name: str, make: Callable[[int, int], Mix], factor: float, rounds: int) -> Row:
    """The first `SHIFT_JOBS` jobs after every duration is multiplied by `factor`, on a model
    warmed on the old durations; `rounds` independent samples pooled."""
    static, learned, cf = Result([], []), Result([], []), Result([], [])
    for r in range(rounds):
        before = make(600, 100 + r)
        after = stretched(make(SHIFT_JOBS, 200 + r), factor)
        jobs = before + after
        for into, result in (
            (static, replay(jobs, None, measure_from=len(before), seed=r)),
            (learned, replay(jobs, LearnedSchedule(LEARN), measure_from=len(before), seed=r)),
            (cf, simulate([job for _, job in after], CF_CLI)),
        ):
            into.requests.extend(result.requests)
            into.delays.extend(result.delays)
    return Row(name, static, learned, cf)


def cold(name: str, make: Callable[[int, int], Mix], n: int) -> Row:
    """A bulk of `n` jobs created together, waited on together, on an empty model."""
    jobs = make(n, 21)
    return Row(
        name,
        bulk(jobs, None),
        bulk(jobs, LearnedSchedule(LEARN)),
        simulate([job for _, job in jobs], CF_CLI),
    )


def _quick(n: int, seed: int) -> Mix:
    return named(quick_mix(n, seed=seed))


def _broker(n: int, seed: int) -> Mix:
    return named(broker_mix(n, seed=seed))


HELD_OUT: list[tuple[str, Callable[[int, int], Mix]]] = [
    ("log-normal median 1 s, sigma 0.8", lambda n, s: lognormal(n, 1.0, 0.8, s)),
    ("log-normal median 10 s, sigma 0.8", lambda n, s: lognormal(n, 10.0, 0.8, s)),
    ("log-normal median 40 s, sigma 0.8", lambda n, s: lognormal(n, 40.0, 0.8, s)),
    ("narrow: near-constant 5 s (sigma 0.05)", lambda n, s: lognormal(n, 5.0, 0.05, s)),
    ("narrow: median 3 s, sigma 0.3", lambda n, s: lognormal(n, 3.0, 0.3, s)),
    ("wide: median 3 s, sigma 1.5", lambda n, s: lognormal(n, 3.0, 1.5, s)),
    ("Weibull scale 5 s, shape 1.5", lambda n, s: weibull(n, 5.0, 1.5, s)),
    ("Weibull scale 5 s, shape 0.7", lambda n, s: weibull(n, 5.0, 0.7, s)),
    ("bimodal 2 s / 20 s", bimodal),
    ("four operations", four_operations),
]


def decision_cost() -> tuple[float, float]:
    """Microseconds per poll of a running job with a warm model (quick jobs): its running
    time counted (`observe_running`) plus the next interval chosen (`next_interval`), each
    timed on its own warm model so that the counting does not drift the deciding; and per
    static `interval`."""
    deciding, counting = LearnedSchedule(LEARN), LearnedSchedule(LEARN)
    replay(_quick(1000, 5), deciding)
    replay(_quick(1000, 5), counting)
    rng = random.Random(1)
    ages = iter([rng.uniform(0, 12) for _ in range(1000)] * 1000)
    number = 200_000

    def best(call: Callable[[], object]) -> float:
        return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6

    decide = best(lambda: deciding.next_interval("op", "PROCESSING", next(ages), 1, rng))
    count = best(lambda: counting.observe_running("op", 3.0, 2.0))
    static = best(lambda: POLICY.interval("PROCESSING", 1, rng))
    return decide + count, static


def _cells(r: Result) -> str:
    return (
        f"{r.mean_requests:.2f} / {r.delay(50):.2f} / {r.delay(95):.2f} / "
        f"{statistics.fmean(r.delays):.2f}"
    )


def cost(r: Result) -> float:
    """What the learned rule minimises: mean delay plus `COST` seconds per GET."""
    return statistics.fmean(r.delays) + COST * r.mean_requests


def _never_loses(row: Row) -> bool:
    """No worse than static on both counts: GETs and mean delay each within 2 %."""
    s, lrn = row.static, row.learned
    return lrn.mean_requests <= 1.02 * s.mean_requests and statistics.fmean(
        lrn.delays
    ) <= 1.02 * statistics.fmean(s.delays)


def _cheaper(row: Row) -> bool:
    """No worse than static on the rule's own objective (`cost`), within 1 %."""
    return cost(row.learned) <= 1.01 * cost(row.static)


async def _real_run(server: ServerProcess, jobs: Sequence[Job], policy: jobwatch.PollPolicy,
                    learned_from: Sequence[Job]) -> Result:  # fmt: skip
    async with jobwatch.Client(server.url, token=AUTHORIZATION, poll=policy) as client:
        if learned_from:  # the warm-up: the same shape, waited on first
            warmup = server.add(
                [[(0.0, "PROCESSING"), (j.ends, "COMPLETE")] for j in learned_from]
            )
            await client.wait_for_jobs(warmup, timeout=600)
        guids = server.add([[(0.0, "PROCESSING"), (job.ends, "COMPLETE")] for job in jobs])
        seen: dict[str, float] = {}
        async for outcome in client.as_completed(guids, timeout=600):
            if not outcome.ok:
                raise RuntimeError(f"job {outcome.guid} did not complete: {outcome.error}")
            seen[outcome.guid] = now()
    ended = server.finished(guids)
    delays = []
    for guid, end in zip(guids, ended, strict=True):
        assert end is not None
        delays.append(seen[guid] - end)
    return Result(server.polls(guids), delays)


def confirm(n: int, warmup: int, progress: Progress) -> list[list[str]]:
    """Real HTTP, real time (the stamps are whole seconds: time cannot be scaled): quick jobs
    waited on as one bulk after a bulk warm-up, learned and static, against `bulk()`."""
    jobs = [job for _, job in _quick(warmup + n, 31)]
    before, measured = jobs[:warmup], jobs[warmup:]
    with ServerProcess() as server:
        real_static = asyncio.run(_real_run(server, measured, POLICY, ()))
        progress("learned: real-HTTP static run done")
        real_learned = asyncio.run(_real_run(server, measured, LEARN, before))
        progress("learned: real-HTTP learned run done")
    sim_learned_model = LearnedSchedule(LEARN)
    bulk(named(before), sim_learned_model, spread=0.2)
    sims = {
        "static (defaults)": (bulk(named(measured), None, spread=0.2), real_static),
        "learned (after a warm-up bulk)": (
            bulk(named(measured), sim_learned_model, spread=0.2),
            real_learned,
        ),
    }
    rows = []
    for name, (sim, real) in sims.items():
        for label, figure in (
            ("GETs per job", lambda r: r.mean_requests),
            ("delay p50 (s)", lambda r: r.delay(50)),
            ("delay p95 (s)", lambda r: r.delay(95)),
        ):
            rows.append([name, label, f"{figure(sim):.2f}", Summary.of([figure(real)]).fmt(2)])
    return rows


def run(quick: bool, progress: Progress) -> Section:
    """Simulate every shape, warm, shifted and cold; time a decision; check over HTTP."""
    n, rounds, n_cold = (1_000, 4, 500) if quick else (10_000, 40, 2_000)
    frozen = [warm("quick (fixture)", _quick, n), warm("broker (fixture)", _broker, n)]
    progress("learned: fixtures simulated")
    held = [warm(name, make, n) for name, make in HELD_OUT]
    progress("learned: held-out shapes simulated")
    shifts = [
        shift("quick, durations x5", _quick, 5.0, rounds),
        shift("quick, durations /5", _quick, 0.2, rounds),
        shift("broker, durations x5", _broker, 5.0, rounds),
        shift("broker, durations /5", _broker, 0.2, rounds),
        shift("four operations, x5", four_operations, 5.0, rounds),
        shift("four operations, /5", four_operations, 0.2, rounds),
    ]
    progress("learned: shifts simulated")
    colds = [
        cold("cold bulk: quick", _quick, n_cold),
        cold("cold bulk: broker", _broker, n_cold),
        cold("cold bulk: four operations", four_operations, n_cold),
        cold("cold bulk: wide (sigma 1.5)", lambda k, s: lognormal(k, 3.0, 1.5, s), n_cold),
    ]
    progress("learned: cold bulks simulated")
    per_decision, per_static = decision_cost()
    # Real time (whole-second stamps): minutes, so left out of the quick run.
    real = [] if quick else confirm(150, 150, progress)

    everything = frozen + held + shifts + colds
    losses = [row.name for row in held + shifts + colds if not _never_loses(row)]
    dearer = [row.name for row in held + shifts + colds if not _cheaper(row)]
    section = Section("learned", "6. The learned schedule (opt-in)")
    q, b = frozen
    section.figures = [
        Figure(
            "learned schedule, broker fixture: delay p50 / p95, learned vs static",
            f"{b.learned.delay(50):.1f} / {b.learned.delay(95):.1f} s vs "
            f"{b.static.delay(50):.1f} / {b.static.delay(95):.1f} s "
            f"(GETs {b.learned.mean_requests:.1f} vs {b.static.mean_requests:.1f})",
            "lower, GETs within 5 %",
            b.learned.delay(50) < b.static.delay(50) and _never_loses(b),
        ),
        Figure(
            "learned schedule: held-out, shifted and cold cases with more GETs or more delay",
            f"{len(losses)} of {len(held + shifts + colds)}",
            "none (to be the default)",
            None,
        ),
        Figure(
            "learned schedule: cases where delay + c x GETs is higher than static's",
            ", ".join(dearer) or "none",
            "none",
            not dearer,
        ),
        Figure(
            "learned schedule: cost of one decision (warm model)",
            f"{per_decision:.2f} us (static: {per_static:.2f} us)",
            "single microseconds",
            per_decision < 10,
        ),
    ]
    del q
    section.add(
        "`PollPolicy(learn=True)` against the static defaults (`PollPolicy()`) and the cf "
        "CLI (first GET at once, then every 3 s), replayed exactly (no HTTP) on the "
        "same jobs, the same generator of jitter and the same second-truncated stamps. "
        f"Constants, frozen on the quick and broker fixtures (and their 5x shifts, for the "
        f"shift detector): c = {COST:g} s per GET, an effective memory of {MEMORY:g} jobs, "
        f"the static prior until {WARMUP:g} ends and at ages fewer than {SUPPORT:g} jobs "
        f"were seen running at, forgetting all but {WARMUP:g} jobs' worth when the ends "
        f"seen stray {DRIFT_SIGMAS:g} standard deviations from those expected over "
        f"~{DRIFT_JOBS:g} ends. "
        f"**Warm**: {n:,} jobs measured after 600 of the same shape, one after another. "
        f"**Shifts**: every duration multiplied by 5 (or divided by 5) after 600 jobs of "
        f"the old shape; the first {SHIFT_JOBS} jobs after the shift measured, {rounds} "
        f"samples pooled. **Cold**: {n_cold:,} jobs created within 2 s and waited on as one "
        "bulk on an empty model. Each cell: GETs per job / delay p50 / p95 / mean (s)."
    )
    section.add()
    section.table(
        ["case", "cf CLI (fixed 3 s)", "static (defaults)", "learned",
         "delay + c x GETs, learned / static", "no worse on both"],
        [
            [row.name, _cells(row.cf), _cells(row.static), _cells(row.learned),
             f"{cost(row.learned):.2f} / {cost(row.static):.2f}",
             "yes" if _never_loses(row) else "**no**"]
            for row in everything
        ],
    )  # fmt: skip
    section.add(
        '"No worse on both": GETs per job and mean delay each at most 2 % above '
        f"static's. The learned rule minimises mean delay + c x GETs (c = {COST:g} s), so it "
        "moves along that trade-off rather than below the static schedule on both counts. "
        f"**Cost per decision** (`timeit`, warm quick model): {per_decision:.2f} us for "
        "`observe_running` + `next_interval` (a poll of a running job), against "
        f"{per_static:.2f} us "
        "for the static `PollPolicy.interval`."
    )
    section.add()
    section.add(
        "**Real HTTP check** (real time: the stamps are whole seconds, so time cannot be "
        "scaled down): quick jobs served by the fake Cloud Controller, waited on as one bulk "
        "(`as_completed`) by a client with the static defaults, then by a `learn=True` "
        "client after a warm-up bulk of the same shape; the simulated column replays the "
        "same jobs with `bulk()` (created within 0.2 s)."
    )
    section.add()
    if real:
        section.table(["schedule", "figure", "simulated", "real HTTP"], real)
    else:
        section.add("(Skipped in quick mode: it runs in real time.)")
    section.data = {
        "rows": {
            row.name: {
                name: [r.mean_requests, r.delay(50), r.delay(95), statistics.fmean(r.delays)]
                for name, r in (("cf", row.cf), ("static", row.static), ("learned", row.learned))
            }
            for row in everything
        },
        "losses": losses,
        "dearer": dearer,
        "decision_us": per_decision,
        "static_decision_us": per_static,
        "confirm": real,
    }
    return section
