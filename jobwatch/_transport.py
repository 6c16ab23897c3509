"""The HTTP boundary: the only module that imports aiohttp.

It owns (or borrows) the `aiohttp.ClientSession`, sends the Authorization
header, bounds time and body size, reads the rate-limit headers, and turns
every response into a `Job` or a typed `JobwatchError`. No aiohttp exception
leaves this module.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from ._auth import Credentials, refresh_failed
from ._errors import (
    DECODE_ERRORS,
    EXCERPT_CHARS,
    ClientClosed,
    JobwatchError,
    MalformedResponse,
    TransportError,
    api_error,
)
from ._models import BodyShapeError, Job, structure_job
from ._ratelimit import RateBudget

log = logging.getLogger("jobwatch")

#: orjson's decoder when the `fast` extra is installed: a poll's decoding is the one
#: cost of jobwatch's own that shows against the HTTP round trip (benchmarks/README.md).
fast_loads: Callable[[bytes], Any] | None
try:
    from orjson import loads as fast_loads
except ImportError:  # pragma: no cover - the dev extra installs it
    fast_loads = None

#: A job is well under 4 KiB; anything past this is not a job.
MAX_BODY = 1024 * 1024
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
        rate_limit_share: float = 1.0,
    ) -> None:
        self._credentials = credentials
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._verify_ssl = verify_ssl
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self.budget = RateBudget(rate_limit_share)
        #: Answers by HTTP status, and requests that got none (connection, timeout).
        self.statuses: Counter[int] = Counter()
        self.no_answer = 0
        self.in_flight = 0
        self.closed = False

    def __repr__(self) -> str:
        owned = "owned" if self._owns_session else "borrowed"
        return f"<Transport {owned} session in_flight={self.in_flight} {self.budget!r}>"

    def _open(self) -> aiohttp.ClientSession:
        if self.closed:
            raise ClientClosed()
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
        await self._credentials.aclose()  # a token refresh still running ends first
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def fetch_job(self, url: str) -> tuple[Job, str | None]:
        """GET one job (the caller has counted it with `budget.sent`).

        Returns:
            The job, and the `X-Vcap-Request-Id` of the response.

        Raises:
            TransportError: no HTTP answer (connection, timeout, cut-off body).
            ApiError: an error status, mapped to its subclass.
            MalformedResponse: a 200 that is not a job, or too large.
        """
        headers = self._credentials.cached_headers  # the hot path: no coroutine
        if headers is None:
            headers = await self._credentials.headers()
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
                headers = await self._credentials.headers()
                status, body, meta = await self._get(url, headers)
        request_id = meta.get("X-Vcap-Request-Id")
        if status == 200:
            return _job_from(body, url), request_id
        raise api_error(
            status,
            body,
            request_id=request_id,
            url=url,
            retry_after=self.budget.server_wait(status, meta, asyncio.get_running_loop().time()),
            router_error=meta.get("X-Cf-Routererror"),
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
            self.no_answer += 1
            error = map_exception(exc, url)
        finally:
            self.in_flight -= 1
        if error is not None:
            # Raised outside the handler: aiohttp's exception keeps the request headers
            # (the token) in `request_info`, so it must not ride along as __context__.
            raise error
        self.statuses[status] += 1
        self.budget.observe(meta, now=loop.time(), others=self.in_flight)
        return status, body, meta


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
    """Decode a 200: the job asked for, or `MalformedResponse` (never a decoder's own error)."""
    try:
        data: Any = _decode(body)
    except RecursionError:
        raise _malformed("the body is JSON nested too deep to be a job", body, url) from None
    except DECODE_ERRORS:
        raise _malformed("the body is not JSON", body, url) from None
    try:
        job = structure_job(data)
    except (BodyShapeError, *DECODE_ERRORS) as exc:
        raise _malformed(str(exc), body, url) from None
    # The URL asked for ends in the guid (`jobs_prefix + guid`): an answer about
    # another job (a confused proxy or cache) must not pass for this one. Case
    # aside: a controller on MySQL finds `ABC…` and answers with its own `abc…`.
    asked = url[url.rfind("/") + 1 :]
    if job.guid != asked and job.guid.lower() != asked.lower():
        raise _malformed("the body is another job's: its guid is not the one asked for", body, url)
    return job


def _decode(body: bytes) -> Any:
    """JSON to Python, with orjson when it is installed.

    What orjson refuses goes to the stdlib, which then decides: the same value
    (a UTF-16 body, `NaN`, a lone surrogate) or the same error, as without orjson.
    The one difference left: an integer past 64 bits decodes as a float.
    """
    if fast_loads is not None:
        try:
            return fast_loads(body)
        except ValueError:
            pass
    return json.loads(body)


def _malformed(reason: str, body: bytes, url: str) -> MalformedResponse:
    excerpt = body[:EXCERPT_CHARS].decode("utf-8", "replace")
    return MalformedResponse(reason, status=200, body=excerpt, url=url)
