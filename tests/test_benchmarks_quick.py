"""The benchmarks run (quick mode) and their exact simulation counts right; no timings checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jobwatch
from benchmarks import economy, outage, soak

ROOT = Path(__file__).resolve().parent.parent


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
    ):
        assert f"## {title}" in text
    assert "Quick mode" in text
    data = json.loads(raw.read_text())
    assert set(data["sections"]) == {"overhead", "scale", "economy", "peer", "outage"}
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
