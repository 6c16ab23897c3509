"""Credentials: token providers, single-flight refresh, and the cf CLI login."""

from __future__ import annotations

import asyncio
import base64
import copy
import inspect
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from ._errors import (
    DECODE_ERRORS,
    ApiError,
    ClientClosed,
    ConfigError,
    JobwatchError,
    TransportError,
    Unauthorized,
    is_transient_status,
)
from ._models import ErrorDetail
from ._refs import service_url

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


class FormPoster(Protocol):
    """POSTs a form with HTTP Basic auth and returns `(status, body)`; no redirects."""

    def __call__(
        self, url: str, form: Mapping[str, str], *, user: str, password: str
    ) -> Awaitable[tuple[int, bytes]]: ...


#: A JSON Web Token, the shape of UAA access and refresh tokens.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?")
#: The UAA's error text is short; a longer one is not worth carrying around.
_MAX_DETAIL = 300


class UAATokenProvider:
    """Access tokens from the UAA's OAuth2 refresh_token grant, the way the cf CLI gets them.

    `Client.from_cf_config` builds one from the cf CLI login; build one yourself
    for a refresh token you hold. The client it is given to sends the grant to
    ``<uaa_url>/oauth/token`` through its own session (HTTP Basic auth with the
    OAuth client id and secret) when the API answers 401. New tokens are kept in
    memory only: no file is ever written.

    Args:
        uaa_url: the UAA (the cf config's ``UaaEndpoint``); https, or http to
            loopback only unless `allow_insecure_http`.
        refresh_token: the refresh token; replaced when the UAA sends a new one.
        access_token: the current access token, if any; without one the first
            request refreshes first.
        client_id: the OAuth client (the cf CLI's is ``cf``).
        client_secret: its secret (empty for ``cf``).
        allow_insecure_http: allow plain http to a UAA that is not loopback.

    Raises:
        ConfigError: the UAA URL is not usable, or plain http without the opt-in.
    """

    __slots__ = ("_access", "_client_id", "_client_secret", "_post", "_refresh_token", "token_url")

    def __init__(
        self,
        uaa_url: str,
        *,
        refresh_token: str,
        access_token: str | None = None,
        client_id: str = "cf",
        client_secret: str = "",
        allow_insecure_http: bool = False,
    ) -> None:
        if not isinstance(refresh_token, str) or not refresh_token.strip():
            raise ConfigError("a UAATokenProvider needs a refresh token: run `cf login`")
        self.token_url = uaa_token_url(uaa_url, allow_insecure_http=allow_insecure_http)
        self._refresh_token = refresh_token.strip()
        self._access = access_token.strip() if access_token and access_token.strip() else None
        self._client_id = client_id
        self._client_secret = client_secret
        self._post: FormPoster | None = None

    def __repr__(self) -> str:
        return f"<UAATokenProvider {self.token_url} client={self._client_id!r}>"

    def _attach(self, post: FormPoster) -> None:
        """Send the grant through this poster (the transport of the client using us)."""
        self._post = post

    async def __call__(self) -> str:
        """The Authorization header value, refreshing first when there is no token yet."""
        if self._access is None:
            await self.refresh()
        assert self._access is not None
        return bearer(self._access)

    async def refresh(self) -> None:
        """Get a new access token (and refresh token, if the UAA rotates it).

        Raises:
            Unauthorized: the UAA refused the grant; carries its `error` and
                `error_description`, never a token.
            TransportError: the UAA did not answer, or answered 429/5xx.
        """
        if self._post is None:
            raise RuntimeError("give this UAATokenProvider to a Client (token=...) before use")
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        status, body = await self._post(
            self.token_url, form, user=self._client_id, password=self._client_secret
        )
        data = _json_object(body)
        if status == 200:
            access = data.get("access_token")
            if not isinstance(access, str) or not access.strip():
                raise Unauthorized(
                    status,
                    (ErrorDetail(None, "UAA", "the token endpoint answered without a token"),),
                    url=self.token_url,
                )
            self._access = access.strip()
            rotated = data.get("refresh_token")
            if isinstance(rotated, str) and rotated.strip():
                self._refresh_token = rotated.strip()
            log.info("got a new access token from the UAA at %s", self.token_url)
            return
        if is_transient_status(status):
            raise TransportError(
                f"the UAA answered {status} to the token refresh", url=self.token_url
            )
        error = data.get("error")
        description = data.get("error_description")
        title = f"UAA-{error}" if isinstance(error, str) and error else "UAA"
        if isinstance(description, str) and description:
            detail = f"token refresh refused: {self._redact(description)}"
        else:
            detail = f"token refresh refused with status {status}"
        raise Unauthorized(
            status, (ErrorDetail(None, self._redact(title), detail),), url=self.token_url
        )

    def _redact(self, text: str) -> str:
        # The UAA has been known to echo the refresh token in its error text.
        for secret in (self._refresh_token, self._client_secret, self._access):
            if secret and len(secret) >= 8:  # shorter ones would garble ordinary words
                text = text.replace(secret, "***")
                text = text.replace(secret.split()[-1], "***")
        text = _JWT.sub("***", text)
        return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def uaa_token_url(uaa_url: str, *, allow_insecure_http: bool = False) -> str:
    """`<uaa_url>/oauth/token`, held to the same rule as the API: https, or loopback.

    Raises:
        ConfigError: not an absolute http(s) URL without user info, query or
            fragment, or plain http to a host that is not loopback.
    """
    parts = service_url(uaa_url, "UAA", "refresh token", allow_insecure_http=allow_insecure_http)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/oauth/token"


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except DECODE_ERRORS:  # a hostile UAA's deep nesting too: no details, not a crash
        return {}
    return data if isinstance(data, dict) else {}


