"""Benchmark 4: the `cloudfoundry-client` package with a thread pool, against jobwatch.

The peer is synchronous (requests + polling2). What a user writes to wait on
many jobs with it is a thread pool over `client.v3.jobs.wait_for_job_completion`.
Its constructor fetches `GET /` for the API's links (the fake serves them) and
then needs an OAuth login; the shim below skips the login only: it hands the
client the fake's bearer token the way a finished login would
(`client._access_token = ...`, the setter oauth2-client's own token grant uses),
so every GET the peer sends is its own code from end to end.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import math
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jobwatch

from ._report import Figure, Progress, Section, Summary, ratios
from ._server import AUTHORIZATION, TOKEN, ServerProcess

THREADS = 32


def peer_version() -> str | None:
    """The installed cloudfoundry-client version, or None when the `peer` extra is missing."""
    try:
        return importlib.metadata.version("cloudfoundry-client")
    except importlib.metadata.PackageNotFoundError:
        return None


def make_peer(url: str) -> Any:
    """A logged-in `CloudFoundryClient` for the fake (see the module docstring)."""
    from cloudfoundry_client.client import CloudFoundryClient

    client = CloudFoundryClient(url)
    client._access_token = TOKEN  # what `init_with_*` ends with, minus the UAA round trip
    return client


def run_peer(url: str, guids: Sequence[str], threads: int) -> float:
    """Wait on every job with a pool of `threads`; return the wall time."""
    client = make_peer(url)
    failures: list[BaseException] = []
    lock = threading.Lock()

    def wait(guid: str) -> None:
        try:
            job = client.v3.jobs.wait_for_job_completion(guid)
            if job["state"] != "COMPLETE":
                raise RuntimeError(f"job {guid} ended {job['state']}")
        except BaseException as exc:
            with lock:
                failures.append(exc)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(wait, guids))
    wall = time.perf_counter() - start
    client._session.close()
    if failures:
        raise RuntimeError(f"{len(failures)} peer waits failed, e.g. {failures[0]!r}")
    return wall


async def run_jobwatch(url: str, guids: Sequence[str]) -> float:
    """Wait on every job with one `wait_for_jobs` call; return the wall time."""
    async with jobwatch.Client(url, token=AUTHORIZATION) as client:
        start = time.perf_counter()
        outcomes = await client.wait_for_jobs(guids, timeout=600)
        wall = time.perf_counter() - start
    if not all(o.ok for o in outcomes.values()):
        raise RuntimeError("a jobwatch wait failed")
    return wall


def run(quick: bool, progress: Progress) -> Section:
    """Alternate jobwatch and the peer on fresh copies of the same jobs."""
    section = Section("peer", "4. Against a real peer: cloudfoundry-client")
    version = peer_version()
    if version is None:
        section.add(
            "Skipped: the `cloudfoundry-client` package is not installed (it comes with the "
            "`peer` extra, which `make bench` installs)."
        )
        section.figures = [Figure("cloudfoundry-client comparison", "skipped (not installed)")]
        return section
    # Quick mode only checks that both sides run: short jobs, so each wait is one second.
    n, rounds, longest = (16, 1, 0.5) if quick else (500, 3, 2.0)
    rng = random.Random(4)
    durations = [rng.uniform(0.2 * longest / 2.0, longest) for _ in range(n)]
    timelines = [[(0.0, "PROCESSING"), (d, "COMPLETE")] for d in durations]
    variants = {"jobwatch": 0, "peer": THREADS, "peer, a thread per job": n}
    figures: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": [], "requests": []} for name in variants
    }
    with ServerProcess() as server:
        for i in range(rounds):
            for name, threads in variants.items():  # A B C A B C, fresh jobs, same timelines
                guids = server.add(timelines)
                requests0, cpu0 = server.requests(), time.process_time()
                if name == "jobwatch":
                    wall = asyncio.run(run_jobwatch(server.url, guids))
                else:
                    wall = run_peer(server.url, guids, threads)
                figures[name]["cpu"].append(time.process_time() - cpu0)
                figures[name]["wall"].append(wall)
                figures[name]["requests"].append(server.requests() - requests0)
            progress(f"peer: round {i + 1}/{rounds}")
    jw, peer, each = figures["jobwatch"], figures["peer"], figures["peer, a thread per job"]
    wall_ratio = ratios(jw["wall"], peer["wall"])
    cpu_ratio = ratios(jw["cpu"], peer["cpu"])
    request_ratio = ratios(jw["requests"], peer["requests"])
    each_wall, each_cpu = ratios(jw["wall"], each["wall"]), ratios(jw["cpu"], each["cpu"])
    section.figures = [
        Figure(
            f"{n} jobs: wall time, peer / jobwatch",
            f"{wall_ratio.fmt(1, 'x')} ({THREADS} threads); {each_wall.fmt(1, 'x')} "
            "(a thread per job)",
        ),
        Figure(
            f"{n} jobs: client CPU, peer / jobwatch",
            f"{cpu_ratio.fmt(1, 'x')} ({THREADS} threads); {each_cpu.fmt(1, 'x')} "
            "(a thread per job)",
        ),
        Figure(f"{n} jobs: GETs, peer ({THREADS} threads) / jobwatch", request_ratio.fmt(2, "x")),
    ]
    section.add(
        f"cloudfoundry-client {version}: {n} jobs that end a uniform "
        f"{0.1 * longest:g}-{longest:g} s after their "
        f"first GET (the same timelines for both, fresh jobs each run), {rounds} rounds "
        f"alternating jobwatch and the peer (A B C A B C). The peer waits with "
        f"`ThreadPoolExecutor(max_workers={THREADS}).map(client.v3.jobs."
        "wait_for_job_completion, guids)`, its defaults (1 s doubling to 60 s, 600 s "
        "timeout); jobwatch with one `wait_for_jobs(guids)` and its defaults "
        "(`max_in_flight=32`). The shim: `CloudFoundryClient(url)` reads the fake's root "
        "document for its links; instead of the OAuth grant, the bearer token is set on "
        "the client (`client._access_token = token`, what a finished login does). Client "
        "CPU is `time.process_time()` of the process (all threads); the server counts "
        "GETs."
    )
    section.add()
    section.table(
        ["client", "wall (s)", "client CPU (s)", "GETs", "GETs per job"],
        [
            [
                "jobwatch `wait_for_jobs`",
                Summary.of(jw["wall"]).fmt(2),
                Summary.of(jw["cpu"]).fmt(2),
                Summary.of(jw["requests"]).fmt(0),
                f"{Summary.of(jw['requests']).median / n:.2f}",
            ],
            *(
                [
                    f"cloudfoundry-client, {threads} threads"
                    + (" (one per job)" if threads == n else ""),
                    Summary.of(figures[name]["wall"]).fmt(2),
                    Summary.of(figures[name]["cpu"]).fmt(2),
                    Summary.of(figures[name]["requests"]).fmt(0),
                    f"{Summary.of(figures[name]['requests']).median / n:.2f}",
                ]
                for name, threads in variants.items()
                if threads
            ),
        ],
    )
    section.add(
        f"Ratios, peer / jobwatch, per round: wall {wall_ratio.fmt(1, 'x')}, CPU "
        f"{cpu_ratio.fmt(1, 'x')}, GETs {request_ratio.fmt(2, 'x')} ({THREADS} threads); "
        f"with a thread per job, wall {each_wall.fmt(1, 'x')}, CPU {each_cpu.fmt(1, 'x')}. "
        f"With {THREADS} threads "
        f"the peer waits on {THREADS} jobs at a time, so {n} jobs take about "
        f"{math.ceil(n / THREADS)} waves of one job's wait each; jobwatch waits on all of them at "
        f"once with at most {THREADS} requests in flight. A thread per job catches up on "
        "wall time but pays a thread (and its stack) per wait, and requests' default pool "
        "keeps 10 connections: any beyond 10 in use at once is opened for one request and dropped."
    )
    section.data = {"version": version, "jobs": n, "figures": figures}
    return section
