"""Job references: a guid, a job URL or a 202 response, checked before any request is made."""

from __future__ import annotations

import ipaddress
import re
import reprlib
from collections.abc import Mapping
from typing import Protocol, TypeAlias
from urllib.parse import SplitResult, urlsplit

import attrs

from ._errors import ConfigError, InvalidJobReference, _short
from ._ratelimit import parse_http_date

_GUID = re.compile(r"[A-Za-z0-9._-]+")
#: The Cloud Controller's guids are 36; longer than this is no job's, and is not
#: sent (with the token) to the API.
MAX_GUID_CHARS = 255
_DEFAULT_PORTS = {"http": 80, "https": 443}


class AcceptedResponse(Protocol):
    """The `202 Accepted` response that created a job: anything with `headers` holding `Location`.

    An aiohttp `ClientResponse`, an httpx or requests `Response`, or any object
    with a `headers` mapping, duck-typed (jobwatch imports none of them). Its
    `Date`, when there is one, dates the job on the server's clock.
    """

    @property
    def headers(self) -> Mapping[str, str]:
        """The response's headers; looked up case-insensitively."""
        ...


#: What every call taking a `job` accepts: a guid, a job URL, or the 202 response
#: that created the job (then known to be fresh: its first GET waits a first interval).
JobRef: TypeAlias = "str | AcceptedResponse"


@attrs.frozen
class Accepted:
    """A job handed over as its 202 response: fresh, created about `date` on the server clock.

    `date` is the response's `Date` as an epoch (whole seconds of the server's
    clock), or None when it had none: then the response counts as just received.
    """

    date: float | None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """`headers[name]`, looked up case-insensitively even in a plain dict."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        for key, item in headers.items():
            if isinstance(key, str) and key.lower() == wanted:
                return item if isinstance(item, str) else None
    return value if isinstance(value, str) else None


def accepted_location(response: object) -> tuple[str, Accepted]:
    """The `Location` of a 202 response, and what its `Date` says of the job's age.

    Raises:
        InvalidJobReference: not an object with a `headers` mapping, or one
            without a `Location` string.
    """
    name = type(response).__name__
    headers = getattr(response, "headers", None)
    if not isinstance(headers, Mapping):
        # Not the repr of an object with headers of some other kind: they may hold cookies.
        shown = reprlib.repr(response) if headers is None else f"<{name}>"
        raise InvalidJobReference(
            shown,
            "a job is a guid, a job URL, or the 202 response that created it "
            "(an object with a headers mapping holding Location)",
        )
    location = _header(headers, "Location")
    if not location:
        status = getattr(response, "status", getattr(response, "status_code", None))
        answered = f" (status {status})" if isinstance(status, int) else ""
        raise InvalidJobReference(
            f"<{name} response>",
            f"the response{answered} has no Location header: no job to wait on",
        )
    return location, Accepted(parse_http_date(_header(headers, "Date")))


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


def service_url(
    url: object, what: str, secret: str, *, allow_insecure_http: bool = False
) -> SplitResult:
    """Check the URL of a service jobwatch sends a credential to (the API, the UAA).

    The one rule for both: an absolute http(s) URL with a valid port, no user
    info (it would ride along in every URL, message and repr), no query or
    fragment, and plain http only to loopback unless `allow_insecure_http`.

    Raises:
        ConfigError: naming `what` ("API", "UAA") and the `secret` that would leak.
    """
    if not isinstance(url, str):
        raise ConfigError(f"the {what} URL must be a string, not {type(url).__name__}")
    shown = repr(_short(url))
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 - validates it
    except ValueError:
        raise ConfigError(f"the {what} URL {shown} has an invalid port") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"the {what} URL must be absolute http(s), not {shown}")
    if parts.query or parts.fragment:
        raise ConfigError(f"the {what} URL must not have a query or fragment: {shown}")
    if parts.username or parts.password:
        raise ConfigError(f"the {what} URL must not carry user info; give a token instead")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        to = parts.hostname if what == "API" else f"the {what} at {parts.hostname}"
        raise ConfigError(
            f"refusing plain http to {to}: the {secret} would travel in clear text; use "
            "https, or pass allow_insecure_http=True if you really mean it"
        )
    return parts


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
            ConfigError: not an absolute http(s) URL, a URL with a path (such as
                `/v3`) or port 0, or plain http to a host that is not loopback
                without `allow_insecure_http` (the token would travel in clear text).
        """
        parts = service_url(api_url, "API", "token", allow_insecure_http=allow_insecure_http)
        shown = repr(_short(api_url))
        port = parts.port
        root = f"{parts.scheme}://{parts.netloc}"
        if port == 0:
            bare = f"{parts.scheme}://{parts.netloc.rpartition(':')[0]}"
            raise ConfigError(
                f"the API URL {shown} has port 0, which no server listens on; "
                f"give {_short(bare)} (or the API's real port) instead"
            )
        if parts.path not in ("", "/"):
            # `/v3` would make every job URL `/v3/v3/jobs/...`: a 404 for every job.
            raise ConfigError(
                f"the API URL is the API's root, without a path: give {_short(root)} "
                f"instead of {shown} (jobwatch adds /v3/jobs/ itself)"
            )
        assert parts.hostname is not None  # checked by service_url
        return cls(root, _origin(parts.scheme, parts.hostname, port), f"{root}/v3/jobs/")

    def resolve(self, job: str) -> tuple[str, str]:
        """Turn a guid or a job URL into `(guid, url)`.

        Raises:
            InvalidJobReference: a bad guid, a URL on another origin (the token
                must never go to another host), or a URL that is not a job's.
        """
        if not isinstance(job, str):
            raise InvalidJobReference(
                reprlib.repr(job),
                "a job is a guid, a job URL, or the 202 response that created it",
            )
        if "://" in job:
            return self._resolve_url(job)
        check_guid(job)
        return job, self.jobs_prefix + job

    def resolve_ref(self, job: JobRef) -> tuple[str, Accepted | None]:
        """The guid of a guid, a job URL or a 202 response; with an `Accepted` for a response.

        A response's `Location` is checked exactly as a URL string is.

        Raises:
            InvalidJobReference: as `resolve`, or a response without `Location`.
        """
        if isinstance(job, str):
            if "://" in job:
                return self._resolve_url(job)[0], None
            check_guid(job)  # the common case: no URL built only to be dropped
            return job, None
        location, accepted = accepted_location(job)
        if location.startswith("/") and not location.startswith("//"):
            location = self.url + location  # a relative Location names the same origin
        return self._resolve_url(location)[0], accepted

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
    """Refuse anything but 1 to 255 letters, digits, `-`, `_` and `.` (and not `.` or `..`)."""
    if not guid:
        raise InvalidJobReference(reference or guid, "the guid is empty")
    if len(guid) > MAX_GUID_CHARS:
        raise InvalidJobReference(
            reference or guid,
            f"a guid has at most {MAX_GUID_CHARS} characters, this one {len(guid)}",
        )
    if guid in {".", ".."} or not _GUID.fullmatch(guid):
        raise InvalidJobReference(
            reference or guid, "a guid has only letters, digits, '-', '_' and '.'"
        )
