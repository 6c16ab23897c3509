"""Faults and outages: what goes wrong, how often, and how it is served.

`Fault` is one misbehaviour served instead of a job, `Outage` what the API
looks like while part of the platform is down. A fault table turns the
probabilities of `faults=` into cumulative ones for a single random draw.
The serving functions write a body the way a broken network or controller
does (a reset, a cut-off or dripping body, a huge one); the controller picks
the fault and hands them the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from ._responses import _JSON, FakeResponse

__all__ = ["Fault", "Outage"]


class Fault(enum.Enum):
    """A misbehaviour of the network or the controller, served instead of a job."""

    RESET = "reset"  #: connection reset (RST) before any response byte
    RESET_MID_BODY = "reset_mid_body"  #: headers and half the body, then RST
    SHORT_BODY = "short_body"  #: half the body under a full Content-Length, then a clean close
    STALL = "stall"  #: no answer for `stall_seconds`, then the connection is dropped
    INVALID_JSON = "invalid_json"  #: 200 with `{"guid":`
    WRONG_SHAPE = "wrong_shape"  #: 200 with valid JSON that is not a job (`[1,2]`)
    HUGE_BODY = "huge_body"  #: 200 with a streamed 50 MiB JSON body
    DRIP = "drip"  #: 200 with the job body sent one byte every `drip_interval`
    SERVER_ERROR = "server_error"  #: 500 CF-ServerError envelope
    ROUTER_502 = "router_502"  #: gorouter's plain-text 502
    ROUTER_404 = "router_404"  #: gorouter's plain-text 404 for an unknown route
    ROUTER_503 = "router_503"  #: gorouter's plain-text 503, no endpoints registered
    MAINTENANCE_503 = "maintenance_503"  #: nginx's maintenance page during backups
    RATE_LIMITED_429 = "rate_limited_429"  #: 429 with Retry-After: 1


class Outage(enum.Enum):
    """What the API looks like from outside while part of the platform is down.

    Scheduled by time with `FakeCloudController.schedule_outage` / `schedule_deploy`.
    """

    ROUTER_404 = "router_404"  #: gorouter, API VMs gone: 404 `unknown_route`, text/plain
    ROUTER_502 = "router_502"  #: gorouter, the VM failed the request: 502 `endpoint_failure`
    ROUTER_503 = "router_503"  #: gorouter, route known but empty: 503 `no_endpoints`
    MAINTENANCE_503 = "maintenance_503"  #: nginx during backup/restore: 503 HTML page
    DB_503 = "db_503"  #: the controller without its database: 503 `CF-ServiceUnavailable`
    UAA_502 = "uaa_502"  #: the controller without the UAA: 502 `CF-UaaUnavailable`
    RESET = "reset"  #: every connection reset before any byte
    REFUSED = "refused"  #: nothing listens: connections are refused


#: The faults that are plain answers (`start()` puts the fake's own routes in the router's).
_FAULT_RESPONSES: dict[Fault, FakeResponse] = {
    Fault.INVALID_JSON: FakeResponse(200, '{"guid":', _JSON),
    Fault.WRONG_SHAPE: FakeResponse(200, [1, 2], _JSON),
    Fault.SERVER_ERROR: FakeResponse.error(500),
    Fault.ROUTER_502: FakeResponse.router_502(),
    Fault.ROUTER_404: FakeResponse.router_404(),
    Fault.ROUTER_503: FakeResponse.router_503(),
    Fault.MAINTENANCE_503: FakeResponse.maintenance_503(),
    Fault.RATE_LIMITED_429: FakeResponse.rate_limited(1),
}

_HUGE_CHUNK = b"x" * 65536

FaultTable = tuple[tuple[float, Fault], ...]


def _fault_table(base: FaultTable, faults: Mapping[Fault, float] | None) -> FaultTable:
    """Cumulative probabilities, so one random draw picks at most one fault."""
    table = list(base)
    total = table[-1][0] if table else 0.0
    for fault, probability in (faults or {}).items():
        if not isinstance(fault, Fault) or not 0.0 <= probability <= 1.0:
            raise ValueError(f"bad fault probability {fault!r}: {probability!r}")
        if probability:
            total += probability
            table.append((total, fault))
    if total > 1.0 + 1e-9:
        raise ValueError("fault probabilities add up to more than 1")
    return tuple(table)


class _Server(Protocol):
    """What serving a fault needs of the server (`FakeCloudController`), read as it goes."""

    drip_interval: float
    huge_body_size: int
    _closing: bool

    def _headers(self, content_type: str) -> dict[str, str]: ...

    async def _sleep(self, seconds: float) -> bool: ...


async def _serve_cut(
    server: _Server, request: web.BaseRequest, fault: Fault, status: int, body: bytes
) -> web.StreamResponse:
    """`body` under a Content-Length for all of it, as `fault` mangles it.

    `Fault.DRIP`: one byte every `drip_interval`; `SHORT_BODY`: half of it,
    then a clean close; `RESET_MID_BODY`: half of it, then a RST.
    """
    response = web.StreamResponse(status=status, headers=server._headers(_JSON))
    try:
        if fault is Fault.DRIP:
            response.content_length = len(body)
            await response.prepare(request)
            for i in range(len(body)):
                await response.write(body[i : i + 1])
                if i + 1 < len(body) and not await server._sleep(server.drip_interval):
                    return _abort(request)
            await response.write_eof()
            return response
        # Half the body under a Content-Length for all of it: a cut-off 200.
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
    except ConnectionError:
        return response  # the client went away: nothing more to say
    if fault is Fault.SHORT_BODY:
        transport = request.transport
        if transport is not None:
            transport.close()
        return response
    return _abort(request)


async def _serve_huge(server: _Server, request: web.BaseRequest, guid: str) -> web.StreamResponse:
    """`Fault.HUGE_BODY`: a job-like JSON object padded to `huge_body_size` bytes, streamed."""
    head = f'{{"guid":"{guid}","state":"PROCESSING","padding":"'.encode()
    tail = b'"}'
    size = max(server.huge_body_size, len(head) + len(tail))
    response = web.StreamResponse(headers=server._headers(_JSON))
    response.content_length = size
    try:
        await response.prepare(request)
        await response.write(head)
        left = size - len(head) - len(tail)
        while left > 0:
            if server._closing:
                return _abort(request)
            chunk = _HUGE_CHUNK if left >= len(_HUGE_CHUNK) else _HUGE_CHUNK[:left]
            await response.write(chunk)
            left -= len(chunk)
        await response.write(tail)
        await response.write_eof()
    except ConnectionError:
        pass  # the client read what it wanted and closed
    return response


def _abort(request: web.BaseRequest) -> web.StreamResponse:
    """Reset the connection (RST, not FIN); aiohttp then drops the returned response."""
    transport = request.transport
    if transport is not None:
        _reset(transport)
    return web.Response()


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with a RST: linger 0, then abort."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()
