"""A `FakeCloudController` in its own process, scripted over a line protocol on stdin/stdout.

The benchmarks need jobs that never end, per-job timelines, request counts
and the server's CPU time, so this module wraps the public
`FakeCloudController` in a child process that takes one JSON command per line
and answers one JSON line.
The child is pinned to its own core when the machine has two or more, so the
client's CPU time is never shared with the server's.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from jobwatch.testing import FakeCloudController, Outage

#: The bearer token the fake accepts and every benchmark client sends.
TOKEN = "benchmark-token"
AUTHORIZATION = f"bearer {TOKEN}"

Timeline = Sequence[tuple[float, str]]
Window = tuple[str, float, float]


def _cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return []


def pin_client() -> str:
    """Pin this (client) process to the first core; say what was done."""
    cores = _cores()
    if len(cores) < 2:
        return "not pinned (fewer than 2 cores)"
    os.sched_setaffinity(0, {cores[0]})
    return f"client on core {cores[0]}, server on core {cores[1]}"


class _Fake:
    """The child's side: the fake plus the guids it made, in order."""

    def __init__(self, cc: FakeCloudController) -> None:
        self.cc = cc
        self.guids: list[str] = []

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        cc = self.cc
        if op == "add":
            # One timeline per job: `[[offset, state], ...]`.
            guids = [
                cc.add_job(timeline=[(float(o), str(s)) for o, s in timeline])
                for timeline in command["timelines"]
            ]
        elif op == "add_same":
            timeline = [(float(o), str(s)) for o, s in command["timeline"]]
            guids = cc.add_jobs(int(command["n"]), timeline=timeline)
        elif op == "stats":
            wanted = command.get("guids")
            polls = [cc.polls(g) for g in (self.guids if wanted is None else wanted)]
            times = os.times()
            return {
                "requests": sum(polls),
                "polls": polls if command.get("per_job") else None,
                "peak_in_flight": cc.peak_in_flight,
                "cpu": times.user + times.system,
            }
        elif op == "finished":
            return {"finished": [cc.finished_at(g) for g in command["guids"]]}
        elif op == "deploy":
            # Back-to-back outage windows, `start` seconds from now: `[[kind, seconds], ...]`.
            steps = [(Outage[str(kind)], float(seconds)) for kind, seconds in command["steps"]]
            known = len(cc.outage_windows)
            cc.schedule_deploy(steps, start=float(command["start"]))
            windows = cc.outage_windows[known:]
            return {"windows": [[kind.name, begin, end] for kind, begin, end in windows]}
        elif op == "outage_stats":
            # Job GETs the server saw (`time.monotonic()` each; recorded with `--record`),
            # and those an outage window answered (refused connections are never seen).
            times = (
                [r.time for r in cc.requests if r.guid is not None and r.method == "GET"]
                if command.get("times")
                else None
            )
            return {"outage_requests": cc.outage_requests, "times": times}
        else:
            return {"error": f"unknown op {op!r}"}
        self.guids.extend(guids)
        return {"guids": guids}


async def _child(record: bool = False) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with FakeCloudController(token=TOKEN, record_requests=record) as cc:
        fake = _Fake(cc)
        _reply({"url": cc.url})
        while line := await reader.readline():
            _reply(fake.handle(json.loads(line)))


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class ServerProcess:
    """The parent's side: start the child, send it commands, stop it.

    `argv` is the child's command line after the interpreter; it must speak the
    same protocol (one JSON command per line in, one JSON answer per line out,
    its URL first), as `benchmarks.soak --serve` does. `RECORDING` is the
    fake with `record_requests=True`, for `request_times()`.
    """

    RECORDING: tuple[str, ...] = ("-m", "benchmarks._server", "--record")

    def __init__(self, argv: Sequence[str] = ("-m", "benchmarks._server")) -> None:
        cores = _cores()
        self._process = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        if len(cores) >= 2:
            os.sched_setaffinity(self._process.pid, {cores[1]})
        self.url: str = self._read()["url"]

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> int:
        """Stop the child (closing its stdin ends its loop), reap it, return its status."""
        process = self._process
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark server process died")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def call(self, **command: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command, separators=(",", ":")) + "\n")
        self._process.stdin.flush()
        return self._read()

    def add(self, timelines: Sequence[Timeline]) -> list[str]:
        """Add one job per timeline (offsets count from the job's first GET)."""
        guids: list[str] = self.call(op="add", timelines=timelines)["guids"]
        return guids

    def add_same(self, n: int, timeline: Timeline) -> list[str]:
        """Add `n` jobs sharing one timeline."""
        guids: list[str] = self.call(op="add_same", n=n, timeline=timeline)["guids"]
        return guids

    def requests(self) -> int:
        """Job GETs served so far, over every job this server made."""
        count: int = self.call(op="stats")["requests"]
        return count

    def polls(self, guids: Sequence[str]) -> list[int]:
        """GETs served per job."""
        polls: list[int] = self.call(op="stats", guids=list(guids), per_job=True)["polls"]
        return polls

    def cpu(self) -> float:
        """CPU seconds (user + system) the server process has used."""
        cpu: float = self.call(op="stats", guids=[])["cpu"]
        return cpu

    def deploy(self, steps: Sequence[tuple[str, float]], start: float) -> list[Window]:
        """Schedule back-to-back outage windows (`Outage` names and seconds) `start` s from now.

        Returns each window as `(kind, begin, end)` in `time.monotonic()` seconds.
        """
        reply = self.call(op="deploy", steps=[list(step) for step in steps], start=start)
        return [(str(kind), float(begin), float(end)) for kind, begin, end in reply["windows"]]

    def outage_requests(self) -> int:
        """Requests answered by an outage window so far (refused connections are not seen)."""
        count: int = self.call(op="outage_stats")["outage_requests"]
        return count

    def request_times(self) -> list[float]:
        """`time.monotonic()` of every job GET the server saw (a `RECORDING` server only)."""
        times: list[float] = self.call(op="outage_stats", times=True)["times"]
        return times

    def finished(self, guids: Sequence[str]) -> list[float | None]:
        """`time.monotonic()` (shared by both processes) at which each job ended."""
        finished: list[float | None] = self.call(op="finished", guids=list(guids))["finished"]
        return finished


def now() -> float:
    """The clock the server's `finished` answers are in."""
    return time.monotonic()


if __name__ == "__main__":
    asyncio.run(_child(record="--record" in sys.argv[1:]))
