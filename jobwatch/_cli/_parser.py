"""The command line's grammar: the argument parser, its argument types, and its help."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

import jobwatch

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
