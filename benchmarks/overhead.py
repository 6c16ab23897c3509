"""Benchmark 1: client CPU per poll, jobwatch against a raw aiohttp GET + json.loads loop."""

from __future__ import annotations

import asyncio
import collections
import cProfile
import gc
import json
import pstats
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

import jobwatch

try:
    import uvloop
except ImportError:  # pragma: no cover - the dev extra installs it
    uvloop = None
from jobwatch import _transport

from ._report import Figure, Progress, Section, Summary, ratios
from ._server import AUTHORIZATION, ServerProcess

CONCURRENCY = 32
TARGET = 1.1

Variant = Callable[[], Awaitable[None]]

#: Each variant of the side-by-side rounds, as its row of the table names it.
LABELS = {
    "raw": "raw aiohttp GET + json.loads",
    "get_jobs": "`Client.get_jobs(guids)`",
    "get_job loop": f"`Client.get_job` from {CONCURRENCY} coroutines",
    "transport alone": (
        f"the transport alone (`fetch_job` from {CONCURRENCY} coroutines, no scheduler)"
    ),
    "get_jobs, gc off": "`Client.get_jobs(guids)`, the garbage collector off",
    "get_jobs, stdlib json": "`Client.get_jobs(guids)`, the stdlib's json (no `fast` extra)",
}


