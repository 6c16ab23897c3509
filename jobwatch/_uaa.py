"""The UAA's refresh_token grant, the way the cf CLI gets new access tokens."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from ._auth import bearer
from ._errors import DECODE_ERRORS, ConfigError, TransportError, Unauthorized, is_transient_status
from ._models import ErrorDetail
from ._refs import service_url

log = logging.getLogger("jobwatch")


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
