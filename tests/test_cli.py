"""The `jobwatch` command, run for real in a subprocess against a FakeCloudController."""

from __future__ import annotations

import asyncio
import copy
import errno
import io
import json
import os
import pty
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import attrs
import coverage
import pytest

from jobwatch import Client, ClientStats, Job, JobTimeout, Outcome, _cli
from jobwatch._cli import (
    Interrupt,
    Output,
    OutputError,
    Run,
    Tally,
    main,
    problem_line,
    progress_line,
    rich_frame,
)
from jobwatch.testing import FakeCloudController

from .helpers import TOKEN

ROOT = Path(__file__).resolve().parent.parent
BROKER_ERROR = {
    "code": 10009,
    "title": "CF-UnableToPerform",
    "detail": "provision could not be completed: Service broker error: quota exceeded",
}


@attrs.frozen
class Result:
    """What one run of the command left behind."""

    code: int
    out: str
    err: str


def child_env(cf_home: Path, **extra: str) -> dict[str, str]:
    """The environment of the command: our CF_HOME, no token unless given."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"JOBWATCH_TOKEN", "CF_HOME", "COLUMNS", "LINES"}
        and not key.startswith("COVERAGE_")
    }
    env["CF_HOME"] = str(cf_home)
    env.update(extra)
    cov = coverage.Coverage.current()
    if cov is not None:
        # Measure the command too: coverage's .pth hook starts it in the child,
        # and pytest-cov combines the parallel data files at the end.
        config = copy.copy(cov.config)
        config.parallel = True
        config.data_file = os.path.abspath(cov.config.data_file)
        env["COVERAGE_PROCESS_CONFIG"] = config.serialize()
    return env


async def start(
    args: Sequence[str], env: dict[str, str], **kwargs: int
) -> asyncio.subprocess.Process:
    """Start `python -m jobwatch ARGS` (pipes unless told otherwise)."""
    kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
    kwargs.setdefault("stdout", asyncio.subprocess.PIPE)
    kwargs.setdefault("stderr", asyncio.subprocess.PIPE)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobwatch", *args, env=env, cwd=ROOT, **kwargs
    )


async def finish(
    proc: asyncio.subprocess.Process, stdin: str | None = None, timeout: float = 20.0
) -> Result:
    """Wait for the command (killing it if it hangs) and collect its output."""
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(None if stdin is None else stdin.encode()), timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, (out or b"").decode(), (err or b"").decode())


async def run(args: Sequence[str], env: dict[str, str], stdin: str | None = None) -> Result:
    """Run the command to its end, with pipes for stdin, stdout and stderr."""
    kwargs = {"stdin": asyncio.subprocess.PIPE} if stdin is not None else {}
    return await finish(await start(args, env, **kwargs), stdin)


def write_cf_config(home: Path, target: str, token: str = TOKEN) -> None:
    """A cf CLI `config.json` as `cf login` leaves it."""
    (home / ".cf").mkdir(parents=True, exist_ok=True)
    config = {
        "ConfigVersion": 3,
        "Target": target,
        "APIVersion": "3.180.0",
        "AuthorizationEndpoint": target,
        "DopplerEndPoint": "",
        "UaaEndpoint": target,
        "RoutingAPIEndpoint": "",
        "AccessToken": f"bearer {token}",
        "SSHOAuthClient": "ssh-proxy",
        "UAAOAuthClient": "cf",
        "UAAOAuthClientSecret": "",
        "UAAGrantType": "",
        "RefreshToken": "refresh-token",
        "OrganizationFields": {"GUID": "", "Name": "", "QuotaDefinition": {}},
        "SpaceFields": {"GUID": "", "Name": "", "AllowSSH": False},
        "SSLDisabled": False,
        "AsyncTimeout": 0,
        "Trace": "",
        "ColorEnabled": "",
        "Locale": "",
        "PluginRepos": [],
        "MinCLIVersion": "",
        "MinRecommendedCLIVersion": "",
    }
    (home / ".cf" / "config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture
def env(tmp_path: Path, cc: FakeCloudController) -> dict[str, str]:
    """The command's environment, logged in (cf CLI config) to the fake."""
    write_cf_config(tmp_path, cc.url)
    return child_env(tmp_path)


@pytest.fixture
def logged_out(tmp_path: Path) -> dict[str, str]:
    """The command's environment with an empty CF_HOME: no cf login."""
    home = tmp_path / "empty-home"
    home.mkdir()
    return child_env(home)


