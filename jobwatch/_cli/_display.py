"""Where a run's text goes while it runs: the live display, progress lines, JSON, the summary.

A terminal gets rich's live display (the `cli` extra) or, without rich, a
plain progress line now and then; a pipe or a log gets plain lines; `--json`
keeps stdout for the records. A write that fails (full disk, EIO) becomes
`OutputError`, one line and exit 74.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TextIO

from jobwatch import ClientStats, Outcome

from ._report import (
    COMPLETE,
    ERROR,
    FAILED,
    TIMED_OUT,
    Tally,
    _outages,
    json_record,
    progress_line,
    unavailable,
)

#: Seconds between two progress lines when there is no live display.
LINE_PERIOD_TTY = 2.0
LINE_PERIOD_PIPE = 10.0
#: Seconds between two frames of the live display.
FRAME_PERIOD = 0.125


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
