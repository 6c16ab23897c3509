"""A client's shared rate-limit budget: pauses after a 429, and paces before one."""

from __future__ import annotations

import math
import time

#: The share of a window's budget spent at full speed before pacing starts:
#: short bursts of quick jobs stay fast, long waits never run the budget dry.
FREE_SHARE = 0.5
#: Slack after the advertised reset before the first request of the new window
#: (the header has one-second resolution).
RESET_SLACK = 0.25
#: The longest window believed (the Cloud Controller's is an hour).
MAX_WINDOW = 3600.0
#: While a new window's numbers are not known yet, how often to look again.
RECHECK = 0.05


class RateBudget:
    """What the API's `X-RateLimit-*` headers say, and when the next request may go.

    All times are in the event loop's clock. With no rate-limit headers seen,
    `earliest()` only reflects pauses from a 429, so nothing changes for APIs
    that do not limit.
    """

    __slots__ = (
        "_assumed",
        "_last_send",
        "_left",
        "_limit",
        "_reset_at",
        "paused_seconds",
        "paused_until",
    )

    def __init__(self) -> None:
        self.paused_until = 0.0
        self.paused_seconds = 0.0
        self._limit: int | None = None
        self._left = 0
        self._reset_at = 0.0
        self._last_send = float("-inf")
        self._assumed = False  # the window ended; its successor is not reported yet

    def __repr__(self) -> str:
        if self._limit is None:
            return f"<RateBudget unknown paused_until={self.paused_until:.1f}>"
        return f"<RateBudget left~{self._left}/{self._limit} reset_at={self._reset_at:.1f}>"

    def earliest(self, now: float) -> float:
        """The loop time at which the next request may be sent (`<= now`: at once)."""
        at = self.paused_until
        if self._limit is None:
            return at
        if now >= self._reset_at + RESET_SLACK:
            # A new window: spend its free share, then wait for a response to report it.
            if self._assumed and self._left <= self._limit * FREE_SHARE:
                at = max(at, now + RECHECK)
        elif self._left <= 0:
            at = max(at, self._reset_at + RESET_SLACK)
        elif self._left <= self._limit * FREE_SHARE:
            gap = (self._reset_at + RESET_SLACK - now) / self._left
            at = max(at, self._last_send + gap)
        return at

    def sent(self, now: float) -> None:
        """Count one request going out."""
        if self._limit is not None and now >= self._reset_at + RESET_SLACK and not self._assumed:
            self._left, self._assumed = self._limit, True
        self._last_send = now
        self._left -= 1

    def observe(
        self,
        limit: str | None,
        remaining: str | None,
        reset: str | None,
        *,
        now: float,
        others: int,
    ) -> None:
        """Read the three headers of a response; `others` = requests still in flight.

        The server's Remaining is rounded down and does not count the requests
        still on their way, so the estimate stays on the safe side.
        """
        if limit is None or remaining is None or reset is None:
            return
        try:
            limit_n, remaining_n, reset_epoch = int(limit), int(remaining), float(reset)
        except ValueError:
            return
        if not math.isfinite(reset_epoch):
            return
        # Never believe a window longer than the controller's hour.
        reset_at = now + min(reset_epoch - time.time(), MAX_WINDOW)
        left = remaining_n - others
        if self._limit is None or reset_at > self._reset_at + 0.5:
            self._left = left  # first headers, or a new window
        else:
            self._left = min(self._left, left)
        self._assumed = False
        self._limit = max(limit_n, 1)
        self._reset_at = max(self._reset_at, reset_at)

    def pause(self, until: float, now: float) -> None:
        """Stop every request until `until` (a 429 was answered)."""
        if until > self.paused_until:
            self.paused_seconds += until - max(now, self.paused_until)
            self.paused_until = until
        # The server says when the budget is back: that ends the window we knew.
        self._left = min(self._left, 0)
        self._reset_at = min(self._reset_at, until)