def lines_of(text: str, kind: str) -> list[str]:
    """The problem lines of one kind (`FAILED`, `TIMEOUT`, ...)."""
    return [line for line in text.splitlines() if line.startswith(f"{kind} ")]


def assert_one_line_error(result: Result) -> str:
    """A configuration or usage error: exit 2, one line on stderr, no traceback."""
    assert result.code == 2, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("jobwatch: error: ")
    assert result.out == ""
    return lines[0]


async def test_wait_exits_0_when_every_job_completes(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """Every job COMPLETE: exit 0, a summary; --api naming the cf target uses the login."""
    first, second = cc.add_job(states=("COMPLETE",)), cc.add_job(states=("COMPLETE",))
    result = await run(["wait", "--api", cc.url + "/", first, second], env)
    assert result.code == 0, result
    assert "2 jobs in" in result.out
    assert "2 COMPLETE, 0 FAILED, 0 timed out, 0 errors" in result.out
    assert [cc.polls(first), cc.polls(second)] == [1, 1]
    assert {request.authorization for request in cc.requests} == {f"bearer {TOKEN}"}
    assert TOKEN not in result.out + result.err


async def test_wait_exits_1_and_names_the_failed_job_with_its_errors(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """A FAILED job: exit 1, and one line with its guid, operation and error."""
    done = cc.add_job(states=("COMPLETE",))
    failed = cc.add_job(
        states=("FAILED",), operation="service_instance.create", errors=[BROKER_ERROR]
    )
    result = await run(["wait", done, failed], env)
    assert result.code == 1, result
    [line] = lines_of(result.out, "FAILED")
    assert failed in line
    assert "service_instance.create" in line
    assert "CF-UnableToPerform (10009)" in line
    assert "quota exceeded" in line
    assert "1 COMPLETE, 1 FAILED" in result.out


async def test_wait_exits_3_when_a_job_times_out(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """A job still PROCESSING at the deadline: exit 3; --quiet prints only that job."""
    stuck = cc.add_job(states=("PROCESSING",))
    done = cc.add_job(states=("COMPLETE",))
    result = await run(["wait", "--quiet", "--timeout", "0.3", stuck, done], env)
    assert result.code == 3, result
    [line] = result.out.splitlines()
    assert line.startswith("TIMEOUT ")
    assert stuck in line
    assert "last state PROCESSING" in line


async def test_wait_exits_4_on_an_api_error(cc: FakeCloudController, env: dict[str, str]) -> None:
    """A job the API does not know (404): exit 4, with the controller's error."""
    result = await run(["wait", "no-such-job"], env)
    assert result.code == 4, result
    [line] = lines_of(result.out, "ERROR")
    assert "no-such-job" in line
    assert "404" in line
    assert "CF-ResourceNotFound" in line


@pytest.mark.parametrize(
    ("kinds", "code"),
    [(("failed", "missing", "stuck"), 1), (("missing", "stuck"), 4), (("stuck", "done"), 3)],
)
async def test_exit_code_precedence_is_failed_then_error_then_timeout(
    cc: FakeCloudController, env: dict[str, str], kinds: tuple[str, ...], code: int
) -> None:
    """FAILED wins over API errors, which win over timeouts."""
    jobs = {
        "failed": lambda: cc.add_job(states=("FAILED",)),
        "missing": lambda: "no-such-job",
        "stuck": lambda: cc.add_job(states=("PROCESSING",)),
        "done": lambda: cc.add_job(states=("COMPLETE",)),
    }
    result = await run(["wait", "--timeout", "0.3", *(jobs[kind]() for kind in kinds)], env)
    assert result.code == code, result


async def test_json_prints_one_object_per_job_and_the_summary_on_stderr(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """--json: stdout is only JSON objects, one per job, read back with their fields."""
    done = cc.add_job(states=("COMPLETE",), warnings=("plan db-small is deprecated",))
    failed = cc.add_job(
        states=("FAILED",), operation="service_instance.create", errors=[BROKER_ERROR]
    )
    result = await run(["wait", "--json", done, failed, "no-such-job"], env)
    assert result.code == 1, result
    records = {record["guid"]: record for record in map(json.loads, result.out.splitlines())}
    assert set(records) == {done, failed, "no-such-job"}
    assert records[done] == {
        "guid": done,
        "state": "COMPLETE",
        "operation": "app.delete",
        "errors": [],
        "warnings": [{"detail": "plan db-small is deprecated"}],
        "seconds": records[done]["seconds"],
        "result": "COMPLETE",
        "error": None,
    }
    assert isinstance(records[done]["seconds"], float)
    assert 0 <= records[done]["seconds"] < 10
    assert records[failed]["state"] == "FAILED"
    assert records[failed]["result"] == "FAILED"
    assert records[failed]["errors"] == [BROKER_ERROR]
    assert records["no-such-job"]["state"] is None
    assert records["no-such-job"]["result"] == "ERROR"
    assert records["no-such-job"]["error"]["type"] == "NotFound"
    assert "3 jobs in" in result.err


async def test_dash_reads_guids_and_urls_from_stdin(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """`-` reads one job per line (blanks and # comments skipped); duplicates poll once."""
    first, second, third = (cc.add_job(states=("COMPLETE",)) for _ in range(3))
    stdin = f"{first}\n\n  {cc.job_url(second)}  \n# a comment\n{cc.job_url(first)}\n"
    result = await run(["wait", "-", third], env, stdin=stdin)
    assert result.code == 0, result
    assert "3 jobs in" in result.out
    assert [cc.polls(guid) for guid in (first, second, third)] == [1, 1, 1]


async def test_empty_stdin_is_nothing_to_wait_on(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """`-` with nothing on stdin: nothing to wait on, exit 0, no request."""
    result = await run(["wait", "-"], env, stdin="\n")
    assert result.code == 0, result
    assert "no jobs" in result.out
    assert cc.requests == []


async def run_on_terminal(args: Sequence[str], env: dict[str, str]) -> Result:
    """Run the command with stdout on a pseudo-terminal, as in an interactive shell."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []
    loop = asyncio.get_running_loop()
    eof = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if chunk:
            chunks.append(chunk)
        elif not eof.done():
            eof.set_result(None)

    loop.add_reader(master, readable)
    try:
        proc = await start(args, env, stdout=slave)
        os.close(slave)
        result = await finish(proc)
        await asyncio.wait_for(eof, 5)
    finally:
        loop.remove_reader(master)
        os.close(master)
    return Result(result.code, b"".join(chunks).decode(), result.err)


async def test_control_codes_only_on_a_terminal(
    cc: FakeCloudController, env: dict[str, str], tmp_path: Path
) -> None:
    """A pipe gets plain lines; a terminal gets rich's live display (plain lines without rich)."""
    jobs = [cc.add_job(states=("COMPLETE",)), cc.add_job(states=("COMPLETE",))]
    piped = await run(["wait", *jobs], env)
    assert piped.code == 0, piped
    assert "\x1b" not in piped.out + piped.err
    assert "2 jobs in" in piped.out

    live = await run_on_terminal(["wait", *jobs], env)
    assert live.code == 0, live
    assert "\x1b[" in live.out
    assert "2/2 ended" in live.out
    assert "2 jobs in" in live.out

    no_rich = tmp_path / "no-rich" / "rich"
    no_rich.mkdir(parents=True)
    (no_rich / "__init__.py").write_text("raise ImportError('rich is not installed')\n")
    plain_env = {**env, "PYTHONPATH": str(no_rich.parent)}
    plain = await run_on_terminal(["wait", *jobs], plain_env)
    assert plain.code == 0, plain
    assert "\x1b" not in plain.out
    assert "2 jobs in" in plain.out


async def test_missing_login_is_a_one_line_error(
    cc: FakeCloudController, logged_out: dict[str, str]
) -> None:
    """No cf login and no --api: exit 2 with one line that says what to do."""
    line = assert_one_line_error(await run(["wait", "some-job"], logged_out))
    assert "cf login" in line
    assert "JOBWATCH_TOKEN" in line
    assert cc.requests == []


@pytest.mark.parametrize("api", ["ftp://127.0.0.1/", "http://api.example.org", "https://h:99999"])
async def test_bad_api_is_a_one_line_error(
    cc: FakeCloudController, logged_out: dict[str, str], api: str
) -> None:
    """A malformed --api (or plain http off loopback): exit 2, one line, no traceback."""
    env = {**logged_out, "JOBWATCH_TOKEN": TOKEN}
    line = assert_one_line_error(await run(["wait", "--api", api, "some-job"], env))
    assert "API URL" in line or "plain http" in line
    assert TOKEN not in line


async def test_cf_login_token_is_never_sent_to_another_api(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """--api elsewhere without JOBWATCH_TOKEN: exit 2, and no request reaches either API."""
    async with FakeCloudController() as other:
        line = assert_one_line_error(await run(["wait", "--api", other.url, "some-job"], env))
        assert "JOBWATCH_TOKEN" in line
        assert other.requests == []
    assert cc.requests == []


async def test_token_from_the_environment_with_api(
    cc: FakeCloudController, logged_out: dict[str, str]
) -> None:
    """JOBWATCH_TOKEN with --api needs no cf login; the token never shows in the output."""
    job = cc.add_job(states=("COMPLETE",))
    env = {**logged_out, "JOBWATCH_TOKEN": TOKEN}
    result = await run(["wait", "--api", cc.url, job], env)
    assert result.code == 0, result
    assert [request.authorization for request in cc.requests] == [f"bearer {TOKEN}"]
    assert TOKEN not in result.out + result.err


async def test_ctrl_c_exits_130_with_the_summary_so_far(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """SIGINT mid-wait: a clean stop, the summary so far, exit 130, no traceback."""
    done = cc.add_job(states=("COMPLETE",))
    stuck = cc.add_job(states=("PROCESSING",))
    proc = await start(["wait", done, stuck], env)
    for _ in range(500):
        if cc.polls(stuck) and cc.polls(done):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # let the client take both answers
    proc.send_signal(signal.SIGINT)
    result = await finish(proc, timeout=10)
    assert result.code == 130, result
    assert "Traceback" not in result.err
    assert "interrupted after" in result.out
    assert "1 of 2 jobs ended (1 COMPLETE" in result.out
    assert "1 still going" in result.out


async def test_sigterm_exits_143_with_the_summary_so_far(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """SIGTERM (systemd, Kubernetes, a CI timeout) stops like Ctrl-C, but exits 143."""
    done = cc.add_job(states=("COMPLETE",))
    stuck = cc.add_job(states=("PROCESSING",))
    proc = await start(["wait", "--timeout", "0", done, stuck], env)
    for _ in range(500):
        if cc.polls(stuck) and cc.polls(done):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # let the client take both answers
    proc.send_signal(signal.SIGTERM)
    result = await finish(proc, timeout=10)
    assert result.code == 143, result
    assert result.err == ""
    assert "terminated (SIGTERM) after" in result.out
    assert "1 of 2 jobs ended (1 COMPLETE" in result.out
    assert "1 still going" in result.out
    assert re.search(r"^\d+ requests, ", result.out, re.MULTILINE), result.out


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("flags", [[], ["--json"]])
async def test_unwritable_stdout_exits_74_with_one_line(
    cc: FakeCloudController, env: dict[str, str], flags: list[str]
) -> None:
    """stdout on a full disk: exit 74 (EX_IOERR), never 1, and one line on stderr."""
    job = cc.add_job(states=("FAILED",), errors=[BROKER_ERROR])
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        result = await finish(await start(["wait", *flags, job], env, stdout=full))
    finally:
        os.close(full)
    assert result.code == 74, result
    assert result.err == "jobwatch: error: cannot write to stdout: No space left on device\n"


class _FullDisk(io.StringIO):
    """A stream on a full disk: every write fails with ENOSPC."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_a_progress_line_that_cannot_be_written_stops_the_wait(
    cc: FakeCloudController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed progress line ends a wait that would never end, and leaves nothing running."""
    monkeypatch.setattr(_cli._display, "LINE_PERIOD_PIPE", 0.01)  # where Output reads it
    stuck = cc.add_job(states=("PROCESSING",))
    stream = _FullDisk()
    output = Output(json_lines=False, quiet=False, stdout=stream, stderr=stream)
    async with Client(cc.url, token=TOKEN) as cf:
        run = Run(cf, output, Interrupt(), "jobwatch: test")
        with pytest.raises(OutputError, match="No space left on device") as raised:
            await run.wait([stuck], timeout=None)
    assert raised.value.stream is stream


async def test_get_prints_a_table_and_exits_by_state(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """`get` checks once: a table row per job; FAILED gives 1, a job not ended yet 3."""
    done = cc.add_job(states=("COMPLETE",))
    running = cc.add_job(states=("POLLING",), operation="service_instance.create")
    failed = cc.add_job(states=("FAILED",), errors=[BROKER_ERROR])
    result = await run(["get", done, running, failed], env)
    assert result.code == 1, result
    header, *rows = result.out.splitlines()
    assert header.split()[:4] == ["GUID", "STATE", "OPERATION", "UPDATED"]
    states = {row.split()[0]: row.split()[1] for row in rows}
    assert states == {done: "COMPLETE", running: "POLLING", failed: "FAILED"}
    assert "CF-UnableToPerform" in next(row for row in rows if row.startswith(failed))
    assert [cc.polls(guid) for guid in (done, running, failed)] == [1, 1, 1]

    result = await run(["get", "--json", done, running], env)
    assert result.code == 3, result
    assert [json.loads(line)["state"] for line in result.out.splitlines()] == [
        "COMPLETE",
        "POLLING",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["wait"],
        ["wait", "--max-in-flight", "0", "job"],
        ["wait", "--timeout", "soon", "job"],
        ["demo", "--speed", "0"],
        ["frobnicate"],
    ],
)
async def test_bad_arguments_are_one_line_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments: exit 2, one line, no usage dump (checked in-process: no network)."""
    code = main(args)
    captured = capsys.readouterr()
    assert_one_line_error(Result(code, captured.out, captured.err))


async def test_bad_job_reference_is_a_one_line_error(
    cc: FakeCloudController, env: dict[str, str]
) -> None:
    """A guid with a slash or a job URL on another host: exit 2 before any request."""
    line = assert_one_line_error(
        await run(["wait", "bad/guid", "https://elsewhere.example.org/v3/jobs/x"], env)
    )
    assert "invalid job reference" in line
    assert cc.requests == []


async def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` lists each exit code and the token's only source."""
    with pytest.raises(SystemExit) as exited:
        main(["wait", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for code in (0, 1, 2, 3, 4, 74, 130, 141, 143):
        assert re.search(rf"^\s+{code}\s+\S", out, re.MULTILINE), code
    assert "JOBWATCH_TOKEN" in out


async def test_demo_runs_a_small_scenario_to_its_summary(env: dict[str, str]) -> None:
    """`demo --jobs 200` (sped up) ends with the summary and exits 0, without control codes."""
    result = await run(["demo", "--jobs", "200", "--speed", "8"], env)
    assert result.code == 0, result
    assert "\x1b" not in result.out + result.err
    assert "this takes about" in result.out
    assert "every interval divided by 8" in result.out  # the scaled policy is said so
    summary = re.search(r"200 jobs in [\d.]+ s: (\d+) COMPLETE, (\d+) FAILED", result.out)
    assert summary is not None, result.out
    assert int(summary[1]) + int(summary[2]) == 200
    assert int(summary[2]) > 0
    delays = re.search(r"p50 ([\d.]+) s, p95 ([\d.]+) s", result.out)
    assert delays is not None, result.out
    assert 0 <= float(delays[1]) <= float(delays[2]) < 5
    assert re.search(r"\d+ requests, \d+ retries", result.out)


async def test_progress_line_follows_state_changes_in_plain_text() -> None:
    """The plain progress line counts jobs per current state and per ending, no escapes."""
    tally = Tally(4, started=0.0)
    tally.update(Job("a", "PROCESSING"))
    tally.update(Job("a", "POLLING"))
    tally.update(Job("b", "PROCESSING"))
    tally.update(Job("b", "PROCESSING"))  # no change: counted once
    tally.update(Job("c", "RESTAGING"))  # a state jobwatch does not know
    tally.finish(Outcome("b", Job("b", "COMPLETE")))
    tally.update(Job("b", "PROCESSING"))  # late news of an ended job is ignored
    stats = ClientStats(
        requests=9,
        by_status={200: 7, 429: 2},
        retries=2,
        rate_limit_paused_seconds=1.5,
        waiting=2,
        in_flight=1,
    )
    line = progress_line(tally, stats, 12.34)
    assert line == (
        "[  12.3 s] 1/4 ended (1 COMPLETE, 0 FAILED, 0 timed out, 0 errors); "
        "going: no answer yet 1, POLLING 1, RESTAGING 1; "
        "9 requests, 2 retries, 2 x 429, rate-limit pauses 1.5 s"
    )
    assert "\x1b" not in line


async def test_problem_line_of_a_timeout_names_the_last_state() -> None:
    """A timed-out job's line says how long was waited and what it was doing."""
    job = Job("slow", "POLLING", operation="service_instance.create")
    line = problem_line(Outcome("slow", job, JobTimeout("slow", 30.0, job)))
    assert line == (
        "TIMEOUT  slow  service_instance.create: did not end within 30 s; last state POLLING"
    )


def outage_stats(since: float | None) -> ClientStats:
    """Counters of a client that has seen one outage (still going when `since` is set)."""
    return ClientStats(
        requests=9,
        by_status={200: 7, 503: 2},
        retries=2,
        rate_limit_paused_seconds=0.0,
        waiting=1,
        in_flight=1,
        outages=1,
        outage_seconds=14.25,
        unavailable_since=since,
    )


async def test_progress_line_shows_an_outage_while_it_lasts() -> None:
    """While the API is down the line says since when (local time) and for how long."""
    since = 1_700_000_000.0
    clock = time.strftime("%H:%M:%S", time.localtime(since))
    line = progress_line(Tally(2, started=0.0), outage_stats(since), 40.0, now=since + 35.4)
    assert line == (
        f"[  40.0 s] API unavailable since {clock} (35 s); "
        "0/2 ended (0 COMPLETE, 0 FAILED, 0 timed out, 0 errors); going: no answer yet 2; "
        "9 requests, 2 retries, 0 x 429, rate-limit pauses 0.0 s, 1 outage, 14.2 s"
    )
    back = progress_line(Tally(2, started=0.0), outage_stats(None), 60.0)
    assert "unavailable" not in back
    assert back.endswith("rate-limit pauses 0.0 s, 1 outage, 14.2 s")


async def test_rich_frame_shows_an_outage_while_it_lasts() -> None:
    """The live display says since when the API is down, and counts the outages."""
    from rich.console import Console

    since = 1_700_000_000.0
    clock = time.strftime("%H:%M:%S", time.localtime(since))

    def rendered(stats: ClientStats) -> str:
        console = Console(file=io.StringIO(), width=120, color_system=None)
        console.print(rich_frame("title", Tally(2, started=0.0), stats, 3.0, now=since + 7))
        return cast(io.StringIO, console.file).getvalue()

    down = rendered(outage_stats(since))
    assert f"API unavailable since {clock} (7 s)" in down
    assert "in flight 1 · 1 outage, 14.2 s" in down
    assert "unavailable" not in rendered(outage_stats(None))


class _Stats:
    """Stands in for a Client where only its counters are read."""

    def __init__(self, stats: ClientStats) -> None:
        self.stats = stats


async def test_summary_counts_outages_and_says_when_the_api_is_still_down() -> None:
    """The final traffic line mentions outages, and an outage still going at the end."""
    stdout = io.StringIO()
    output = Output(json_lines=False, quiet=False, stdout=stdout, stderr=stdout)
    run = Run(cast(Client, _Stats(outage_stats(time.time() - 5))), output, Interrupt(), "t")
    assert run.report() == 0
    traffic = stdout.getvalue().splitlines()[-1]
    assert traffic.startswith("9 requests, 2 retries, 0 x 429, rate-limit pauses 0.0 s, ")
    assert re.search(
        r", 1 outage, 14.2 s; API unavailable since \d\d:\d\d:\d\d \([56] s\)$", traffic
    )


# -- the command's event loop ---------------------------------------------------------------


def test_the_command_runs_on_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop (the `fast` extra) when importable; asyncio's own loop on request or without it."""
    import uvloop

    from jobwatch._cli import LOOP_ENV, event_loop_factory

    monkeypatch.delenv(LOOP_ENV, raising=False)
    assert event_loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert event_loop_factory() is None
    monkeypatch.delenv(LOOP_ENV)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: ImportError
    assert event_loop_factory() is None


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_the_command_works_on_either_loop(
    cc: FakeCloudController, env: dict[str, str], loop: str
) -> None:
    """The same run, the same answer, on uvloop and on asyncio's loop (JOBWATCH_LOOP)."""
    guid = cc.add_job(states=("COMPLETE",))
    if loop == "asyncio":
        env = {**env, "JOBWATCH_LOOP": "asyncio"}
    result = await run(["get", guid], env)
    assert result.code == 0, result
    assert result.out.splitlines()[1].split()[:2] == [guid, "COMPLETE"]
    assert cc.polls(guid) == 1
