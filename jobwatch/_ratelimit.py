"""The rate budget: the server's clock, the waits it asks for, and the pacing of requests.

The Cloud Controller's rate limiter (`middleware/rate_limiter.rb`) reports a
fixed window per user: `X-RateLimit-Limit`, `X-RateLimit-Remaining` (rounded
down to 10 % steps) and `X-RateLimit-Reset`, an epoch of the *server's* clock
truncated to the second. Every epoch is read against the same response's
`Date` (server clock, whole seconds), never against this machine's clock,
which may be minutes off; one second is added for the truncation, so that no
estimate ever ends before the server's window does.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

from . import _testing_mode

#: The longest a server may make us wait (Retry-After, X-RateLimit-Reset), and the
#: longest window believed: the Cloud Controller's rate-limit window is an hour.
MAX_SERVER_WAIT = 3600.0
#: The share of the usable budget spent at full speed before pacing starts:
#: short bursts of quick jobs stay fast, long waits never run the budget dry.
FREE_SHARE = 0.5
#: While a new window's numbers are not known yet (its free share spent), one
#: request goes this often until an answer reports them: a trickle, never a stop
#: (the answer may not come: a proxy's 429 carries no rate-limit headers).
RECHECK = 0.05
#: A `Retry-After` this large is an epoch (older controllers send the reset
#: epoch itself), not a delay: 10^9 seconds is 31 years.
EPOCH_THRESHOLD = 1e9
#: Epochs are truncated to the second: the true instant is up to this much later.
TRUNCATION = 1.0


def _clamp(seconds: float) -> float | None:
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_SERVER_WAIT)


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date (`Date`, `Retry-After`) as an epoch; None when absent or unreadable."""
    if not value:
        return None
    try:
        parts = email.utils.parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parts is None:
        return None
    try:
        return float(email.utils.mktime_tz(parts))
    except (OverflowError, ValueError):
        return None


def parse_retry_after(
    value: str | None, *, server_now: float | None = None, reset: str | None = None
) -> float | None:
    """Seconds to wait from a `Retry-After`: delay-seconds, an HTTP date, or an epoch.

    Args:
        value: the header.
        server_now: the server's clock (its `Date`), against which a date or an
            epoch is read; this machine's clock when unknown.
        reset: the same response's `X-RateLimit-Reset`; a `Retry-After` equal to
            it is that epoch (controllers before May 2023).

    Capped at `MAX_SERVER_WAIT`: a broken or hostile server must not pause a
    client for ever.
    """
    if not value:
        return None
    now = time.time() if server_now is None else server_now
    try:
        number = float(value)
    except ValueError:
        when = parse_http_date(value)
        return None if when is None else _clamp(when - now)
    if number >= EPOCH_THRESHOLD or (reset is not None and value.strip() == reset.strip()):
        return _clamp(number + TRUNCATION - now)
    return _clamp(number)


