"""Credentials: token providers, single-flight refresh, and the cf CLI login."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from ._errors import ConfigError

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


class Credentials:
    """Hands out the Authorization header and refreshes it once for many waiters.

    A 401 seen by a thousand concurrent requests causes one refresh: the first
    caller refreshes, the others find the header already changed and retry.
    """

    __slots__ = ("_header", "_lock", "_provider")

    def __init__(self, token: Token | None) -> None:
        self._provider: Callable[[], TokenValue] | None = None
        self._header: str | None = None
        self._lock = asyncio.Lock()
        if isinstance(token, str):
            self._header = bearer(token)
        elif token is not None:
            if not callable(token):
                raise TypeError("token must be a string or a callable returning one")
            self._provider = token

    def __repr__(self) -> str:
        kind = "none" if self._provider is None and self._header is None else "set"
        return f"<Credentials {kind}>"

    @property
    def can_refresh(self) -> bool:
        """True when a 401 may be cured by asking the provider again."""
        return self._provider is not None

    async def header(self) -> str | None:
        """The current header value (cached until a refresh)."""
        if self._header is None and self._provider is not None:
            self._header = await self._ask(self._provider)
        return self._header

    async def refresh(self, rejected: str | None) -> bool:
        """Get a new header after `rejected` got a 401; True if there is a new one."""
        if self._provider is None:
            return False
        async with self._lock:
            if self._header != rejected:  # someone refreshed while we waited
                return self._header is not None
            refresh = getattr(self._provider, "refresh", None)
            if callable(refresh):
                result = refresh()
                if inspect.isawaitable(result):
                    await result
            self._header = await self._ask(self._provider)
            return self._header != rejected

    @staticmethod
    async def _ask(provider: Callable[[], TokenValue]) -> str:
        value = provider()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("the token provider returned no token")
        return bearer(value)


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
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the cf CLI config {file}: {exc}; run `cf login`") from None
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
