"""Test mode: one switch that makes every client poll and retry without waiting.

The one owner of the rule. Where the scheduler would otherwise wait, it reads
`enabled`: the poll schedule (`_scheduler.Scheduler._push`), the retry backoff and
the outage gate's probe spacing (`_gate.RetryRules.backoff`), the waits a
server asks for (`_poller.JobPoll.failed`) and the rate budget's pauses and
pacing (`_ratelimit.RateBudget.earliest`). Deadlines are never read from here:
they hold as always. Public as `jobwatch.testing.set_testing`.
"""

from __future__ import annotations

from types import TracebackType

__all__ = ["enabled", "is_testing", "set_testing"]

#: True while test mode is on. A plain module attribute: one read on the hot path.
enabled = False


class _Restore:
    """What `set_testing` returns: a `with` block restores the setting it replaced."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __repr__(self) -> str:
        return f"<jobwatch set_testing: {enabled}, restores {self._previous}>"

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global enabled
        enabled = self._previous


def set_testing(on: bool = True) -> _Restore:
    """Turn test mode on (or off): every `Client` polls and retries without waiting.

    While on, poll intervals, retry backoff, the outage gate's probe spacing
    and the waits a server asks for (`Retry-After`, `X-RateLimit-Reset`) are
    all zero, and the rate budget paces nothing. Each poll still goes through
    the event loop and over HTTP, and deadlines still hold: a wait with
    `timeout=0.2` on a job that never ends raises `JobTimeout` after 0.2 s.
    Errors and `Client.stats` still carry what the server asked for
    (`RateLimited.retry_after`, `rate_limit_paused_seconds`).

    One switch for the process: every client, made before or after, on every
    event loop. A poll already scheduled keeps its time, so turn it on before
    the waits start (in a fixture). Call it plainly, or use it as a context
    manager, which restores the setting from before the call when the block
    ends (nested blocks too)::

        with jobwatch.testing.set_testing():
            await cf.wait_for_job(guid)  # no sleeping through the schedule

    Args:
        on: True turns test mode on, False off.

    Returns:
        A context manager restoring the previous setting on exit.
    """
    global enabled
    previous, enabled = enabled, bool(on)
    return _Restore(previous)


def is_testing() -> bool:
    """True while test mode (`set_testing`) is on."""
    return enabled
