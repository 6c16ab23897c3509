"""The cf CLI's login: what jobwatch reads from its `config.json`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

from ._errors import DECODE_ERRORS, ConfigError


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
