"""The HTTP boundary: the only module that imports aiohttp.

It owns (or borrows) the `aiohttp.ClientSession`, sends the Authorization
header, bounds time and body size, reads the rate-limit headers, and turns
every response into a `Job` or a typed `JobwatchError`. No aiohttp exception
leaves this module.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import math
import ssl
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp

from ._auth import Credentials, refresh_failed
from ._errors import JobwatchError, MalformedResponse, TransportError, api_error
from ._models import BodyShapeError, Job, structure_job
from ._ratelimit import RateBudget

log = logging.getLogger("jobwatch")

#: A job is well under 4 KiB; anything past this is not a job.
MAX_BODY = 1024 * 1024
#: The longest a server may make us wait (Retry-After, X-RateLimit-Reset): the
#: Cloud Controller's rate-limit window is an hour.
MAX_SERVER_WAIT = 3600.0
#: Error bodies only feed a message excerpt: keep a little, drop the rest.
MAX_ERROR_BODY = 64 * 1024

_USER_AGENT = "jobwatch (+https://github.com/jobwatch/jobwatch)"

#: aiohttp failures that no retry can cure.
_PERMANENT = (
    aiohttp.ClientConnectorCertificateError,
    aiohttp.ServerFingerprintMismatch,
    aiohttp.InvalidURL,
    aiohttp.ClientSSLError,
)


def map_exception(exc: BaseException, url: str) -> TransportError:
    """Translate an aiohttp or asyncio failure into a `TransportError`."""
    if isinstance(exc, asyncio.TimeoutError):
        return TransportError("timed out waiting for the API", url=url)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError("the response body was cut off", url=url)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError("the server closed the connection", url=url)
    permanent = isinstance(exc, _PERMANENT)
    # The text of aiohttp errors names the host and port, never a header.
    detail = str(exc) or type(exc).__name__
    return TransportError(f"{type(exc).__name__}: {detail}", url=url, transient=not permanent)


class Transport:
    """Sends `GET /v3/jobs/{guid}` and returns a `Job` or raises a typed error."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = 32,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        verify_ssl: bool = True,
    ) -> None:
        self._credentials = credentials
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._verify_ssl = verify_ssl
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._headers: dict[str, str] = {}
        self._header_value: str | None = None
        self.budget = RateBudget()
        self.statuses: Counter[int | str] = Counter()
        self.in_flight = 0
        self.closed = False

    def __repr__(self) -> str:
        owned = "owned" if self._owns_session else "borrowed"
        return f"<Transport {owned} session in_flight={self.in_flight} {self.budget!r}>"

    def _open(self) -> aiohttp.ClientSession:
        if self.closed:
            raise RuntimeError("this jobwatch client is closed")
        if self._session is None:
            ssl_arg: ssl.SSLContext | bool = bool(self._verify_ssl)
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=ssl_arg)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
            )
        return self._session

    async def close(self) -> None:
        """Close the session if this transport made it; a borrowed one stays open."""
        self.closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def _auth_headers(self) -> dict[str, str]:
        value = await self._credentials.header()
        if value != self._header_value:
            self._header_value = value
            self._headers = {"Authorization": value} if value else {}
        return self._headers

    async def fetch_job(self, url: str) -> tuple[Job, str | None]:
        """GET one job (the caller has counted it with `budget.sent`).

        Returns:
            The job, and the `X-Vcap-Request-Id` of the response.

        Raises:
            TransportError: no HTTP answer (connection, timeout, cut-off body).
            ApiError: an error status, mapped to its subclass.
            MalformedResponse: a 200 that is not a job, or too large.
        """
        if self._header_value is not None and self._credentials.cached == self._header_value:
            headers = self._headers  # the hot path: no coroutine to ask for it
        else:
            headers = await self._auth_headers()
        status, body, meta = await self._get(url, headers)
        if status == 401 and self._credentials.can_refresh:
            rejected = headers.get("Authorization")
            try:
                refreshed = await self._credentials.refresh(rejected)
            except JobwatchError as exc:
                answer = api_error(status, body, request_id=meta.get("X-Vcap-Request-Id"), url=url)
                raise refresh_failed(exc, answer) from exc
            if refreshed:
                log.info("the API answered 401; retrying once with a refreshed token")
                self.budget.sent(asyncio.get_running_loop().time())
                headers = await self._auth_headers()
                status, body, meta = await self._get(url, headers)
        request_id = meta.get("X-Vcap-Request-Id")
        if status == 200:
            return _job_from(body, url), request_id
        raise api_error(
            status,
            body,
            request_id=request_id,
            url=url,
            retry_after=self._server_wait(status, meta),
        )

    async def post_form(
        self, url: str, form: Mapping[str, str], *, user: str, password: str
    ) -> tuple[int, bytes]:
        """POST a form with HTTP Basic auth (the UAA's token grant) through this session.

        Redirects are not followed, and the answer is not counted in the API's
        statistics or rate-limit budget: the UAA is another service.
        """
        session = self._open()
        # RFC 7617 by hand: aiohttp 3.14 deprecates BasicAuth, 3.13 lacks its successor.
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        try:
            async with session.post(
                url,
                data=dict(form),
                headers={"Authorization": f"Basic {basic}"},
                allow_redirects=False,
                timeout=self._timeout,
            ) as resp:
                return resp.status, await _read_bounded(resp, MAX_ERROR_BODY, url)
        except (TimeoutError, aiohttp.ClientError) as exc:
            error = map_exception(exc, url)
        # Raised outside the handler: aiohttp's exception, which may hold the request's
        # headers (the Basic credentials), must not ride along as __context__.
        raise error

    async def _get(
        self, url: str, headers: Mapping[str, str]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        session = self._open()
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        error: TransportError | None = None
        try:
            async with session.get(
                url, headers=headers, allow_redirects=False, timeout=self._timeout
            ) as resp:
                status = resp.status
                limit = MAX_BODY if status == 200 else MAX_ERROR_BODY
                body = await _read_bounded(resp, limit, url)
                meta = resp.headers
        except MalformedResponse:
            self.statuses[status] += 1  # answered, if too large to read: count it all the same
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.statuses["error"] += 1
            error = map_exception(exc, url)
        finally:
            self.in_flight -= 1
        if error is not None:
            # Raised outside the handler: aiohttp's exception keeps the request headers
            # (the token) in `request_info`, so it must not ride along as __context__.
            raise error
        self.statuses[status] += 1
        self.budget.observe(
            meta.get("X-RateLimit-Limit"),
            meta.get("X-RateLimit-Remaining"),
            meta.get("X-RateLimit-Reset"),
            now=loop.time(),
            others=self.in_flight,
        )
        return status, body, meta

    def _server_wait(self, status: int, meta: Mapping[str, str]) -> float | None:
        """Seconds the server asked us to wait (429, 503); a 429 pauses the whole client."""
        if status not in (429, 503):
            return None
        wait = parse_retry_after(meta.get("Retry-After"))
        if wait is None and status == 429:
            reset = meta.get("X-RateLimit-Reset")
            try:
                wait = _bounded_wait(float(reset) - time.time()) if reset else None
            except ValueError:
                wait = None
        if status == 429:
            now = asyncio.get_running_loop().time()
            self.budget.pause(now + (wait if wait is not None else 1.0), now)
        return wait


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    length = resp.content_length
    if length is not None and length > limit:
        if resp.status == 200:
            raise MalformedResponse(
                f"the body is {length} bytes, more than the {limit} a job can be",
                status=resp.status,
                url=url,
            )
        return b""
    if length is not None and "Content-Encoding" not in resp.headers:
        # The framing bounds what read() returns: one call, no chunk loop. A
        # compressed body could inflate past its length, so it takes the loop.
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    while chunk := await resp.content.readany():
        size += len(chunk)
        if size > limit:
            if resp.status == 200:
                raise MalformedResponse(
                    f"the body is more than the {limit} bytes a job can be",
                    status=resp.status,
                    url=url,
                )
            chunks.append(chunk[: len(chunk) - (size - limit)])
            break
        chunks.append(chunk)
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _job_from(body: bytes, url: str) -> Job:
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise MalformedResponse(
            "the body is not JSON", status=200, body=body[:200].decode("utf-8", "replace"), url=url
        ) from None
    try:
        return structure_job(data)
    except BodyShapeError as exc:
        excerpt = body[:200].decode("utf-8", "replace")
        raise MalformedResponse(str(exc), status=200, body=excerpt, url=url) from None


def parse_retry_after(value: str | None) -> float | None:
    """Read `Retry-After` as seconds or as an HTTP date; None when absent or unreadable.

    Capped at `MAX_SERVER_WAIT`: a broken or hostile server must not pause a
    client for ever.
    """
    if not value:
        return None
    try:
        return _bounded_wait(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return _bounded_wait(when.timestamp() - time.time())


def _bounded_wait(seconds: float) -> float | None:
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_SERVER_WAIT)
