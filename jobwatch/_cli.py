"""The `jobwatch` command: wait on jobs or check them from a shell, or run the demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, Protocol, TextIO

import jobwatch
from jobwatch import (
    Client,
    ClientStats,
    ConfigError,
    InvalidJobReference,
    Job,
    JobFailed,
    JobTimeout,
    Outcome,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_ERROR = 4
#: sysexits.h's EX_IOERR: the results could not be written (full disk, EIO).
EXIT_OUTPUT = 74
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: The only way to hand the command a token: a flag would show in `ps`.
TOKEN_ENV = "JOBWATCH_TOKEN"

# How a job ended, as the command counts it.
COMPLETE = "COMPLETE"
FAILED = "FAILED"
TIMED_OUT = "TIMEOUT"
ERROR = "ERROR"
RUNNING = "RUNNING"  # `get` only: the job has not ended yet

#: Seconds between two progress lines when there is no live display.
LINE_PERIOD_TTY = 2.0
LINE_PERIOD_PIPE = 10.0
#: Seconds between two frames of the live display.
FRAME_PERIOD = 0.125

_EXIT_HELP = """\
exit codes:
  0    every job COMPLETE
  1    at least one job FAILED
  2    usage or configuration error (bad arguments or job reference, no cf login, bad --api)
  3    at least one job timed out (for `get`: has not ended yet), and none FAILED
  4    API or transport errors (e.g. 404 job not found, 403, API unreachable), none FAILED
  74   the output could not be written (e.g. disk full, EIO): one line on stderr
  130  interrupted (Ctrl-C): the summary so far is printed
  141  stdout was closed early (e.g. `| head`)
  143  terminated (SIGTERM, e.g. systemd, Kubernetes, a CI timeout): as for Ctrl-C
  When several apply, 1 wins over 4, and 4 over 3. `demo` exits 0 when every job
  ended as scripted (its FAILED jobs are part of the show).

credentials:
  The cf CLI login ($CF_HOME/.cf/config.json, default ~/.cf/config.json): its target
  and access token (TLS checks off if it says SSLDisabled). A token is only read from
  the environment variable JOBWATCH_TOKEN, never from a flag (it would show in `ps`).
  --api URL replaces the target; the cf login's token is only sent to the cf login's
  own target, so for any other API set JOBWATCH_TOKEN too.
