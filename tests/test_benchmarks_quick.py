"""The benchmarks run (quick mode) and their exact simulation counts right; no timings checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import jobwatch
from benchmarks import economy, outage, ratelimited, soak

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # left out of a plain `pytest`; `make test` and nox run it
@pytest.mark.timeout(280)  # a subprocess of ~35 s that a loaded CI machine may triple
def test_quick_benchmarks_run_and_report_every_section(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` finishes and writes a report with every section."""
    report, raw = tmp_path / "report.md", tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--output",
            str(report),
            "--json",
            str(raw),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    for title in (
        "1. Overhead per poll",
        "2. Scale",
        "3. API economy",
        "4. Against a real peer",
        "5. Through a deploy",
        "6. The learned schedule (opt-in)",
        "7. On a rate limit that binds",
    ):
        assert f"## {title}" in text
    assert "Quick mode" in text
    data = json.loads(raw.read_text())
    assert set(data["sections"]) == {
        *("overhead", "scale", "economy", "peer", "outage", "learned", "ratelimited"),
    }
    for section in data["sections"].values():
        assert section["figures"], section
        assert all(figure["value"] for figure in section["figures"])
    overhead = data["sections"]["overhead"]["data"]
    assert overhead["requests_sent"] == overhead["requests_expected"]
    scale = data["sections"]["scale"]["data"]
    assert all(r["completed"] == scale["jobs"]["finishing"] for r in scale["finishing"])
    assert all(r["waiting"] == scale["jobs"]["holding"] for r in scale["holding"])
    assert all(r["waiting_after_cancel"] == 0 and r["cancelled"] for r in scale["holding"])
    peers = data["sections"]["economy"]["data"]["peers"]
    assert set(peers) == {s.name for s in economy.PEERS}
    handover = data["sections"]["economy"]["data"]["handover"]
    assert all(h["fresh"][0] < h["guid"][0] for h in handover)  # a 202 saves GETs
    for run in data["sections"]["ratelimited"]["data"]["runs"]:
        if run["name"].startswith("jobwatch"):
            assert run["rate_limited"] == run["lost"] == 0, run
        assert sum(a + b for _, a, b in run["windows"]) == run["gets"], run
    for deploy in data["sections"]["outage"]["data"]["rounds"]:
        assert deploy["lost"] == deploy["base_lost"] == 0
        assert deploy["server_gets"] > 0
        assert deploy["base_gets"] > 0
        assert deploy["down_requests"] >= 1  # the deploy was met


def test_simulation_counts_every_get_of_a_fixed_schedule() -> None:
    """The cf CLI polls at 0, 3, 6, 9 s: a job ending at 7 s costs 4 GETs, seen 2 s late."""
    cf_cli = economy.PEERS[0]
    result = economy.simulate([economy.Job(7.0)], cf_cli)
    assert result.requests == [4]
    assert result.delays == [2.0]


def test_simulation_restarts_jobwatch_schedule_when_the_state_changes() -> None:
    """PROCESSING 1 s, 2 s; POLLING from 2.5 s restarts at 10 s, as `JobPoll` does."""
    policy = jobwatch.PollPolicy(
        initial=1, multiplier=2, maximum=8, polling_initial=10, polling_maximum=10, jitter=0
    )
    job = economy.Job(ends=12.5, polling_from=2.5)
    # GETs at 0 (PROCESSING), 1 (PROCESSING), 3 (POLLING: restart), 13 (COMPLETE).
    result = economy.simulate([job], economy.jobwatch_schedule(policy))
    assert result.requests == [4]
    assert result.delays == [0.5]


def test_soak_plans_end_on_the_terminal_state_or_a_permanent_fault() -> None:
    """Waits retry transient faults to their end: only a terminal state or a bad body ends one."""
    plan = ["reset", "ok:PROCESSING", "router_502", "stall", "ok:COMPLETE"]
    assert soak.expect(plan) == soak.Expected(
        None, "COMPLETE", 5, ("reset", "router_502", "stall")
    )
    plan = ["ok:PROCESSING", "invalid_json", "ok:FAILED"]
    want = soak.expect(plan)
    assert (want.error, want.state, want.items) == (jobwatch.MalformedResponse, "PROCESSING", 2)
    assert soak.expect(["maintenance_503", "ok:FAILED"]).error is jobwatch.JobFailed


def test_busiest_second_counts_a_sliding_window() -> None:
    """The most GETs within any one second, wherever that second starts."""
    times = [0.0, 0.9, 1.5, 1.6, 1.7, 1.8, 5.0]
    assert outage._busiest(times, 0.0, 10.0) == 5  # 0.9 .. 1.8
    assert outage._busiest(times, 2.0, 10.0) == 1


def test_simulation_of_a_202_skips_the_get_at_once_and_restarts_the_schedule() -> None:
    """A 202's job: first GET one interval after creation, then the schedule from its start."""
    policy = jobwatch.PollPolicy(initial=2, multiplier=2, maximum=8, jitter=0)
    job = economy.Job(ends=5.0)
    # GETs at 2 (PROCESSING), then 2 + 2 = 4 (PROCESSING), 4 + 4 = 8 (COMPLETE).
    fresh = economy.simulate([job], economy.jobwatch_schedule(policy, fresh=True))
    assert (fresh.requests, fresh.delays) == ([3], [3.0])
    # A guid: 0, 2, 6 (COMPLETE).
    guid = economy.simulate([job], economy.jobwatch_schedule(policy))
    assert (guid.requests, guid.delays) == ([3], [1.0])


def test_rate_limited_demand_counts_every_get_per_window() -> None:
    """The cf CLI's GETs at 0, 3, 6, 9 s for a job ending at 7 s: 2 per 5 s window."""
    assert ratelimited.cf_demand([economy.Job(7.0)], 5.0) == [2, 2]
    policy = jobwatch.PollPolicy(initial=1, maximum=1, jitter=0)
    assert ratelimited.demand([economy.Job(2.5)], policy, 2.0) == [2, 2]  # 0, 1 | 2, 3
