"""Job references: a guid or a job URL, checked before any request is made."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import attrs

from ._errors import ConfigError, InvalidJobReference

_GUID = re.compile(r"[A-Za-z0-9._-]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host.lower(), port or _DEFAULT_PORTS[scheme]


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses, where plain http is harmless."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen
class ApiBase:
    """The API a client talks to: its origin, and the prefix of every job URL."""

    url: str
    origin: tuple[str, str, int]
    jobs_prefix: str

    @classmethod
    def parse(cls, api_url: str, *, allow_insecure_http: bool = False) -> ApiBase:
        """Validate the API URL.

        Raises:
            ConfigError: not an absolute http(s) URL, or plain http to a host that
                is not loopback without `allow_insecure_http` (the token would
                travel in clear text).
        """
        if not isinstance(api_url, str):
            raise ConfigError(f"the API URL must be a string, not {type(api_url).__name__}")
        parts = urlsplit(api_url.strip())
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"the API URL {api_url!r} has an invalid port") from None
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(f"the API URL must be absolute http(s), not {api_url!r}")
        if parts.query or parts.fragment:
            raise ConfigError(f"the API URL must not have a query or fragment: {api_url!r}")
        if parts.username or parts.password:
            # It would ride along in every URL, message and repr.
            raise ConfigError("the API URL must not carry user info; give a token instead")
        if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
            raise ConfigError(
                f"refusing plain http to {parts.hostname}: the token would travel in clear "
                "text; use https, or pass allow_insecure_http=True if you really mean it"
            )
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        return cls(base, _origin(parts.scheme, parts.hostname, port), f"{base}/v3/jobs/")

    def resolve(self, job: str) -> tuple[str, str]:
        """Turn a guid or a job URL into `(guid, url)`.

        Raises:
            InvalidJobReference: a bad guid, a URL on another origin (the token
                must never go to another host), or a URL that is not a job's.
        """
        if not isinstance(job, str):
            raise InvalidJobReference(repr(job), "a job is a guid or a job URL string")
        if "://" in job:
            return self._resolve_url(job)
        check_guid(job)
        return job, self.jobs_prefix + job

    def _resolve_url(self, url: str) -> tuple[str, str]:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise InvalidJobReference(url, "the URL has an invalid port") from None
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise InvalidJobReference(url, "only http(s) job URLs are accepted")
        if _origin(parts.scheme, parts.hostname, port) != self.origin:
            raise InvalidJobReference(
                url, "the URL is not on the client's API origin; the token is never sent there"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise InvalidJobReference(url, "a job URL has no query, fragment or user info")
        prefix = urlsplit(self.jobs_prefix).path
        if not parts.path.startswith(prefix):
            raise InvalidJobReference(url, f"not a job URL (expected a path {prefix}<guid>)")
        guid = parts.path[len(prefix) :]
        check_guid(guid, url)
        return guid, self.jobs_prefix + guid


def check_guid(guid: str, reference: str | None = None) -> None:
    """Refuse anything but letters, digits, `-`, `_` and `.` (and not `.` or `..`)."""
    if not guid:
        raise InvalidJobReference(reference or guid, "the guid is empty")
    if guid in {".", ".."} or not _GUID.fullmatch(guid):
        raise InvalidJobReference(
            reference or guid, "a guid has only letters, digits, '-', '_' and '.'"
        )