async def raw_loop(
    session: aiohttp.ClientSession, url: str, guids: Sequence[str], concurrency: int
) -> None:
    """The floor: what a careful user would write with aiohttp alone."""
    headers = {"Authorization": AUTHORIZATION, "Accept": "application/json"}
    pending = iter(guids)

    async def worker() -> None:
        for guid in pending:
            async with session.get(f"{url}/v3/jobs/{guid}", headers=headers) as resp:
                body = await resp.read()
            if resp.status != 200 or json.loads(body)["guid"] != guid:
                raise RuntimeError(f"raw GET failed: {resp.status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def bulk(client: jobwatch.Client, guids: Sequence[str]) -> None:
    """jobwatch's bulk status check: one `get_jobs` over every guid."""
    outcomes = await client.get_jobs(guids)
    if len(outcomes) != len(guids) or not all(o.ok for o in outcomes.values()):
        raise RuntimeError("get_jobs failed")


async def bulk_stdlib_json(client: jobwatch.Client, guids: Sequence[str]) -> None:
    """`get_jobs` as installed without the `fast` extra: the stdlib decodes each job."""
    fast, _transport.fast_loads = _transport.fast_loads, None
    try:
        await bulk(client, guids)
    finally:
        _transport.fast_loads = fast


async def bulk_without_gc(client: jobwatch.Client, guids: Sequence[str]) -> None:
    """`get_jobs` with the cyclic garbage collector off: its share of the bulk call's cost.

    A bulk call holds a poll loop per job until the last answer, so its objects live
    long enough to be collected and promoted; a loop of `get_job` frees each at once.
    """
    gc.disable()
    try:
        await bulk(client, guids)
    finally:
        gc.enable()


async def transport_alone(client: jobwatch.Client, guids: Sequence[str], concurrency: int) -> None:
    """The client's transport without its scheduler: decoding, structuring, bookkeeping.

    Splits the gap to the raw loop in two: what a poll costs in `_transport` and
    `_models`, and what the scheduler and the waiters add on top.
    """
    transport = client._transport  # the part measured on its own, on purpose
    prefix = f"{client.api_url}/v3/jobs/"
    pending = iter(guids)

    async def worker() -> None:
        for guid in pending:
            transport.budget.sent(asyncio.get_running_loop().time())
            await transport.fetch_job(prefix + guid)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def get_job_loop(client: jobwatch.Client, guids: Sequence[str], concurrency: int) -> None:
    """`get_job` one at a time from as many coroutines as the raw loop has."""
    pending = iter(guids)

    async def worker() -> None:
        for guid in pending:
            await client.get_job(guid)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _group(filename: str, function: str) -> str:
    """Where a profiled function lives: a jobwatch module, or a third-party package."""
    if "/jobwatch/" in filename or filename.startswith("<attrs generated") or "cattrs" in filename:
        if "/jobwatch/" in filename:
            return "jobwatch." + filename.rsplit("/", 1)[-1].removesuffix(".py")
        return "attrs/cattrs generated code"
    for package in ("aiohttp", "yarl", "multidict", "asyncio", "json", "cattrs", "attr"):
        if f"/{package}/" in filename:
            return package
    if "/benchmarks/" in filename:
        return "the raw loop's own code"
    if filename == "~":
        if "socket" in function or "epoll" in function:
            return "socket syscalls"
        return "builtins"
    return "other: " + filename.rsplit("/", 1)[-1]


class _Profile:
    """Own time per request, summed over profiled runs, by where the code lives."""

    def __init__(self) -> None:
        self.groups: collections.Counter[str] = collections.Counter()
        self.functions: collections.Counter[str] = collections.Counter()
        self.requests = 0

    async def record(self, variant: Variant, n: int) -> None:
        profile = cProfile.Profile()
        profile.enable()
        await variant()
        profile.disable()
        self.requests += n
        stats = pstats.Stats(profile)
        for (filename, line, function), row in stats.stats.items():  # type: ignore[attr-defined]
            self.groups[_group(filename, function)] += row[2]
            if "/jobwatch/" in filename:
                module = filename.rsplit("/", 1)[-1]
                self.functions[f"{module}:{line} {function}"] += row[2]

    def per_request(self) -> tuple[dict[str, float], list[tuple[str, float]]]:
        """Microseconds per request, by group and by jobwatch function (costliest first)."""
        scale = 1e6 / self.requests
        groups = {name: t * scale for name, t in self.groups.items()}
        functions = [(name, t * scale) for name, t in self.functions.most_common()]
        return groups, functions


async def _measure(
    url: str,
    guids: Sequence[str],
    rounds: int,
    profile_rounds: int,
    progress: Progress,
    only: Sequence[str] = tuple(LABELS),
) -> dict[str, object]:
    """`rounds` of the variants named in `only`, side by side; then the profiled rounds."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        jobwatch.Client(url, token=AUTHORIZATION, max_in_flight=CONCURRENCY) as client,
    ):
        every: dict[str, Variant] = {
            "raw": lambda: raw_loop(session, url, guids, CONCURRENCY),
            "get_jobs": lambda: bulk(client, guids),
            "get_job loop": lambda: get_job_loop(client, guids, CONCURRENCY),
            "get_jobs, stdlib json": lambda: bulk_stdlib_json(client, guids),
            "transport alone": lambda: transport_alone(client, guids, CONCURRENCY),
            "get_jobs, gc off": lambda: bulk_without_gc(client, guids),
        }
        variants = {name: every[name] for name in only}
        for variant in variants.values():  # warm up connections, caches and code paths
            await variant()
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        wall: dict[str, list[float]] = {name: [] for name in variants}
        for i in range(rounds):
            for name, variant in variants.items():  # A B C, A B C, ...
                c0, w0 = time.process_time(), time.perf_counter()
                await variant()
                cpu[name].append((time.process_time() - c0) / len(guids) * 1e6)
                wall[name].append(time.perf_counter() - w0)
            progress(f"overhead round {i + 1}/{rounds}")
        profiles = {"raw": _Profile(), "get_jobs": _Profile()} if profile_rounds else {}
        for _ in range(profile_rounds):
            for name, profile in profiles.items():
                await profile.record(variants[name], len(guids))
    return {
        "cpu": cpu,
        "wall": wall,
        "profiles": {name: profile.per_request() for name, profile in profiles.items()},
    }


def run(quick: bool, progress: Progress) -> Section:
    """Measure, profile, and write the section."""
    # Many short rounds: a burst of load from elsewhere on the machine spoils few pairs.
    n, rounds, profile_rounds = (300, 3, 1) if quick else (1000, 25, 3)
    with ServerProcess() as server:
        guids = server.add_same(n, [(0.0, "PROCESSING")])
        before = server.requests()
        result = asyncio.run(_measure(server.url, guids, rounds, profile_rounds, progress))
        uv_rounds = 0
        uv: dict[str, list[float]] = {}
        if uvloop is not None:
            uv_rounds = max(rounds // 2, 1)
            # The raw loop and `get_jobs` side by side again, on the command's loop.
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                on_uv = _measure(server.url, guids, uv_rounds, 0, progress, ("raw", "get_jobs"))
                uv = runner.run(on_uv)["cpu"]  # type: ignore[assignment]
            progress("overhead on uvloop")
        sent = server.requests() - before
    cpu: dict[str, list[float]] = result["cpu"]  # type: ignore[assignment]
    wall: dict[str, list[float]] = result["wall"]  # type: ignore[assignment]
    profiles: dict[str, tuple[dict[str, float], list[tuple[str, float]]]]
    profiles = result["profiles"]  # type: ignore[assignment]
    expected = n * (len(cpu) * (rounds + 1) + 2 * profile_rounds + len(uv) * (uv_rounds + 1))
    ratio = {name: ratios(cpu["raw"], rounds_cpu) for name, rounds_cpu in cpu.items()}
    bulk_ratio, loop_ratio = ratio["get_jobs"], ratio["get_job loop"]
    decoder = "orjson" if _transport.fast_loads is not None else "the stdlib's json (no orjson)"

    section = Section("overhead", "1. Overhead per poll")
    section.figures = [
        Figure(
            "CPU per poll, `get_jobs` / raw aiohttp",
            bulk_ratio.fmt(2, "x"),
            f"<= {TARGET}x",
            bulk_ratio.median <= TARGET,
        ),
        Figure(
            "CPU per poll, `get_job` loop / raw aiohttp",
            loop_ratio.fmt(2, "x"),
            f"<= {TARGET}x",
            loop_ratio.median <= TARGET,
        ),
        Figure(
            "CPU per poll, `get_jobs` without orjson / raw aiohttp",
            ratio["get_jobs, stdlib json"].fmt(2, "x"),
        ),
        Figure(
            "GETs the server saw, all variants (the same work on each side)",
            f"{sent:,}",
            f"{expected:,}",
            sent == expected,
        ),
    ]
    section.add(
        f"{n} jobs that stay PROCESSING; each round sends one GET per job with each "
        f"variant in turn (raw, `get_jobs`, `get_job` loop, `get_jobs` decoding with the "
        "stdlib's json, the transport alone, `get_jobs` with the garbage collector off; "
        "A B C D E F A B C D E F …), jobwatch's decoder "
        f"{decoder} unless said, "
        f"{CONCURRENCY} requests in flight at most, over a warm connection pool. "
        "CPU is `time.process_time()` of the client process divided by the number "
        f"of requests. The server saw {sent} GETs for {expected} expected."
    )
    best = min(cpu["get_jobs"]) / min(cpu["raw"])
    section.add(
        f"Other processes share the machine, so rounds vary; the ratio of each variant's "
        f"best (lowest-CPU) round, which such load can only spoil, is {best:.2f}x for "
        f"`get_jobs` and {min(cpu['get_job loop']) / min(cpu['raw']):.2f}x for the "
        "`get_job` loop."
    )
    section.add()
    section.table(
        ["variant", "client CPU per poll (µs)", "wall per round (s)", "ratio to raw"],
        [
            [
                label,
                Summary.of(cpu[name]).fmt(0),
                Summary.of(wall[name]).fmt(2),
                "1" if name == "raw" else ratio[name].fmt(2, "x"),
            ]
            for name, label in LABELS.items()
        ],
    )

    if uv:
        uv_ratio = ratios(uv["raw"], uv["get_jobs"])
        raw_uv, bulk_uv = Summary.of(uv["raw"]).median, Summary.of(uv["get_jobs"]).median
        raw_as, bulk_as = Summary.of(cpu["raw"]).median, Summary.of(cpu["get_jobs"]).median
        section.add(
            "**On uvloop** (the `jobwatch` command's loop when the `fast` extra is installed; "
            "the library runs on its caller's loop): the raw loop and `get_jobs` again, "
            f"{uv_rounds} rounds side by side, after the rounds above. Per poll, medians: the "
            f"raw loop {raw_uv:.0f} µs ({raw_uv / raw_as - 1:+.0%} against asyncio's loop), "
            f"`get_jobs` {bulk_uv:.0f} µs ({bulk_uv / bulk_as - 1:+.0%}); `get_jobs` / raw "
            f"on uvloop {uv_ratio.fmt(2, 'x')}."
        )
        section.add()
        section.figures.append(
            Figure("CPU per poll on uvloop, `get_jobs` / raw aiohttp", uv_ratio.fmt(2, "x"))
        )
        section.figures.append(
            Figure(
                "CPU per poll of `get_jobs`, uvloop / asyncio's loop (medians)",
                f"{bulk_uv / bulk_as:.2f}x",
            )
        )
    raw_groups, _ = profiles["raw"]
    jw_groups, jw_functions = profiles["get_jobs"]
    raw_total, jw_total = sum(raw_groups.values()), sum(jw_groups.values())
    own = sum(t for g, t in jw_groups.items() if g.startswith(("jobwatch", "attrs")))
    names = sorted(
        set(raw_groups) | set(jw_groups),
        key=lambda g: -(jw_groups.get(g, 0.0) - raw_groups.get(g, 0.0)),
    )
    rows = [
        [
            name,
            f"{raw_groups.get(name, 0.0):.1f}",
            f"{jw_groups.get(name, 0.0):.1f}",
            f"{jw_groups.get(name, 0.0) - raw_groups.get(name, 0.0):+.1f}",
        ]
        for name in names
        if max(raw_groups.get(name, 0.0), jw_groups.get(name, 0.0)) >= 0.5
    ]
    section.add(
        f"**Where the extra goes.** cProfile of {profile_rounds} raw and {profile_rounds} "
        "`get_jobs` rounds (alternating), own time per request in µs. The profiler "
        "inflates every call, so read the split rather than the totals: the raw loop "
        f"costs {raw_total:.0f} µs per request under the profiler, `get_jobs` "
        f"{jw_total:.0f} µs ({jw_total - raw_total:+.0f} µs); jobwatch's own code "
        f"(its modules plus the attrs/cattrs code generated for its models) is {own:.0f} µs "
        f"of it ({own / jw_total:.0%}). Rows in aiohttp, the socket calls and asyncio "
        "are shared by both loops; their differences are mostly noise between runs."
    )
    section.add()
    section.table(["where", "raw (µs)", "get_jobs (µs)", "difference"], rows)
    section.add("The jobwatch functions with the most own time per request (µs, profiled):")
    section.add()
    section.table(["function", "µs per request"], [[f, f"{t:.1f}"] for f, t in jw_functions[:8]])
    section.data = {
        "jobs": n,
        "rounds": rounds,
        "cpu_us": cpu,
        "wall_s": wall,
        "ratios": {name: r.values for name, r in ratio.items() if name != "raw"},
        "uvloop_cpu_us": uv,
        "decoder": decoder,
        "ratio_best_get_jobs": best,
        "requests_sent": sent,
        "requests_expected": expected,
        "profile_groups": {"raw": raw_groups, "get_jobs": jw_groups},
    }
    return section