class RateBudget:
    """What the API's `X-RateLimit-*` headers say, and when the next request may go.

    All times are in the event loop's clock unless named `epoch`. With no
    rate-limit headers seen, `earliest()` only reflects pauses from a 429, so
    nothing changes for APIs that do not limit.

    Args:
        share: the share of the window's limit this client may spend (0 < share <= 1);
            the rest stays free for the same user's other work.
    """

    __slots__ = (
        "_assumed",
        "_date_epoch",
        "_date_text",
        "_last_send",
        "_left",
        "_limit",
        "_reset_at",
        "_reset_epoch",
        "_spent",
        "clock_offset",
        "paused_seconds",
        "paused_until",
        "share",
    )

    def __init__(self, share: float = 1.0) -> None:
        self.share = share
        self.paused_until = 0.0
        self.paused_seconds = 0.0
        #: The server's clock minus this machine's, learned from `Date` (None: unknown).
        self.clock_offset: float | None = None
        self._limit: int | None = None
        self._left = 0
        self._reset_at = 0.0
        self._reset_epoch = -math.inf
        self._last_send = -math.inf
        self._assumed = False  # the window ended; its successor is not reported yet
        self._spent = 0  # requests sent in the current window, by this client's own count
        self._date_text = ""
        self._date_epoch = 0.0

    def __repr__(self) -> str:
        if self._limit is None:
            return f"<RateBudget unknown paused_until={self.paused_until:.1f}>"
        return f"<RateBudget left~{self._left}/{self._limit} reset_at={self._reset_at:.1f}>"

    @property
    def limit(self) -> int | None:
        """The window's limit as last reported (None: the API reported none)."""
        return self._limit

    @property
    def remaining(self) -> int | None:
        """This client's estimate of the requests left in the window."""
        return None if self._limit is None else max(self._left, 0)

    def share_used(self, now: float) -> float | None:
        """The fraction of the window's limit this client has spent in the current window.

        By its own count of the requests it sent since the window began; None
        while the API reports no rate limit.
        """
        if self._limit is None:
            return None
        if now >= self._reset_at and not self._assumed:
            return 0.0  # the window is over; nothing is sent in the next one yet
        return self._spent / self._limit

    def age(self, date: float) -> float:
        """Seconds since a response dated `date` (its `Date`: an epoch, whole seconds) was sent.

        Read against the server's clock learnt from earlier answers (this
        machine's while none is known). The true instant is up to a second
        after a truncated `date`: the latest is taken, so an age is never
        overestimated; a `date` ahead of the clock known (which may be off) is 0.
        """
        return max(time.time() + (self.clock_offset or 0.0) - date - TRUNCATION, 0.0)

    def _usable(self) -> float:
        """Requests this client may still send in the window, its share applied."""
        assert self._limit is not None
        return self._left - self._limit * (1.0 - self.share)

    def server_now(self, headers: Mapping[str, str]) -> float:
        """The server's clock when it sent `headers` (its `Date`), as an epoch.

        Without a `Date`, this machine's clock corrected by the offset learned
        from earlier ones.
        """
        text = headers.get("Date")
        if text:
            if text != self._date_text:  # one parse per second of server time
                epoch = parse_http_date(text)
                if epoch is not None:
                    self._date_text, self._date_epoch = text, epoch
                    self.clock_offset = epoch - time.time()
            if text == self._date_text:
                return self._date_epoch
        return time.time() + (self.clock_offset or 0.0)

    def earliest(self, now: float, horizon: float = math.inf) -> float:
        """The loop time at which the next request may be sent (`<= now`: at once).

        Args:
            now: the loop's clock.
            horizon: the latest deadline among the client's waits: the budget is
                spread to last until it or the window's reset, whichever is first.

        In test mode (`set_testing`) at once: no pause, no pacing (the pause a
        429 asked for is still counted in `paused_seconds`).
        """
        if _testing_mode.enabled:
            return -math.inf
        at = self.paused_until
        if self._limit is None:
            return at
        usable = self._usable()
        free = self._limit * self.share * FREE_SHARE
        if now >= self._reset_at:
            # A new window: spend its free share, then wait for a response to report it.
            if self._assumed and usable <= free:
                at = max(at, self._last_send + RECHECK)
        elif usable < 1:
            at = max(at, self._reset_at)
        elif usable <= free:
            end = min(self._reset_at, horizon)
            gap = max(end - now, 0.0) / usable
            at = max(at, self._last_send + gap)
        return at

    def spendable(self, now: float) -> bool:
        """True when a request may go now without pacing: not paused, budget left."""
        if now < self.paused_until:
            return False
        return self._limit is None or now >= self._reset_at or self._usable() >= 1

    def sent(self, now: float) -> None:
        """Count one request going out."""
        if self._limit is not None and now >= self._reset_at and not self._assumed:
            self._left, self._assumed = self._limit, True
            self._spent = 0
        self._last_send = now
        self._left -= 1
        self._spent += 1

    def observe(self, headers: Mapping[str, str], *, now: float, others: int) -> None:
        """Read the rate-limit headers of a response; `others` = requests still in flight.

        The server's Remaining is rounded down and does not count the requests
        still on their way, so the estimate stays on the safe side.
        """
        server_now = self.server_now(headers)  # learns the server's clock, cheaply
        limit = headers.get("X-RateLimit-Limit")
        remaining = headers.get("X-RateLimit-Remaining")
        reset = headers.get("X-RateLimit-Reset")
        if limit is None or remaining is None or reset is None:
            return
        try:
            limit_n, remaining_n, reset_epoch = int(limit), int(remaining), float(reset)
        except ValueError:
            return
        if not math.isfinite(reset_epoch):
            return
        wait = _clamp(reset_epoch + TRUNCATION - server_now)
        reset_at = now + (wait or 0.0)
        left = remaining_n - others
        if self._limit is None or reset_epoch > self._reset_epoch:
            # First headers, or a new window.
            if self._limit is not None and not self._assumed:
                # A window we did not see begin: of ours, only this one and those
                # still in flight are known to be in it.
                self._spent = 1 + others
            self._left, self._reset_at, self._reset_epoch = left, reset_at, reset_epoch
        elif reset_epoch == self._reset_epoch:
            # The same window: every reading is safe, the smallest is the closest.
            self._left = min(self._left, left)
            self._reset_at = min(self._reset_at, reset_at)
        else:
            return  # a late answer from the window before
        self._assumed = False
        self._limit = max(limit_n, 1)

    def server_wait(self, status: int, headers: Mapping[str, str], now: float) -> float | None:
        """Seconds the server asked us to wait (429, 503); a 429 pauses the whole client.

        `Retry-After` is read as delay-seconds, an HTTP date or an epoch; for a
        429 the window's `X-RateLimit-Reset` is a floor too (a truncated
        `Retry-After: 0` in the window's last second must not send a burst into
        the same window).
        """
        if status not in (429, 503):
            return None
        server_now = self.server_now(headers)
        reset = headers.get("X-RateLimit-Reset")
        wait = parse_retry_after(headers.get("Retry-After"), server_now=server_now, reset=reset)
        if status == 429 and reset:
            try:
                until_reset = _clamp(float(reset) + TRUNCATION - server_now)
            except ValueError:
                until_reset = None
            if until_reset is not None:
                wait = until_reset if wait is None else max(wait, until_reset)
        if status == 429:
            # Only the limiter's own 429 (its X-RateLimit-Reset) speaks for the window: a
            # proxy's bare 429 pauses the client, and the numbers we know stand.
            self.pause(now + (wait if wait is not None else 1.0), now, ends_window=bool(reset))
        return wait

    def pause(self, until: float, now: float, *, ends_window: bool = True) -> None:
        """Stop every request until `until` (a 429 was answered).

        With `ends_window` (the limiter's own 429), the window we knew is spent
        and ends then: the next request after it starts a new one.
        """
        if until > self.paused_until:
            self.paused_seconds += until - max(now, self.paused_until)
            self.paused_until = until
        if not ends_window:
            return
        # The server says when the budget is back: that ends the window we knew.
        self._left = min(self._left, 0)
        self._reset_at = min(self._reset_at, until)
        self._assumed = False  # the first request after it refills the budget