"""


class UsageError(Exception):
    """A bad command line: reported in one line, exit 2."""


class OutputError(Exception):
    """stdout or stderr refused a write (full disk, EIO, ...): one line, exit 74."""

    def __init__(self, stream: TextIO, error: OSError) -> None:
        name = {sys.stdout: "stdout", sys.stderr: "stderr"}.get(stream, "the output")
        super().__init__(f"cannot write to {name}: {error.strerror or error}")
        self.stream = stream


@contextlib.contextmanager
def _writing(stream: TextIO) -> Iterator[None]:
    """Turn a failed write on `stream` into `OutputError` (a closed pipe stays itself)."""
    try:
        yield
    except BrokenPipeError:
        raise  # the reader went away: exit 141, quietly
    except OSError as exc:
        raise OutputError(stream, exc) from exc


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage dump: scripts log stderr line by line.
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _timeout(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, not {text}")
    return None if value == 0 else value


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0.1 and 100, not {text}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `jobwatch` (exposed for the docs and the tests)."""
    parser = _Parser(
        prog="jobwatch",
        description="Wait on Cloud Foundry V3 jobs, check them, or watch the demo.",
        epilog=_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jobwatch {jobwatch.__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api", metavar="URL", help="the Cloud Controller API URL (default: the cf target)"
    )
    common.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per job on stdout (guid, state, operation, errors, "
        "warnings, seconds, result, error); the summary goes to stderr",
    )
    common.add_argument(
        "--timeout",
        type=_timeout,
        default=jobwatch.DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on jobs still going after this long; 0 waits for ever "
        f"(default {jobwatch.DEFAULT_TIMEOUT:g})",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the jobs that did not complete: no progress, no summary",
    )
    common.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=32,
        metavar="N",
        help="the most requests open at once (default 32)",
    )
    common.add_argument(
        "--rate-limit-share",
        type=_share,
        default=jobwatch.DEFAULT_RATE_LIMIT_SHARE,
        metavar="SHARE",
        help="the share of the API's rate limit (0 < SHARE <= 1) this command may spend; "
        "the rest stays free for the same user's cf CLI and other work "
        f"(default {jobwatch.DEFAULT_RATE_LIMIT_SHARE:g})",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log retries to stderr (-vv: every poll)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    kwargs: dict[str, Any] = {
        "parents": [common],
        "epilog": _EXIT_HELP,
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    wait = commands.add_parser(
        "wait",
        help="wait until every job ends",
        description="Wait until every job ends; on a terminal, show live progress. "
        "A JOB is a guid or a job URL (the Location of a 202); `-` reads them from stdin, "
        "one per line. Each job's first GET goes at once: a guid or URL may name a job of "
        "any age (only the library, handed the 202 response itself, knows a job is fresh "
        "and waits a first interval).",
        **kwargs,
    )
    wait.add_argument("jobs", nargs="+", metavar="JOB")
    get = commands.add_parser(
        "get",
        help="check each job once and print a table",
        description="Check each job once (no waiting) and print a table. "
        "A JOB is a guid or a job URL; `-` reads them from stdin, one per line.",
        **kwargs,
    )
    get.add_argument("jobs", nargs="+", metavar="JOB")
    demo = commands.add_parser(
        "demo",
        help="wait on a few thousand jobs of an embedded fake Cloud Controller",
        description="Start a fake Cloud Controller on loopback with a realistic mix of "
        "jobs, rate limiting and injected 502/503 faults, wait on all of them with the "
        "default policies, and report what it took.",
        epilog=_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--jobs", type=_positive_int, default=2000, metavar="N", help="how many (default 2000)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the scenario (default 0)")
    demo.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="run X times faster: the jobs' durations, the poll and retry intervals and "
        "the rate-limit window all divided by X (default 1: the real defaults)",
    )
    return parser


# -- counting -----------------------------------------------------------------------------


def classify(outcome: Outcome) -> str:
    """How a job ended: COMPLETE, FAILED, TIMEOUT, ERROR, or RUNNING (a `get` of a live job)."""
    error = outcome.error
    if isinstance(error, JobFailed):
        return FAILED
    if isinstance(error, JobTimeout):
        return TIMED_OUT
    if error is not None:
        return ERROR
    job = outcome.job
    if job is not None and job.state in (COMPLETE, FAILED):
        return str(job.state)
    return RUNNING


def exit_code(ended: Counter[str]) -> int:
    """The documented exit code for these results (1 before 4 before 3)."""
    if ended[FAILED]:
        return EXIT_FAILED
    if ended[ERROR]:
        return EXIT_ERROR
    if ended[TIMED_OUT] or ended[RUNNING]:
        return EXIT_TIMEOUT
    return EXIT_OK


class Tally:
    """Live counts of one run: the state of each job still going, and how the others ended."""

    def __init__(self, total: int, started: float) -> None:
        self.total = total
        self.started = started
        self.going: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()
        self.problems: list[Outcome] = []
        self._states: dict[str, str] = {}
        self._ended: set[str] = set()

    @property
    def done(self) -> int:
        """Jobs whose wait is over."""
        return len(self._ended)

    @property
    def unseen(self) -> int:
        """Jobs still going that have not been answered for yet."""
        return self.total - self.done - len(self._states)

    def update(self, job: Job) -> None:
        """`on_update`: a job of the run changed state."""
        guid, state = job.guid, str(job.state)
        if guid in self._ended or job.is_terminal:
            return  # counted by `finish`, which follows at once
        old = self._states.get(guid)
        if old == state:
            return
        if old is not None:
            self.going[old] -= 1
        self._states[guid] = state
        self.going[state] += 1

    def finish(self, outcome: Outcome) -> str:
        """A job's wait is over; returns how it ended."""
        old = self._states.pop(outcome.guid, None)
        if old is not None:
            self.going[old] -= 1
        self._ended.add(outcome.guid)
        kind = classify(outcome)
        self.ended[kind] += 1
        if kind != COMPLETE:
            self.problems.append(outcome)
        return kind


# -- output -------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ended_words(ended: Counter[str]) -> list[str]:
    words = [f"{ended[COMPLETE]} COMPLETE", f"{ended[FAILED]} FAILED"]
    words.append(f"{ended[TIMED_OUT]} timed out")
    words.append(_plural(ended[ERROR], "error"))
    return words


def _going_words(tally: Tally) -> list[str]:
    words = [f"{state} {n}" for state, n in sorted(tally.going.items()) if n > 0]
    if tally.unseen:
        words.insert(0, f"no answer yet {tally.unseen}")
    return words


def _outages(stats: ClientStats, separator: str) -> str:
    """`2 outages, 14.2 s` after `separator` once the API has been found down, else nothing."""
    if not stats.outages:
        return ""
    return f"{separator}{_plural(stats.outages, 'outage')}, {stats.outage_seconds:.1f} s"


def _traffic(stats: ClientStats) -> str:
    limited = stats.by_status.get(429, 0)
    return (
        f"{_plural(stats.requests, 'request')}, {_plural(stats.retries, 'retry')}, "
        f"{limited} x 429, rate-limit pauses {stats.rate_limit_paused_seconds:.1f} s"
    ).replace("retrys", "retries") + _outages(stats, ", ")


def unavailable(stats: ClientStats, now: float | None = None) -> str | None:
    """`API unavailable since HH:MM:SS (N s)` (local time) during an outage, else None.

    Args:
        stats: the client's counters.
        now: the wall clock (`time.time()`, the default).
    """
    since = stats.unavailable_since
    if since is None:
        return None
    now = time.time() if now is None else now
    clock = time.strftime("%H:%M:%S", time.localtime(since))
    return f"API unavailable since {clock} ({max(now - since, 0.0):.0f} s)"


def progress_line(
    tally: Tally, stats: ClientStats, elapsed: float, *, now: float | None = None
) -> str:
    """One plain progress line: no control codes, for logs and pipes.

    Args:
        tally: the run's counts.
        stats: the client's counters.
        elapsed: seconds since the run began.
        now: the wall clock for an outage's length (`time.time()`, the default).
    """
    ended = ", ".join(f"{word}" for word in _ended_words(tally.ended))
    going = ", ".join(_going_words(tally)) or "none"
    down = unavailable(stats, now)
    outage = "" if down is None else f"{down}; "
    return (
        f"[{elapsed:6.1f} s] {outage}{tally.done}/{tally.total} ended ({ended}); "
        f"going: {going}; {_traffic(stats)}"
    )


def problem_line(outcome: Outcome) -> str:
    """One line for a job that did not complete: what it is and why."""
    kind = classify(outcome)
    job = outcome.job
    operation = f"  {job.operation}" if job is not None and job.operation else ""
    error = outcome.error
    if isinstance(error, JobFailed):
        why = "; ".join(map(str, error.errors)) or "the controller gave no error details"
    elif isinstance(error, JobTimeout):
        state = f"last state {job.state}" if job is not None else "no answer seen"
        why = f"did not end within {error.timeout:g} s; {state}"
    else:  # an API or transport error (a wait's only other way to end)
        why = str(error)
    return f"{kind:<8} {outcome.guid}{operation}: {why}"


def json_record(outcome: Outcome, seconds: float) -> dict[str, Any]:
    """The `--json` object of one job."""
    job, error = outcome.job, outcome.error
    return {
        "guid": outcome.guid,
        "state": None if job is None else str(job.state),
        "operation": None if job is None else job.operation,
        "errors": []
        if job is None
        else [{"code": e.code, "title": e.title, "detail": e.detail} for e in job.errors],
        "warnings": [] if job is None else [{"detail": w.detail} for w in job.warnings],
        "seconds": round(seconds, 3),
        "result": classify(outcome),
        "error": None
        if error is None or isinstance(error, JobFailed)
        else {"type": type(error).__name__, "message": str(error)},
    }


class Display(Protocol):
    """Shows the progress of a run while it goes on."""

    period: float

    def start(self) -> None: ...

    def refresh(self) -> None: ...

    def stop(self) -> None: ...


class _NoDisplay:
    period = 3600.0

    def start(self) -> None:
        pass

    def refresh(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _LineDisplay:
    """A plain progress line now and then: pipes, logs, and terminals without rich."""

    def __init__(self, stream: TextIO, render: Callable[[], str], period: float) -> None:
        self._stream = stream
        self._render = render
        self.period = period

    def start(self) -> None:
        pass

    def refresh(self) -> None:
        with _writing(self._stream):
            print(self._render(), file=self._stream, flush=True)

    def stop(self) -> None:
        pass


class _RichDisplay:
    """rich's live display: redrawn in place, from the event loop (no refresh thread)."""

    period = FRAME_PERIOD

    def __init__(self, stream: TextIO, frame: Callable[[], Any]) -> None:
        from rich.console import Console
        from rich.live import Live

        self._frame = frame
        self._stream = stream
        # Drawn from the loop, not rich's thread: the counters are the loop's alone.
        self._live = Live(
            console=Console(file=stream),
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def start(self) -> None:
        with _writing(self._stream):
            self._live.start()
        self.refresh()

    def refresh(self) -> None:
        with _writing(self._stream):
            self._live.update(self._frame(), refresh=True)

    def stop(self) -> None:
        try:
            self.refresh()
        finally:
            with _writing(self._stream):
                self._live.stop()


_STYLES = {
    "no answer yet": "dim",
    "PROCESSING": "cyan",
    "POLLING": "yellow",
    "COMPLETE": "green",
    "FAILED": "bold red",
    "timed out": "magenta",
    "errors": "red",
}


def rich_frame(
    title: str, tally: Tally, stats: ClientStats, elapsed: float, *, now: float | None = None
) -> Any:
    """One frame of the live display (rich renderables, imported here only).

    Args:
        title: the first line.
        tally: the run's counts.
        stats: the client's counters.
        elapsed: seconds since the run began.
        now: the wall clock for an outage's length (`time.time()`, the default).
    """
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_row(
        ProgressBar(total=max(tally.total, 1), completed=tally.done, width=40),
        Text(f"{tally.done}/{tally.total} ended", style="bold"),
        Text(f"{elapsed:.1f} s", style="dim"),
    )
    counts = Table.grid(padding=(0, 1))
    counts.add_column(min_width=6)
    for _ in range(4):
        counts.add_column(justify="left")
        counts.add_column(justify="right", min_width=6)
    going: list[tuple[str, int]] = []
    if tally.unseen:
        going.append(("no answer yet", tally.unseen))
    going += [(state, n) for state, n in sorted(tally.going.items()) if n > 0]
    ended = [
        (COMPLETE, tally.ended[COMPLETE]),
        (FAILED, tally.ended[FAILED]),
        ("timed out", tally.ended[TIMED_OUT]),
        ("errors", tally.ended[ERROR]),
    ]
    for label, row in (("going", going), ("ended", ended)):
        cells: list[Text] = [Text(label, style="dim")]
        for name, n in row[:4]:
            style = _STYLES.get(name, "blue")  # a state jobwatch does not know
            cells += [Text(name, style=style), Text(str(n), style="bold")]
        if not row:
            cells.append(Text("-", style="dim"))
        cells += [Text("")] * (9 - len(cells))
        counts.add_row(*cells)
    traffic = Text(
        f"{stats.requests} requests · {stats.retries} retries · "
        f"{stats.by_status.get(429, 0)} x 429 · rate-limit pauses "
        f"{stats.rate_limit_paused_seconds:.1f} s · in flight {stats.in_flight}"
        + _outages(stats, " · "),
        style="dim",
    )
    lines: list[Any] = [Text(title, style="bold"), head]
    down = unavailable(stats, now)
    if down is not None:
        lines.append(Text(down, style="bold red"))
    return Group(*lines, counts, traffic)


class Output:
    """Where and how a run reports: live display, progress lines, JSON, summary."""

    def __init__(
        self,
        *,
        json_lines: bool,
        quiet: bool,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.json = json_lines
        self.quiet = quiet
        #: Human text goes to stderr when stdout carries JSON for a script.
        self.text = self.stderr if json_lines else self.stdout
        self.tty = _isatty(self.text)

    def display(
        self,
        title: str,
        tally: Tally,
        stats: Callable[[], ClientStats],
        clock: Callable[[], float],
    ) -> Display:
        """The live display on a terminal (rich if installed), else plain lines, or nothing."""
        if self.quiet:
            return _NoDisplay()

        def line() -> str:
            return progress_line(tally, stats(), clock() - tally.started)

        if self.json:  # stdout is a script's: plain lines on stderr, never a redraw
            return _LineDisplay(self.text, line, LINE_PERIOD_PIPE)
        if self.tty:
            try:
                import rich.live  # noqa: F401 - optional: the `cli` extra
            except ImportError:
                return _LineDisplay(self.text, line, LINE_PERIOD_TTY)
            return _RichDisplay(
                self.text, lambda: rich_frame(title, tally, stats(), clock() - tally.started)
            )
        return _LineDisplay(self.text, line, LINE_PERIOD_PIPE)

    def say(self, text: str) -> None:
        """Human text (progress, summary), unless --quiet."""
        if not self.quiet:
            self._print(self.text, text)

    def problem(self, text: str) -> None:
        """A job that did not complete: shown even with --quiet (not with --json)."""
        if not self.json:
            self._print(self.stdout, text)

    def row(self, text: str) -> None:
        """A line of `get`'s table on stdout."""
        self._print(self.stdout, text)

    def record(self, outcome: Outcome, seconds: float) -> None:
        """With --json, the job's object on stdout as soon as it ends."""
        if self.json:
            self._print(self.stdout, json.dumps(json_record(outcome, seconds)))

    @staticmethod
    def _print(stream: TextIO, text: str) -> None:
        # Flushed at once: a script reads each line as it comes, and a full disk shows now.
        with _writing(stream):
            print(text, file=stream, flush=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- running ------------------------------------------------------------------------------


#: The signals that stop a run, and how its summary names each.
_STOPPED_BY = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}


class Interrupt:
    """Turns the first Ctrl-C or SIGTERM into the cancellation of the current run.

    Service managers (systemd, Kubernetes, a CI timeout) stop a command with
    SIGTERM: it gets the same clean stop and summary as Ctrl-C, and exit 143.
    """

    def __init__(self) -> None:
        self.requested = False
        #: The signal that stopped the run, once one has.
        self.signal: signal.Signals | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a command killed by it."""
        return EXIT_TERMINATED if self.signal == signal.SIGTERM else EXIT_INTERRUPTED

    @property
    def word(self) -> str:
        """How the summary says the run was stopped."""
        return _STOPPED_BY[self.signal or signal.SIGINT]

    def install(self) -> None:
        """Catch SIGINT and SIGTERM on the running loop (where the platform lets us)."""
        loop = asyncio.get_running_loop()
        for signum in _STOPPED_BY:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._fire, signum)
                self._loop = loop

    def uninstall(self) -> None:
        """Give SIGINT and SIGTERM back to their default handlers."""
        if self._loop is not None:
            for signum in _STOPPED_BY:
                with contextlib.suppress(RuntimeError, ValueError):
                    self._loop.remove_signal_handler(signum)
            self._loop = None

    def _fire(self, signum: signal.Signals) -> None:
        self.requested = True
        self.signal = signum
        # A second Ctrl-C raises KeyboardInterrupt, a second SIGTERM kills: a way out
        # if cleanup hangs.
        self.uninstall()
        if self._task is not None:
            self._task.cancel()

    async def run(self, work: Awaitable[None]) -> bool:
        """Await `work`; True when a signal stopped it."""
        task = asyncio.ensure_future(work)
        self._task = task
        try:
            if self.requested:
                task.cancel()
            await task
        except asyncio.CancelledError:
            if not self.requested:
                raise
        finally:
            self._task = None
        return self.requested


async def _ticker(display: Display) -> None:
    while True:
        await asyncio.sleep(display.period)
        display.refresh()


class Run:
    """One wait on many jobs, with its tally, display and outputs."""

    def __init__(self, cf: Client, output: Output, interrupt: Interrupt, title: str) -> None:
        self.cf = cf
        self.output = output
        self.interrupt = interrupt
        self.title = title
        self.loop = asyncio.get_running_loop()
        self.tally = Tally(0, self.loop.time())
        self.interrupted = False
        self.seconds = 0.0

    async def wait(
        self,
        refs: Sequence[str],
        *,
        timeout: float | None,
        on_outcome: Callable[[Outcome, float], None] | None = None,
    ) -> None:
        """Wait on every job, reporting each as it ends.

        Raises:
            InvalidJobReference: a bad guid or foreign URL, before any request.
        """
        tally, output, loop = self.tally, self.output, self.loop
        stream = self.cf.as_completed(refs, timeout=timeout, on_update=tally.update)
        tally.total = len(dict.fromkeys(_guid_of(ref) for ref in refs))
        tally.started = loop.time()

        async def consume() -> None:
            try:
                async for outcome in stream:
                    now = loop.time()
                    tally.finish(outcome)
                    output.record(outcome, now - tally.started)
                    if on_outcome is not None:
                        on_outcome(outcome, now)
            finally:
                # Closing the stream leaves the poll loops of the jobs still going.
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        display = output.display(self.title, tally, lambda: self.cf.stats, loop.time)
        display.start()
        ticker = loop.create_task(_ticker(display))
        work = loop.create_task(consume())
        # A display that cannot write (full disk, EIO) stops the run: nobody sees the rest.
        ticker.add_done_callback(lambda _: work.cancel())
        try:
            self.interrupted = await self.interrupt.run(work)
        except asyncio.CancelledError:
            if not ticker.done() or ticker.cancelled():
                raise
        finally:
            ticker.cancel()
            await asyncio.wait([ticker])  # ended, without re-raising its CancelledError
            self.seconds = loop.time() - tally.started
            display.stop()
        failure = None if ticker.cancelled() else ticker.exception()
        if failure is not None:
            raise failure

    def report(self, *, limit: int | None = None) -> int:
        """Print the jobs that did not complete and the summary; return the exit code."""
        tally, output = self.tally, self.output
        problems = tally.problems if limit is None else tally.problems[:limit]
        for outcome in problems:
            output.problem(problem_line(outcome))
        if len(problems) < len(tally.problems) and not output.json:
            output.problem(f"... and {len(tally.problems) - len(problems)} more")
        ended = ", ".join(_ended_words(tally.ended))
        if self.interrupted:
            left = tally.total - tally.done
            output.say(
                f"{self.interrupt.word} after {self.seconds:.1f} s: {tally.done} of "
                f"{tally.total} jobs ended ({ended}); {left} still going"
            )
        else:
            output.say(f"{_plural(tally.total, 'job')} in {self.seconds:.1f} s: {ended}")
        stats = self.cf.stats
        down = unavailable(stats)
        output.say(_traffic(stats) + ("" if down is None else f"; {down}"))
        return self.interrupt.exit_code if self.interrupted else exit_code(tally.ended)


def _guid_of(ref: str) -> str:
    # Only for counting: the client has already checked every reference.
    return ref.rstrip("/").rsplit("/", 1)[-1] if "://" in ref else ref


def read_jobs(args: Iterable[str], stdin: TextIO) -> list[str]:
    """The JOB arguments, with `-` replaced by the lines of stdin (blanks and # skipped)."""
    jobs: list[str] = []
    for arg in args:
        if arg == "-":
            for line in stdin:
                line = line.strip()
                if line and not line.startswith("#"):
                    jobs.append(line)
        else:
            jobs.append(arg)
    return jobs


async def make_client(
    api: str | None,
    *,
    max_in_flight: int,
    rate_limit_share: float = jobwatch.DEFAULT_RATE_LIMIT_SHARE,
) -> Client:
    """A client for `--api` / `JOBWATCH_TOKEN` / the cf CLI login.

    Raises:
        ConfigError: no usable target or token.
    """
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if api is not None and token is not None:
        return Client(
            api, token=token, max_in_flight=max_in_flight, rate_limit_share=rate_limit_share
        )
    kwargs: dict[str, Any] = {"max_in_flight": max_in_flight, "rate_limit_share": rate_limit_share}
    if token is not None:
        kwargs["token"] = token
    try:
        login = Client.from_cf_config(**kwargs)
    except ConfigError as exc:
        if api is None:
            hint = f" (or pass --api URL and set {TOKEN_ENV})"
        else:
            hint = f" (or set {TOKEN_ENV} to a token for {api})"
        raise ConfigError(f"{exc}{hint}") from None
    if api is None:
        return login
    # The cf login's token was issued for its own target: never send it elsewhere.
    try:
        wanted = Client(api, max_in_flight=1)
    except ConfigError:
        await login.aclose()
        raise
    await wanted.aclose()
    if wanted.api_url != login.api_url:
        await login.aclose()
        raise ConfigError(
            f"--api {wanted.api_url} is not the cf CLI target ({login.api_url}); the cf "
            f"login's token is only sent to its own target: set {TOKEN_ENV} for this API"
        )
    return login


async def cmd_wait(args: argparse.Namespace, output: Output, interrupt: Interrupt) -> int:
    """`jobwatch wait JOB...`."""
    refs = read_jobs(args.jobs, sys.stdin)
    if not refs:
        output.say("no jobs to wait on")
        return EXIT_OK
    async with await make_client(
        args.api, max_in_flight=args.max_in_flight, rate_limit_share=args.rate_limit_share
    ) as cf:
        run = Run(cf, output, interrupt, f"jobwatch: waiting on jobs at {cf.api_url}")
        await run.wait(refs, timeout=args.timeout)
        return run.report()


async def cmd_get(args: argparse.Namespace, output: Output, interrupt: Interrupt) -> int:
    """`jobwatch get JOB...`: one status check each, as a table."""
    refs = read_jobs(args.jobs, sys.stdin)
    if not refs:
        return EXIT_OK
    async with await make_client(
        args.api, max_in_flight=args.max_in_flight, rate_limit_share=args.rate_limit_share
    ) as cf:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results: dict[str, Outcome] = {}

        async def check() -> None:
            results.update(await cf.get_jobs(refs, timeout=args.timeout))

        interrupted = await interrupt.run(check())
        if interrupted:
            output.say(interrupt.word)
            return interrupt.exit_code
        seconds = loop.time() - started
        ended: Counter[str] = Counter(classify(outcome) for outcome in results.values())
        for outcome in results.values():
            output.record(outcome, seconds)
        if not output.json:
            rows = [
                outcome
                for outcome in results.values()
                if not output.quiet or classify(outcome) != COMPLETE
            ]
            for line in job_table(rows):
                output.row(line)
        return exit_code(ended)


def job_table(outcomes: Sequence[Outcome]) -> list[str]:
    """Aligned plain-text columns: GUID, STATE, OPERATION, UPDATED, DETAILS."""
    rows = [("GUID", "STATE", "OPERATION", "UPDATED", "DETAILS")]
    for outcome in outcomes:
        job, error = outcome.job, outcome.error
        state = str(job.state) if job is not None else classify(outcome)
        if error is not None and not isinstance(error, JobFailed):
            state = classify(outcome)
        updated = ""
        if job is not None and job.updated_at is not None:
            updated = job.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if job is not None and job.errors:
            details = "; ".join(map(str, job.errors))
        elif error is not None and not isinstance(error, JobFailed):
            details = str(error)
        elif job is not None and job.warnings:
            details = "warning: " + "; ".join(w.detail for w in job.warnings)
        else:
            details = ""
        operation = job.operation if job is not None else ""
        rows.append((outcome.guid, state, operation, updated, details))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    ]


async def cmd_demo(args: argparse.Namespace, output: Output, interrupt: Interrupt) -> int:
    """`jobwatch demo`: the embedded fake controller, thousands of jobs, and the numbers."""
    from jobwatch import _demo  # imports aiohttp.web: only the demo pays for it

    scenario = _demo.Scenario(jobs=args.jobs, seed=args.seed, speed=args.speed)
    plans = scenario.plans()
    expect = scenario.expected_seconds(plans)
    async with scenario.controller() as cc:
        guids = _demo.add_jobs(cc, plans)
        limit = scenario.rate_limit()
        faults = " and ".join(
            f"{share:.0%} {fault.name.split('_')[-1]}" for fault, share in _demo.FAULTS.items()
        )
        policies = (
            "default PollPolicy and RetryPolicy"
            if args.speed == 1
            else f"default PollPolicy and RetryPolicy with every interval divided by "
            f"{args.speed:g}\n  (--speed {args.speed:g}: so are the jobs' durations and the "
            f"rate-limit window)"
        )
        output.say(
            f"jobwatch demo: {args.jobs} jobs on a fake Cloud Controller at {cc.url}\n"
            f"  quick app.delete and space.apply_manifest jobs; service_instance.create and\n"
            f"  service_bindings.create spending seconds in POLLING; "
            f"{_demo.FAILED_SHARE:.0%} end FAILED\n"
            f"  rate limit {limit.limit} requests per {limit.window:g} s; {faults} faults; "
            f"{_demo.LATENCY * 1000:.0f} ms per GET\n"
            f"  {policies}, max_in_flight 32\n"
            # The replayed schedule leaves out pacing and the machine's load: a range.
            f"  this takes about {expect:.0f} to {expect * 1.4 + 1:.0f} s"
        )
        delays: list[float] = []

        def detected(outcome: Outcome, now: float) -> None:
            finished = cc.finished_at(outcome.guid)
            if finished is not None:
                # `finished_at` is time.monotonic(), the clock of asyncio's loop.
                delays.append(max(now - finished, 0.0))

        async with Client(
            cc.url,
            token=_demo.DEMO_TOKEN,
            poll=scenario.poll_policy(),
            retry=scenario.retry_policy(),
        ) as cf:
            run = Run(cf, output, interrupt, f"jobwatch demo: {args.jobs} jobs at {cc.url}")
            await run.wait(guids, timeout=_demo.TIMEOUT, on_outcome=detected)
            code = run.report(limit=5)
        scripted = sum(plan.timeline[-1][1] == FAILED for plan in plans)
        ended = run.tally.ended
        if (
            not run.interrupted
            and ended[FAILED] == scripted
            and ended[COMPLETE] == len(plans) - scripted
        ):
            # The FAILED jobs are part of the show: the demo itself went right.
            code = EXIT_OK
        served = ", ".join(
            f"{cc.faults_injected[fault]} x {fault.name.split('_')[-1]}" for fault in _demo.FAULTS
        )
        output.say(
            f"faults served: {served}; 429s served: {cc.rate_limited_count}; "
            f"peak concurrent requests at the server: {cc.peak_in_flight}"
        )
        p50, p95 = _demo.percentile(delays, 0.5), _demo.percentile(delays, 0.95)
        output.say(
            f"detection delay (job ended on the server -> reported): p50 {p50:.2f} s, "
            f"p95 {p95:.2f} s, max {max(delays, default=0.0):.2f} s"
        )
        return code


_COMMANDS: dict[str, Callable[[argparse.Namespace, Output, Interrupt], Awaitable[int]]] = {
    "wait": cmd_wait,
    "get": cmd_get,
    "demo": cmd_demo,
}


async def _amain(args: argparse.Namespace, output: Output) -> int:
    interrupt = Interrupt()
    interrupt.install()
    try:
        return await _COMMANDS[args.command](args, output, interrupt)
    finally:
        interrupt.uninstall()


def _setup_logging(verbose: int, stream: TextIO) -> None:
    logger = logging.getLogger("jobwatch")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("jobwatch: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    # Retries are routine (the summary counts them); without -v only real trouble shows.
    logger.setLevel(
        logging.ERROR if verbose == 0 else logging.WARNING if verbose == 1 else logging.DEBUG
    )
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `jobwatch` command; returns the exit code."""
    stderr = sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"jobwatch: error: {exc}", file=stderr)
        return EXIT_USAGE
    output = Output(json_lines=getattr(args, "json", False), quiet=getattr(args, "quiet", False))
    _setup_logging(getattr(args, "verbose", 0), stderr)
    try:
        return asyncio.run(_amain(args, output))
    except (ConfigError, InvalidJobReference) as exc:
        print(f"jobwatch: error: {exc}", file=stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("jobwatch: interrupted", file=stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, like other shell tools.
        _silence(sys.stdout)
        return EXIT_BROKEN_PIPE
    except OutputError as exc:
        # What is still buffered would fail again at exit (and exit 120): drop it.
        _silence(exc.stream)
        if exc.stream is not stderr:
            with contextlib.suppress(OSError):
                print(f"jobwatch: error: {exc}", file=stderr, flush=True)
        return EXIT_OUTPUT


def _silence(stream: TextIO) -> None:
    """Point `stream`'s file descriptor at /dev/null, so no later write or flush fails."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