@attrs.frozen
class CFConfig:
    """What jobwatch reads from the cf CLI's `config.json`."""

    target: str
    access_token: str = attrs.field(repr=False)
    refresh_token: str = attrs.field(default="", repr=False)
    uaa_endpoint: str = ""
    client_id: str = "cf"
    client_secret: str = attrs.field(default="", repr=False)
    ssl_disabled: bool = False


def cf_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The cf CLI config file: `path`, else `$CF_HOME/.cf/config.json`, else `~/.cf/...`."""
    if path is not None:
        return Path(path)
    home = os.environ.get("CF_HOME") or str(Path.home())
    return Path(home) / ".cf" / "config.json"


def read_cf_config(path: str | os.PathLike[str] | None = None) -> CFConfig:
    """Read the cf CLI login.

    Raises:
        ConfigError: the file is missing, unreadable, or has no target or token.
    """
    file = cf_config_path(path)
    try:
        data: Any = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no cf CLI login found ({file} does not exist): run `cf login` first"
        ) from None
    except (OSError, *DECODE_ERRORS) as exc:
        reason = "nested too deep" if isinstance(exc, RecursionError) else exc
        raise ConfigError(
            f"cannot read the cf CLI config {file}: {reason}; run `cf login`"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"the cf CLI config {file} is not a JSON object; run `cf login`")
    target = _text(data, "Target")
    if not target:
        raise ConfigError(f"the cf CLI config {file} has no API target: run `cf api URL`")
    token = _text(data, "AccessToken")
    if not token:
        raise ConfigError(f"the cf CLI config {file} has no access token: run `cf login`")
    return CFConfig(
        target=target,
        access_token=token,
        refresh_token=_text(data, "RefreshToken"),
        uaa_endpoint=_text(data, "UaaEndpoint") or _text(data, "AuthorizationEndpoint"),
        client_id=_text(data, "UAAOAuthClient") or "cf",
        client_secret=_text(data, "UAAOAuthClientSecret"),
        ssl_disabled=data.get("SSLDisabled") is True,
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""
