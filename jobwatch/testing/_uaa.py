"""The fake UAA's token endpoint (`POST /oauth/token`): its checks and its answers.

Only the refresh-token grant is faked; the client authenticates with HTTP
Basic or with `client_id`/`client_secret` in the form. The server counts the
calls and mints the token; this module says whether a grant is good and
writes the UAA's answer.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Mapping

from ._responses import _dumps


def _grant(
    form: Mapping[str, object],
    basic: str,
    client: tuple[str, str],
    refresh_token: str,
    minted: str,
) -> tuple[int, bytes]:
    """The UAA's status and JSON for a grant: `minted` as the access token if it is good."""
    refused = _grant_error(form, basic, client, refresh_token)
    if refused is None:
        return 200, _token_body(minted, refresh_token)
    status, error, description = refused
    return status, _error_body(error, description)


def _grant_error(
    form: Mapping[str, object], basic: str, client: tuple[str, str], refresh_token: str
) -> tuple[int, str, str] | None:
    """The UAA's `(status, error, error_description)` for a bad grant, or None for a good one.

    `form` is the request's form, `basic` its Authorization header ("" without one).
    """
    client_id, client_secret = form.get("client_id"), form.get("client_secret", "")
    if basic[:6].lower() == "basic ":
        with contextlib.suppress(ValueError):
            decoded = base64.b64decode(basic[6:], validate=True).decode()
            client_id, _, client_secret = decoded.partition(":")
    if (client_id, client_secret) != client:
        return 401, "unauthorized", "Bad credentials"
    if form.get("grant_type") != "refresh_token":
        return 400, "unsupported_grant_type", "Only refresh_token is faked"
    if form.get("refresh_token") != refresh_token:
        return 401, "invalid_token", "Invalid refresh token (expired): refresh token is unknown"
    return None


def _token_body(access_token: str, refresh_token: str) -> bytes:
    """The UAA's answer to a good grant."""
    return _dumps(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "refresh_token": refresh_token,
            "expires_in": 600,
            "scope": "cloud_controller.read cloud_controller.write openid",
            "jti": uuid.uuid4().hex,
        }
    )


def _error_body(error: str, description: str) -> bytes:
    """The UAA's OAuth error object."""
    return _dumps({"error": error, "error_description": description})
