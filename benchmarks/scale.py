"""Benchmark 2: thousands of jobs at once, and 100,000 waits that do not end."""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from typing import Any

import attrs

import jobwatch

from ._report import Figure, Progress, Section, Summary
from ._server import AUTHORIZATION, ServerProcess

WALL_TARGET = 1.3
MEMORY_TARGET = 2048  # bytes per waiting job
CANCEL_TARGET = 1.0  # seconds

#: Long enough that no job is polled twice while the memory is measured.
IDLE_POLICY = jobwatch.PollPolicy(
    initial=3600, maximum=3600, polling_initial=3600, polling_maximum=3600
)


def _rss() -> int:
    """Resident set size of this process, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def interval_at(policy: jobwatch.PollPolicy, t: float) -> float:
    """The (unjittered) PROCESSING interval in force at `t` seconds after the first poll."""
    at = 0.0
    for delay in attrs.evolve(policy, jitter=0).delays("PROCESSING"):
        if at + delay >= t:
            return delay
        at += delay
    raise AssertionError("unreachable")  # pragma: no cover


async def _wait_all(
    server: ServerProcess, guids: list[str], policy: jobwatch.PollPolicy
) -> dict[str, float]:
    async with jobwatch.Client(server.url, token=AUTHORIZATION, poll=policy) as client:
        requests0, server_cpu0 = server.requests(), server.cpu()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcomes = await client.wait_for_jobs(guids, timeout=120)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    requests = server.requests() - requests0
    return {
        "wall": wall,
        "cpu_per_poll_us": cpu / requests * 1e6,
        "requests_per_job": requests / len(guids),
        "completed": sum(o.ok and o.job is not None for o in outcomes.values()),
        "server_busy": (server.cpu() - server_cpu0) / wall,
        "client_busy": cpu / wall,
    }


def _site(frame: str) -> str:
    """`jobwatch/_bulk.py:89` rather than the full path of this machine."""
    for root in ("/jobwatch/", "/site-packages/", "/python3."):
        if root in frame:
            tail = frame.split(root, 1)[1]
            return ("jobwatch/" + tail) if root == "/jobwatch/" else tail.split("/", 1)[-1]
    return frame


async def _hold(server: ServerProcess, guids: list[str], trace: bool) -> dict[str, Any]:
    """Wait on every job, measure memory once all are waiting, then cancel and time it."""
    async with jobwatch.Client(server.url, token=AUTHORIZATION, poll=IDLE_POLICY) as client:
        await client.get_job(guids[0])  # open the session and connection pool first
        gc.collect()
        requests0 = client.stats.requests
        rss0 = _rss()
        if trace:
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
        traced0 = tracemalloc.get_traced_memory()[0] if trace else 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        task = asyncio.create_task(client.wait_for_jobs(guids, timeout=None))
        # Sampling the counters is the measurement here: no event to wait on.
        while client.stats.requests - requests0 < len(guids) or client.stats.in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        gc.collect()
        waiting = client.stats.waiting
        result: dict[str, Any] = {
            "waiting": waiting,
            "first_wave_s": wall,
            "cpu_per_poll_us": cpu / len(guids) * 1e6,
            "rss_per_job": (_rss() - rss0) / len(guids),
        }
        if trace:
            current, peak = tracemalloc.get_traced_memory()
            sites = tracemalloc.take_snapshot().compare_to(before, "lineno")
            tracemalloc.stop()
            result["traced_per_job"] = (current - traced0) / len(guids)
            result["traced_peak_per_job"] = (peak - traced0) / len(guids)
            result["sites"] = [
                (_site(str(stat.traceback[0])), stat.size_diff / len(guids)) for stat in sites[:10]
            ]
        t0 = time.perf_counter()
        task.cancel()
        await asyncio.wait([task])
        result["cancel_s"] = time.perf_counter() - t0
        result["waiting_after_cancel"] = client.stats.waiting
        result["cancelled"] = task.cancelled()
    return result


def run(quick: bool, progress: Progress) -> Section:
    """Both scale benchmarks, and the section."""
    n_finish, finish_rounds = (200, 1) if quick else (10_000, 3)
    n_hold, hold_rounds = (1_000, 1) if quick else (100_000, 2)
    n_trace = 300 if quick else 10_000
    policy = jobwatch.PollPolicy()
    rng = random.Random(6)
    finishing: list[dict[str, float]] = []
    ideals: list[float] = []
    with ServerProcess() as server:
        for i in range(finish_rounds):
            durations = [rng.uniform(0.2, 2.0) for _ in range(n_finish)]
            guids = server.add([[(0.0, "PROCESSING"), (d, "COMPLETE")] for d in durations])
            longest = max(durations)
            ideals.append(longest + interval_at(policy, longest))
            finishing.append(asyncio.run(_wait_all(server, guids, policy)))
            progress(f"scale: {n_finish} finishing jobs, round {i + 1}/{finish_rounds}")
    holding: list[dict[str, Any]] = []
    for i in range(hold_rounds):
        with ServerProcess() as server:
            guids = server.add_same(n_hold, [(0.0, "PROCESSING")])
            holding.append(asyncio.run(_hold(server, guids, trace=False)))
        progress(f"scale: {n_hold} waiting jobs, round {i + 1}/{hold_rounds}")
    # Tracing every allocation slows the client several times over: one smaller run.
    with ServerProcess() as server:
        guids = server.add_same(n_trace, [(0.0, "PROCESSING")])
        traced: dict[str, Any] = asyncio.run(_hold(server, guids, trace=True))
    progress(f"scale: {n_trace} waiting jobs, traced")

    wall = Summary.of([r["wall"] for r in finishing])
    ratio = Summary.of([r["wall"] / ideal for r, ideal in zip(finishing, ideals, strict=True)])
    busy = Summary.of([r["server_busy"] for r in finishing])
    completed = min(r["completed"] for r in finishing)
    per_job = float(traced["traced_per_job"])
    rss = Summary.of([r["rss_per_job"] for r in holding])
    cancel = Summary.of([r["cancel_s"] for r in holding])
    hold_cpu = Summary.of([r["cpu_per_poll_us"] for r in holding])
    finish_cpu = Summary.of([r["cpu_per_poll_us"] for r in finishing])

    section = Section("scale", "2. Scale")
    section.figures = [
        Figure(
            f"{n_finish:,} jobs ending 0.2-2 s after their first poll: completed",
            f"{completed:,} of {n_finish:,}",
            "all",
            completed == n_finish,
        ),
        Figure(
            f"{n_finish:,} jobs: wall time / ideal (longest job + one interval)",
            ratio.fmt(2, "x"),
            f"<= {WALL_TARGET}x",
            ratio.median <= WALL_TARGET,
        ),
        Figure(
            "memory per waiting job, Python objects (tracemalloc)",
            f"{per_job:,.0f} B ({n_trace:,} jobs)",
            f"<= {MEMORY_TARGET:,} B",
            per_job <= MEMORY_TARGET,
        ),
        Figure(
            "memory per waiting job, resident set size",
            f"{rss.fmt(0, ' B')} ({n_hold:,} jobs)",
            f"<= {MEMORY_TARGET:,} B",
            rss.median <= MEMORY_TARGET,
        ),
        Figure(
            f"{n_hold:,} waiting jobs: time to cancel them all",
            cancel.fmt(3, " s"),
            f"< {CANCEL_TARGET:.0f} s",
            cancel.median < CANCEL_TARGET,
        ),
        Figure(
            "client CPU per poll at scale",
            f"{finish_cpu.fmt(0, ' µs')} ({n_finish:,} ending jobs); "
            f"{hold_cpu.fmt(0, ' µs')} ({n_hold:,} first polls)",
        ),
    ]
    section.add(
        f"**{n_finish:,} jobs that end.** Each job turns COMPLETE a uniform 0.2-2 s after "
        f"its first GET; one `wait_for_jobs` call, default `PollPolicy()` "
        f"({policy.initial:g} s x{policy.multiplier:g}, jitter {policy.jitter:.0%}), "
        "`max_in_flight=32`. The ideal is the longest job plus the interval that spans "
        "its end: what a client whose requests cost nothing would take."
    )
    section.add()
    section.table(
        ["round", "completed", "wall (s)", "ideal (s)", "ratio", "GETs per job",
         "client CPU per poll (µs)", "client core busy", "server core busy"],
        [
            [i + 1, f"{r['completed']:,.0f}", f"{r['wall']:.2f}", f"{ideal:.2f}",
             f"{r['wall'] / ideal:.2f}x", f"{r['requests_per_job']:.2f}",
             f"{r['cpu_per_poll_us']:.0f}", f"{r['client_busy']:.0%}",
             f"{r['server_busy']:.0%}"]
            for i, (r, ideal) in enumerate(zip(finishing, ideals, strict=True))
        ],
    )  # fmt: skip
    client_busy = Summary.of([r["client_busy"] for r in finishing])
    gets = Summary.of([r["requests_per_job"] for r in finishing]).median * n_finish
    section.add(
        f"Wall time {wall.fmt(2, ' s')}. The client's core was busy {client_busy.fmt(2)} "
        f"of it and the server's {busy.fmt(2)} (1.00 = saturated). The ideal counts no "
        f"time for the requests themselves: {n_finish:,} first GETs cannot all go out at "
        "once, so the last jobs start (their clock starts at their first GET) seconds "
        "after the first, and their second poll, due one interval later, waits its turn "
        "behind the queue. At "
        f"{finish_cpu.median:.0f} µs of client CPU per GET, the {gets:,.0f} GETs alone cost "
        f"about {finish_cpu.median * gets / 1e6:.1f} s of the client's core."
    )
    section.add()
    section.add(
        f"**Waits that never end.** One `wait_for_jobs(..., timeout=None)` over "
        f"{n_hold:,} jobs that stay PROCESSING, with hour-long intervals so that each job "
        "is polled exactly once while memory is measured; its last `Job` is kept, as in "
        "any wait. Growth is measured from just before the call to the moment every "
        "first answer is in; then the waiting task is cancelled and timed until it has "
        "ended and no poll loop is left. tracemalloc slows the client several times "
        f"over, so the Python-object figure comes from a separate run of {n_trace:,} jobs "
        "(memory per job does not depend on the count)."
    )
    section.add()
    section.table(
        ["round", "first polls done in (s)", "client CPU per poll (µs)", "RSS per job",
         "cancel all (s)", "poll loops left"],
        [
            [i + 1, f"{r['first_wave_s']:.1f}", f"{r['cpu_per_poll_us']:.0f}",
             f"{r['rss_per_job']:,.0f} B", f"{r['cancel_s']:.3f}",
             f"{r['waiting_after_cancel']:.0f}"]
            for i, r in enumerate(holding)
        ],
    )  # fmt: skip
    section.add(
        f"Traced ({n_trace:,} jobs): {per_job:,.0f} B per waiting job once all are "
        f"waiting, {float(traced['traced_peak_per_job']):,.0f} B at the peak (requests in "
        "flight included). The allocation sites that hold it, per job:"
    )
    section.add()
    section.table(
        ["allocated at", "bytes per job"], [[site, f"{b:,.0f}"] for site, b in traced["sites"]]
    )
    section.add(
        "The RSS figure also counts what the allocator keeps from the first wave's "
        "transient buffers, so it reads a little above the live objects."
    )
    section.data = {
        "finishing": finishing,
        "ideals": ideals,
        "holding": holding,
        "traced": traced,
        "memory_target": MEMORY_TARGET,
        "jobs": {"finishing": n_finish, "holding": n_hold, "traced": n_trace},
    }
    return section
