"""The `jobwatch` command: wait on jobs or check them from a shell, or run the demo.

One job per module, each importing only those above it:

- `_parser`: the argument parser and its argument types;
- `_report`: how each job ended, the exit code, and the lines and records (pure);
- `_display`: where the text goes while a run runs (live display, lines, JSON);
- `_run`: signals, the client, a run, and the `wait` and `get` commands;
- `_demo_cmd`: the `demo` command (the scenario itself is `jobwatch._demo`);
- here: `main`, which parses, runs a command, and turns what went wrong into
  one line and its exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from jobwatch import ConfigError, InvalidJobReference

from ._demo_cmd import cmd_demo
from ._display import Display, Output, OutputError, rich_frame
from ._parser import UsageError, build_parser
from ._report import (
    COMPLETE,
    ERROR,
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_TERMINATED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    FAILED,
    RUNNING,
    TIMED_OUT,
    Tally,
    classify,
    exit_code,
    job_table,
    json_record,
    problem_line,
    progress_line,
    unavailable,
)
from ._run import TOKEN_ENV, Interrupt, Run, cmd_get, cmd_wait, make_client, read_jobs

__all__ = [
    "COMPLETE",
    "ERROR",
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_TERMINATED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "FAILED",
    "RUNNING",
    "TIMED_OUT",
    "TOKEN_ENV",
    "Display",
    "Interrupt",
    "Output",
    "OutputError",
    "Run",
    "Tally",
    "UsageError",
    "build_parser",
    "classify",
    "cmd_demo",
    "cmd_get",
    "cmd_wait",
    "exit_code",
    "job_table",
    "json_record",
    "main",
    "make_client",
    "problem_line",
    "progress_line",
    "read_jobs",
    "rich_frame",
    "unavailable",
]

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
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(_amain(args, output))
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


#: Set to `asyncio` to run the command on asyncio's own loop though uvloop is installed.
LOOP_ENV = "JOBWATCH_LOOP"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (the `fast` extra), else asyncio's (None).

    The command's choice only: the library runs on whatever loop its caller
    uses. On uvloop a poll costs less CPU, by 4 % to a third in our runs
    (benchmarks/README.md, section 1).
    """
    if os.environ.get(LOOP_ENV, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _silence(stream: TextIO) -> None:
    """Point `stream`'s file descriptor at /dev/null, so no later write or flush fails."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
