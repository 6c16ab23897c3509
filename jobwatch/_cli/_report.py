"""What a run says, as pure functions: how each job ended, the exit code, the lines and records.

Nothing here writes or waits: `_display` and `_run` print what these return.
The library's own text is reused (a failed or late job reads as its exception
says, a job's fields as the converter unstructures them), so the command says
what the library says.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from jobwatch import ClientStats, Job, JobFailed, JobTimeout, Outcome
from jobwatch._errors import _quote_errors
from jobwatch._models import unstructure_job

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

# How a job ended, as the command counts it.
COMPLETE = "COMPLETE"
FAILED = "FAILED"
TIMED_OUT = "TIMEOUT"
ERROR = "ERROR"
RUNNING = "RUNNING"  # `get` only: the job has not ended yet


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
    """One line for a job that did not complete: what it is and why (the error's own words)."""
    kind = classify(outcome)
    job = outcome.job
    operation = f"  {job.operation}" if job is not None and job.operation else ""
    error = outcome.error
    # A FAILED or late job's reason is its exception's message without the job's name,
    # which the line gives first; an API or transport error (a wait's only other way
    # to end) says all of itself.
    why = error.reason if isinstance(error, JobFailed | JobTimeout) else str(error)
    return f"{kind:<8} {outcome.guid}{operation}: {why}"


def json_record(outcome: Outcome, seconds: float) -> dict[str, Any]:
    """The `--json` object of one job: the job's fields as the library unstructures them."""
    job, error = outcome.job, outcome.error
    body = {} if job is None else unstructure_job(job)
    return {
        "guid": outcome.guid,
        "state": body.get("state"),
        "operation": body.get("operation"),
        "errors": body.get("errors", []),
        "warnings": body.get("warnings", []),
        "seconds": round(seconds, 3),
        "result": classify(outcome),
        "error": None
        if error is None or isinstance(error, JobFailed)
        else {"type": type(error).__name__, "message": str(error)},
    }


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
            details = _quote_errors(job.errors)  # as a JobFailed quotes them: bounded
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
