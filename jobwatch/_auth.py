"""Credentials: the token protocols, the header cache, and one refresh for many waiters."""

from __future__ import annotations

import asyncio
import base64
import copy
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from ._errors import (
    ApiError,
    ClientClosed,
    ConfigError,
    JobwatchError,
    TransportError,
    Unauthorized,
)
from ._models import ErrorDetail

log = logging.getLogger("jobwatch")

TokenValue = str | Awaitable[str]


class TokenProvider(Protocol):
    """A callable returning the `Authorization` header value, sync or async."""

    def __call__(self) -> TokenValue: ...


@runtime_checkable
class RefreshableTokenProvider(Protocol):
    """A provider that can also get a new token when the API answers 401."""

    def __call__(self) -> TokenValue: ...

    def refresh(self) -> Awaitable[None] | None: ...


Token = str | TokenProvider | RefreshableTokenProvider


def bearer(value: str) -> str:
    """Return an Authorization header value, adding the `bearer` scheme when missing."""
    value = value.strip()
    if " " in value:
        return value
    return f"bearer {value}"


#: Refresh ahead when the access token's `exp` is less than this many seconds away
#: (the cf CLI's rule).
REFRESH_AHEAD = 60.0
#: After an attempt to get a token, the next ahead-of-expiry attempt waits at least
#: this long: a UAA that is down, or that issues tokens already near their end, must
#: not draw a refresh per request.
AHEAD_RETRY = 5.0
_INF = float("inf")


