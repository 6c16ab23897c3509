"""The controller's rate limiter, as the fake runs it: `RateLimit` and its counting.

Fixed windows per Authorization header value, on the server's clock; with
several API VMs each counts on its own. `_Limiter.count` is on the path of
every job GET when a limit is set.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import attrs

__all__ = ["RateLimit"]


def _check_limit(instance: RateLimit, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError("limit must be at least 1")


def _check_window(instance: RateLimit, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError("window must be positive")


def _check_retry_after(instance: RateLimit, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("seconds", "epoch"):
        raise ValueError(f"retry_after must be 'seconds' or 'epoch', not {value!r}")


def _check_offset(
    instance: RateLimit, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError("offset must be a finite number of seconds")


def _check_vms(instance: RateLimit, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError("vms must be at least 1")


@attrs.frozen
class RateLimit:
    """The controller's rate limiter: fixed windows per Authorization header value.

    A token's windows are `[offset + k*window, offset + (k+1)*window)` on the
    server's clock (epoch seconds). Each job GET with a valid token counts and
    carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` (rounded down to 10 %
    steps of the limit) and `X-RateLimit-Reset` (the window's end, truncated to
    the second); past the limit it gets the text/plain 429.

    Args:
        limit: requests per window and token.
        window: the window's length in seconds.
        retry_after: `"seconds"`: the 429's `Retry-After` is delay-seconds until the
            truncated reset (0 in the window's last second), as CAPI since May 2023;
            `"epoch"`: the reset epoch itself, as older controllers send it.
        offset: where windows start (seconds past a multiple of `window`); None
            gives each token its own, drawn from the fake's seeded random numbers.
        vms: API VMs the requests go round-robin over; each enforces
            `ceil(limit / vms)` on its own count and estimates Remaining from it.
    """

    limit: int = attrs.field(default=100, validator=_check_limit)
    window: float = attrs.field(default=60.0, validator=_check_window)
    retry_after: Literal["seconds", "epoch"] = attrs.field(
        default="seconds", kw_only=True, validator=_check_retry_after
    )
    offset: float | None = attrs.field(default=None, kw_only=True, validator=_check_offset)
    vms: int = attrs.field(default=1, kw_only=True, validator=_check_vms)


class _RateWindow:
    """One token's place in its rate-limit windows: its offset and each VM's count."""

    __slots__ = ("counts", "index", "offset")

    def __init__(self, offset: float, vms: int) -> None:
        self.offset = offset
        self.index: int | None = None
        self.counts = [0] * vms


class _Limiter:
    """A `RateLimit` at work: each token's window, and which VM answers next."""

    __slots__ = ("_next_vm", "_offset_rng", "_windows", "rate")

    def __init__(self, rate: RateLimit, seed: int | None) -> None:
        self.rate = rate
        self._windows: dict[str, _RateWindow] = {}
        self._next_vm = 0
        # A stream of its own, so the tokens seen do not shift the random faults.
        self._offset_rng = random.Random(None if seed is None else f"rate-limit-{seed}")

    def count(self, auth: str | None, headers: dict[str, str], server_now: float) -> bool:
        """Count a request in its token's window and set the headers; False when over.

        `server_now` is the server's clock, epoch seconds.
        """
        rate = self.rate
        limit, length, vms = rate.limit, rate.window, rate.vms
        key = auth or ""
        window = self._windows.get(key)
        if window is None:
            offset = self._offset_rng.random() * length if rate.offset is None else rate.offset
            window = self._windows[key] = _RateWindow(offset % length, vms)
        index = math.floor((server_now - window.offset) / length)
        if index != window.index:
            window.index = index
            window.counts = [0] * vms
        vm = 0
        if vms > 1:
            vm = self._next_vm % vms
            self._next_vm = vm + 1
        per_vm = -(-limit // vms)
        count = window.counts[vm] = window.counts[vm] + 1
        # Each VM only knows its own count: the fraction left there, in 10 % steps, of the limit.
        remaining = max(per_vm - count, 0) * 10 // per_vm * limit // 10
        reset = math.floor(window.offset + (index + 1) * length)
        headers["X-RateLimit-Limit"] = str(limit)
        headers["X-RateLimit-Remaining"] = str(remaining)
        headers["X-RateLimit-Reset"] = str(reset)
        if count <= per_vm:
            return True
        if rate.retry_after == "epoch":
            headers["Retry-After"] = str(reset)
        else:
            headers["Retry-After"] = str(max(int(reset - server_now), 0))
        return False
