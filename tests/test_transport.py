"""The HTTP boundary: every aiohttp failure mapped, bodies bounded, headers read."""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

import jobwatch
from jobwatch._transport import map_exception

API = "https://api.example.org"
URL = f"{API}/v3/jobs/abc"
TWO_ATTEMPTS = jobwatch.RetryPolicy(attempts=2)

# Test mode: the retries sleep through no backoff.
pytestmark = pytest.mark.usefixtures("testing_mode")


def _aiohttp_errors() -> Iterator[type[BaseException]]:
    seen = set()
    for name in dir(aiohttp):
        cls = getattr(aiohttp, name)
        if isinstance(cls, type) and issubclass(cls, aiohttp.ClientError) and cls not in seen:
            seen.add(cls)
            yield cls


def _instance(cls: type[BaseException]) -> BaseException:
    """Build an instance of any aiohttp error, whatever its constructor wants."""
    key: Any = aiohttp.client_reqrep.ConnectionKey(
        "api.example.org", 443, True, True, None, None, None
    )
    info = aiohttp.RequestInfo(
        aiohttp.client_reqrep.URL(URL), "GET", {}, aiohttp.client_reqrep.URL(URL)
    )  # type: ignore[arg-type]
    attempts: list[tuple[Any, ...]] = [
        (),
        ("boom",),
        (key, OSError(104, "reset")),
        (key, ssl.SSLCertVerificationError("bad cert")),
        (info, ()),
        (URL,),
        (b"expected", b"got", "host", 443),
    ]
    for args in attempts:
        try:
            exc = cls(*args)
            str(exc)
            return exc
        except Exception:
            continue
    raise AssertionError(f"cannot build {cls.__name__}")


ERRORS = sorted(_aiohttp_errors(), key=lambda cls: cls.__name__)


def test_the_enumeration_finds_the_aiohttp_error_tree() -> None:
    """The list below is aiohttp's own, not a hand-picked subset."""
    names = {cls.__name__ for cls in ERRORS}
    assert {"ClientConnectorError", "ServerDisconnectedError", "ClientPayloadError"} <= names
    assert len(ERRORS) >= 20


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
async def test_every_aiohttp_error_becomes_a_transport_error(
    cls: type[BaseException], mocked_http: aioresponses
) -> None:
    """No aiohttp exception reaches the caller: each is a TransportError."""
    exc = _instance(cls)
    mocked_http.get(URL, exception=exc, repeat=True)
    async with jobwatch.Client(API, token="t", retry=TWO_ATTEMPTS) as cf:
        with pytest.raises(jobwatch.TransportError) as caught:
            await cf.get_job("abc", timeout=5)
    assert not isinstance(caught.value, aiohttp.ClientError)
    assert isinstance(map_exception(exc, URL), jobwatch.TransportError)


async def test_timeouts_are_transport_errors(mocked_http: aioresponses) -> None:
    """An asyncio timeout inside aiohttp is retried, then a TransportError."""
    mocked_http.get(URL, exception=TimeoutError(), repeat=True)
    async with jobwatch.Client(API, retry=TWO_ATTEMPTS) as cf:
        with pytest.raises(jobwatch.TransportError, match="timed out") as caught:
            await cf.get_job("abc")
    assert caught.value.attempts == 2
    assert len(mocked_http.requests[("GET", aiohttp.client_reqrep.URL(URL))]) == 2


async def test_certificate_errors_are_not_retried(mocked_http: aioresponses) -> None:
    """A bad certificate will not heal in a second: raised after one attempt."""
    exc = _instance(aiohttp.ClientConnectorCertificateError)
    mocked_http.get(URL, exception=exc, repeat=True)
    async with jobwatch.Client(API, retry=jobwatch.RetryPolicy(attempts=5)) as cf:
        with pytest.raises(jobwatch.TransportError) as caught:
            await cf.get_job("abc")
    assert not caught.value.transient
    assert len(mocked_http.requests[("GET", aiohttp.client_reqrep.URL(URL))]) == 1


async def test_stray_cancelled_error_below_is_a_failed_attempt(mocked_http: aioresponses) -> None:
    """A CancelledError nobody asked for (a library bug below) never hangs the waiter."""
    mocked_http.get(URL, exception=asyncio.CancelledError())
    mocked_http.get(URL, payload={"guid": "abc", "state": "COMPLETE"})
    async with jobwatch.Client(API, retry=TWO_ATTEMPTS) as cf:
        job = await cf.get_job("abc", timeout=5)
    assert job.state == "COMPLETE"


async def test_session_passed_in_is_used_and_left_open(mocked_http: aioresponses) -> None:
    """A borrowed session carries the requests and is never closed by jobwatch."""
    mocked_http.get(URL, payload={"guid": "abc", "state": "COMPLETE"})
    async with aiohttp.ClientSession() as session:
        async with jobwatch.Client(API, token="tok", session=session) as cf:
            job = await cf.get_job("abc")
        assert job.state == "COMPLETE"
        assert not session.closed
    call = mocked_http.requests[("GET", aiohttp.client_reqrep.URL(URL))][0]
    assert call.kwargs["headers"]["Authorization"] == "bearer tok"
    assert call.kwargs["allow_redirects"] is False


def test_shim_is_only_applied_when_needed() -> None:
    """The aioresponses shim targets aiohttp's `stream_writer` argument only."""
    params = inspect.signature(aiohttp.ClientResponse.__init__).parameters
    assert ("stream_writer" in params) == (aiohttp.__version__ >= "3.14")