def jwt_expiry(header: str | None) -> float | None:
    """The `exp` (Unix time) of a `bearer <JWT>` header value; None if it has none to read.

    No signature check: it is the caller's own token, read only to know when to
    renew it.
    """
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3 or not parts[0].startswith("eyJ"):
        return None
    payload = parts[1]
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, RecursionError):
        return None
    exp = data.get("exp") if isinstance(data, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    exp = float(exp)
    return exp if math.isfinite(exp) else None


class Credentials:
    """Hands out the Authorization header and refreshes it once for many waiters.

    Every refresh runs as one task of its own that all callers await through
    `asyncio.shield`: a thousand concurrent 401s cause one refresh, and a caller
    cancelled meanwhile leaves it running, so the new token is kept for the
    next request. A failed refresh is shared the same way: those who waited for
    it get its error instead of asking again, and a refusal (`Unauthorized`) is
    kept, so the same rejected token never costs another refresh request.

    An access token that is a JWT whose `exp` is less than `REFRESH_AHEAD`
    seconds away (client clock) is refreshed before it is sent, as the cf CLI
    does. If that fails, the current token is sent while it lasts (a 401 then
    takes the usual path), and the next attempt ahead waits `AHEAD_RETRY`.
    """

    __slots__ = ("_closed", "_due", "_failure", "_header", "_headers", "_provider", "_task")

    def __init__(self, token: Token | None) -> None:
        self._provider: Callable[[], TokenValue] | None = None
        self._header: str | None = None
        #: When (time.time()) the header is due to be refreshed ahead; inf for never.
        #: Worked out once per header value, so `cached` is one comparison.
        self._due = _INF
        self._task: asyncio.Task[None] | None = None
        self._failure: tuple[str | None, JobwatchError] | None = None
        self._closed = False
        #: The request headers for `_header`, built once per value (the one cache of them).
        self._headers: Mapping[str, str] = {}
        if isinstance(token, str):
            self._set(bearer(token))  # nothing to refresh it with: never due
        elif token is not None:
            if not callable(token):
                raise TypeError("token must be a string or a callable returning one")
            self._provider = token

    def __repr__(self) -> str:
        kind = "none" if self._provider is None and self._header is None else "set"
        refreshing = " refreshing" if self._task is not None else ""
        return f"<Credentials {kind}{refreshing}>"

    @property
    def can_refresh(self) -> bool:
        """True when a 401 may be cured by asking the provider again."""
        return self._provider is not None

    @property
    def cached_headers(self) -> Mapping[str, str] | None:
        """The request headers as they stand, or None when `headers()` has work to do."""
        if time.time() >= self._due or (self._header is None and self._provider is not None):
            return None
        return self._headers

    async def headers(self) -> Mapping[str, str]:
        """The request headers (`Authorization`, or none), the token refreshed first if due."""
        await self.header()
        return self._headers

    def _set(self, header: str) -> None:
        self._header = header
        self._headers = {"Authorization": header}

    async def header(self) -> str | None:
        """The current header value, refreshed first when it is about to expire.

        Raises:
            JobwatchError: there was no token yet and the provider failed to give one.
        """
        if self._header is None:
            if self._provider is None:
                return None
            await self._renew(None, refresh=False)
        current = self._header
        if current is not None and time.time() >= self._due and self._provider is not None:
            task = self._task or self._start(current, refresh=True, ahead=True)
            error = await self._join(task)
            if error is not None and self._closed:
                raise error
            # Any other failure was logged by the refresh: the current token is still
            # good for up to a minute, and a 401 would take the usual path.
        return self._header

    async def refresh(self, rejected: str | None) -> bool:
        """Get a new header after `rejected` got a 401; True if there is a new one.

        Raises:
            JobwatchError: what the provider raised (`Unauthorized` for a refused
                refresh, `TransportError` when the token endpoint did not answer).
        """
        if self._provider is None:
            return False
        return await self._renew(rejected, refresh=True)

    async def aclose(self) -> None:
        """Cancel a refresh still running and wait for it to end; no new one starts."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait((task,))

    async def _renew(self, rejected: str | None, *, refresh: bool) -> bool:
        if self._header != rejected:  # someone refreshed since `rejected` was sent
            return self._header is not None
        task = self._task
        if task is None:
            failure = self._failure
            if (
                failure is not None
                and failure[0] == rejected
                and isinstance(failure[1], Unauthorized)
            ):
                raise copy.copy(failure[1])  # refused for good: do not ask again
            task = self._start(rejected, refresh=refresh, ahead=False)
        error = await self._join(task)
        if error is not None:
            raise error
        return self._header != rejected

    def _start(self, current: str | None, *, refresh: bool, ahead: bool) -> asyncio.Task[None]:
        if self._closed:
            raise ClientClosed()
        task = asyncio.get_running_loop().create_task(
            self._run(current, refresh=refresh, ahead=ahead), name="jobwatch-token-refresh"
        )
        self._task = task
        task.add_done_callback(self._finished)
        return task

    @staticmethod
    def _finished(task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here: its callers may all have gone

    async def _join(self, task: asyncio.Task[None]) -> JobwatchError | None:
        """Wait for the refresh without ever cancelling it; its error (a copy) or None."""
        try:
            await asyncio.shield(task)
        except JobwatchError as exc:
            # A copy per caller: one exception raised in a thousand tasks would grow
            # one traceback, and the original's frames stay with the task.
            return copy.copy(exc)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and self._closed and (me is None or not me.cancelling()):
                # The client closed under us; we ourselves were not cancelled.
                return ClientClosed("a token refresh")
            raise
        return None

    async def _run(self, current: str | None, *, refresh: bool, ahead: bool) -> None:
        try:
            await self._get_new(current, refresh=refresh, ahead=ahead)
        finally:
            # Let go before the task is done: a caller resuming on its result must
            # never find this (finished) refresh and take it for one still running.
            self._task = None

    async def _get_new(self, current: str | None, *, refresh: bool, ahead: bool) -> None:
        assert self._provider is not None
        started = time.time()
        if ahead:
            expiry = jwt_expiry(current)
            left = "" if expiry is None else f" (it expires in {expiry - started:.0f} s)"
            log.info("refreshing the access token ahead of its expiry%s", left)
        header: str | None = None
        failed: JobwatchError | None = None
        try:
            method = getattr(self._provider, "refresh", None) if refresh else None
            if callable(method):
                result = method()
                if inspect.isawaitable(result):
                    await result
            header = await self._ask(self._provider)
        except JobwatchError as exc:
            failed = exc
        except Exception as exc:
            # A provider of the user's own (e.g. an aiohttp call to its UAA) failed.
            # Transient: the poll backs off and asks again.
            failed = TransportError(
                f"the token provider failed: {type(exc).__name__}: {str(exc)[:200]}"
            )
        if failed is not None:
            self._failure = (current, failed)
            if self._header == current:
                # A refusal will not change by asking again; anything else may, later.
                wait = _INF if isinstance(failed, Unauthorized) else time.time() + AHEAD_RETRY
                self._due = max(self._due, wait)
            if ahead:
                log.warning(
                    "could not refresh the access token ahead of its expiry; "
                    "sending the current one while the API accepts it: %s",
                    failed,
                )
            # Raised out here, unchained: an aiohttp error keeps its request's
            # headers, secrets included.
            raise failed
        assert header is not None
        self._failure = None
        self._set(header)
        expiry = jwt_expiry(header)
        due = _INF if expiry is None else expiry - REFRESH_AHEAD
        # A refreshed token already near its end (or the same one again) is tried
        # again later, not on the very next request; a first one right away.
        self._due = max(due, time.time() + AHEAD_RETRY) if refresh else due

    @staticmethod
    async def _ask(provider: Callable[[], TokenValue]) -> str:
        value = provider()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("the token provider returned no token")
        return bearer(value)


def refresh_failed(error: JobwatchError, answer: ApiError) -> JobwatchError:
    """The error of a request whose 401 (`answer`) a token refresh could not cure."""
    if isinstance(error, TransportError):
        return TransportError(
            f"the API answered 401 and the token refresh failed: {error.message}",
            url=answer.url,
            transient=error.transient,
        )
    if isinstance(error, ApiError):
        details = error.errors
    else:
        details = (ErrorDetail(None, "TokenRefreshFailed", str(error)),)
    return Unauthorized(401, answer.errors + details, request_id=answer.request_id, url=answer.url)
