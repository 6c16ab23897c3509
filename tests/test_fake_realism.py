"""The fake behaves like a real foundation: server clock, rate limiter, outages, real answers."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import socket
import time
from datetime import datetime

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from jobwatch.testing import FakeCloudController, FakeResponse, Fault, Outage, RateLimit

from .helpers import AUTH, TOKEN, get, schema_validator

HTTP_DATE = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
RATE_LIMITED = (
    b'{"errors":[{"detail":"Rate Limit Exceeded","title":"CF-RateLimitExceeded","code":10013}]}'
)

pytestmark = pytest.mark.usefixtures("no_server_errors_logged")


async def raw(http: aiohttp.ClientSession, url: str) -> tuple[aiohttp.ClientResponse, bytes]:
    async with http.get(url) as response:
        return response, await response.read()


async def token_grant(
    http: aiohttp.ClientSession, cc: FakeCloudController
) -> aiohttp.ClientResponse:
    form = {"grant_type": "refresh_token", "refresh_token": cc.refresh_token, "client_id": "cf"}
    async with http.post(f"{cc.uaa_url}/oauth/token", data=form) as response:
        await response.read()
        return response


def date_of(headers: CIMultiDictProxy[str]) -> float:
    """The `Date` header, checked to be an HTTP-date, as an epoch."""
    assert HTTP_DATE.match(headers["Date"]), headers["Date"]
    return email.utils.parsedate_to_datetime(headers["Date"]).timestamp()


def epoch_of(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def offset_ending_at(end: float, length: float) -> float:
    """The window offset that makes a window of `length` end at the epoch `end`."""
    return end % length


def soon(after: float, skew: float = 0.0) -> float:
    """A server epoch `after` seconds from now."""
    return time.time() + skew + after


async def sleep_until(when: float) -> None:
    """Sleep until `time.monotonic()` reaches `when`."""
    await asyncio.sleep(max(when - time.monotonic(), 0.0))


# -- the server's clock ---------------------------------------------------------------------


@pytest.mark.parametrize("skew", [0.0, 3600.0, -86400.5])
async def test_every_answer_carries_a_date_of_the_server_clock(
    http: aiohttp.ClientSession, skew: float
) -> None:
    """Jobs, errors, faults, 429s, the UAA, the root and outages all send the server's Date."""
    rate_limit = RateLimit(1, 60.0, offset=offset_ending_at(soon(30, skew), 60.0))
    async with FakeCloudController(token=TOKEN, clock_skew=skew, rate_limit=rate_limit) as cc:
        guid = cc.add_job()
        cc.inject(guid, FakeResponse.router_502(), Fault.SERVER_ERROR)
        before = cc.server_time()
        answers = [
            await get(http, cc.job_url(guid)),  # injected 502
            await get(http, cc.job_url(guid)),  # injected fault
            await get(http, cc.job_url(guid)),  # 200
            await get(http, cc.job_url(guid)),  # 429
            await get(http, cc.job_url("no-such-job"), headers={"Authorization": "bearer x"}),
            await get(http, cc.url),
            await get(http, f"{cc.url}/v2/info"),
        ]
        uaa = await token_grant(http, cc)
        cc.schedule_outage(Outage.MAINTENANCE_503, 1.0)
        answers.append(await get(http, cc.job_url(guid)))
        after = cc.server_time()
    assert [status for status, _, _ in answers] == [502, 500, 200, 429, 401, 200, 404, 503]
    for _, _, headers in [*answers, (0, None, uaa.headers)]:
        assert math.floor(before) <= date_of(headers) <= after
    assert abs(cc.server_time() - time.time() - skew) < 0.01


async def test_job_timestamps_and_rate_limit_epochs_use_the_server_clock(
    http: aiohttp.ClientSession,
) -> None:
    """created_at, updated_at and X-RateLimit-Reset are on the server's (skewed) clock."""
    skew = -7200.0
    async with FakeCloudController(
        token=TOKEN, clock_skew=skew, rate_limit=RateLimit(100, 3600.0)
    ) as cc:
        guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
        first = await get(http, cc.job_url(guid))
        second = await get(http, cc.job_url(guid))
        now = cc.server_time()
    for _, body, headers in (first, second):
        assert now - 2 <= epoch_of(body["created_at"]) <= now
        assert now - 2 <= epoch_of(body["updated_at"]) <= now + 1
        reset = int(headers["X-RateLimit-Reset"])
        assert now - 1 <= reset <= now + 3600
        assert reset < time.time() + skew + 3600
        assert abs(date_of(headers) - now) < 2
    assert second[1]["updated_at"] > first[1]["updated_at"]


# -- the rate limiter -------------------------------------------------------------------------


async def test_rate_limit_reset_is_the_window_end_truncated(http: aiohttp.ClientSession) -> None:
    """Reset is the window's end floored to the second; Remaining rounds down to 10 % steps."""
    end = math.floor(soon(30)) + 0.7
    rate_limit = RateLimit(30, 60.0, offset=offset_ending_at(end, 60.0))
    async with FakeCloudController(token=TOKEN, rate_limit=rate_limit) as cc:
        guid = cc.add_job()
        answers = [await get(http, cc.job_url(guid)) for _ in range(5)]
    resets = {int(headers["X-RateLimit-Reset"]) for _, _, headers in answers}
    assert resets == {math.floor(end)}
    assert {headers["X-RateLimit-Limit"] for _, _, headers in answers} == {"30"}
    remaining = [int(headers["X-RateLimit-Remaining"]) for _, _, headers in answers]
    assert remaining == [(30 - n) // 3 * 3 for n in range(1, 6)] == [27, 27, 27, 24, 24]


async def test_retry_after_counts_seconds_to_the_truncated_reset(
    http: aiohttp.ClientSession,
) -> None:
    """Over the limit: 429 text/plain, Remaining 0, Retry-After = int(reset - server now)."""
    end = math.floor(soon(50, skew=500.0)) + 0.7
    rate_limit = RateLimit(2, 60.0, offset=offset_ending_at(end, 60.0))
    async with FakeCloudController(token=TOKEN, clock_skew=500.0, rate_limit=rate_limit) as cc:
        guid = cc.add_job()
        assert [(await get(http, cc.job_url(guid)))[0] for _ in range(2)] == [200, 200]
        before = cc.server_time()
        response, body = await raw(http, cc.job_url(guid))
        after = cc.server_time()
        assert cc.rate_limited_count == 1
    headers = response.headers
    assert response.status == 429
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body == RATE_LIMITED
    assert headers["X-RateLimit-Remaining"] == "0"
    reset = int(headers["X-RateLimit-Reset"])
    retry_after = int(headers["Retry-After"])
    assert reset == math.floor(end)
    assert int(reset - after) <= retry_after <= int(reset - before)
    assert retry_after in (49, 50)
    assert retry_after != reset


async def test_retry_after_is_zero_in_the_last_second_of_a_window(
    http: aiohttp.ClientSession,
) -> None:
    """A window ending within the second: Retry-After 0 (real), and the next window is free."""
    length = 60.0
    end = soon(0.25)
    rate_limit = RateLimit(1, length, offset=offset_ending_at(end, length))
    async with FakeCloudController(token=TOKEN, rate_limit=rate_limit) as cc:
        guid = cc.add_job()
        statuses = [(await get(http, cc.job_url(guid)))[0] for _ in range(2)]
        _, _, headers = await get(http, cc.job_url(guid))
        assert headers["Retry-After"] == "0"
        assert int(headers["X-RateLimit-Reset"]) == math.floor(end)
        await asyncio.sleep(max(end - cc.server_time(), 0) + 0.02)
        status, _, later = await get(http, cc.job_url(guid))
    assert statuses == [200, 429]
    assert status == 200
    assert int(later["X-RateLimit-Reset"]) == math.floor(end + length)


async def test_retry_after_epoch_equals_the_reset(http: aiohttp.ClientSession) -> None:
    """retry_after="epoch": Retry-After is the epoch itself, equal to X-RateLimit-Reset."""
    limit = RateLimit(1, 60.0, retry_after="epoch", offset=0.0)
    async with FakeCloudController(token=TOKEN, clock_skew=-30.0, rate_limit=limit) as cc:
        guid = cc.add_job()
        await get(http, cc.job_url(guid))
        now = cc.server_time()
        status, _, headers = await get(http, cc.job_url(guid))
    assert status == 429
    assert headers["Retry-After"] == headers["X-RateLimit-Reset"]
    assert int(headers["Retry-After"]) == (math.floor(now) // 60 + 1) * 60
    assert int(headers["Retry-After"]) > 1e9


async def reset_by_token(seed: int, tokens: list[str]) -> dict[str, int]:
    async with (
        FakeCloudController(seed=seed, rate_limit=RateLimit(100, 3600.0)) as cc,
        aiohttp.ClientSession() as http,
    ):
        guid = cc.add_job()
        resets = {}
        for token in tokens:
            _, _, headers = await get(http, cc.job_url(guid), headers={"Authorization": token})
            resets[token] = int(headers["X-RateLimit-Reset"])
        now = cc.server_time()
    assert all(now - 1 <= reset <= now + 3600 for reset in resets.values())
    return resets


async def test_each_token_has_its_own_window_offset_from_the_seed() -> None:
    """offset=None: each token's windows start at its own offset, reproducible by seed."""
    tokens = [f"bearer user-{n}" for n in range(4)]
    first = await reset_by_token(0, tokens)
    again = await reset_by_token(0, tokens)
    other = await reset_by_token(1, tokens)
    assert len(set(first.values())) == len(tokens)
    assert first == again
    assert first != other


async def test_a_token_over_its_limit_does_not_limit_another() -> None:
    """Counts are per Authorization value: one user's 429 leaves the other's budget alone."""
    async with (
        FakeCloudController(rate_limit=RateLimit(2, 60.0, offset=0.0)) as cc,
        aiohttp.ClientSession() as http,
    ):
        guid = cc.add_job()
        a = [
            (await get(http, cc.job_url(guid), headers={"Authorization": "bearer a"}))[0]
            for _ in range(3)
        ]
        b = await get(http, cc.job_url(guid), headers={"Authorization": "bearer b"})
    assert a == [200, 200, 429]
    assert b[0] == 200
    assert b[2]["X-RateLimit-Remaining"] == "1"


async def test_a_bad_token_over_the_limit_gets_401_not_429() -> None:
    """The token is checked before the limiter counts: 401, uncounted, no rate-limit headers."""
    async with (
        FakeCloudController(token=TOKEN, rate_limit=RateLimit(1, 60.0, offset=0.0)) as cc,
        aiohttp.ClientSession() as http,
    ):
        guid = cc.add_job()
        good = [(await get(http, cc.job_url(guid), headers=AUTH))[0] for _ in range(2)]
        bad = {"Authorization": "bearer expired"}
        for _ in range(3):
            status, body, headers = await get(http, cc.job_url(guid), headers=bad)
            assert status == 401
            assert body["errors"][0]["title"] == "CF-InvalidAuthToken"
            assert "X-RateLimit-Remaining" not in headers
        status, body, _ = await get(http, cc.job_url(guid))
        assert status == 401
        assert body["errors"][0]["code"] == 10002
    assert good == [200, 429]
    assert cc.rate_limited_count == 1


async def statuses_with_ttl(ttl: int, limit: int, n: int) -> list[int]:
    rate_limit = RateLimit(limit, 60.0, offset=offset_ending_at(soon(30), 60.0))
    async with (
        FakeCloudController(token=TOKEN, token_ttl_requests=ttl, rate_limit=rate_limit) as cc,
        aiohttp.ClientSession(headers=AUTH) as http,
    ):
        guid = cc.add_job()
        return [(await get(http, cc.job_url(guid)))[0] for _ in range(n)]


async def test_token_ttl_counts_authorized_requests_and_expiry_comes_before_429() -> None:
    """A 429 does not use up the token's TTL; an expired token over the limit gets 401."""
    assert await statuses_with_ttl(ttl=2, limit=1, n=3) == [200, 429, 429]
    assert await statuses_with_ttl(ttl=1, limit=1, n=2) == [200, 401]


async def test_api_vms_each_enforce_their_share_and_estimate_remaining(
    http: aiohttp.ClientSession,
) -> None:
    """vms=2: round-robin, each VM allows ceil(limit/2) and scales its own count to the limit."""
    rate_limit = RateLimit(10, 60.0, offset=offset_ending_at(soon(30), 60.0), vms=2)
    async with FakeCloudController(token=TOKEN, rate_limit=rate_limit) as cc:
        guid = cc.add_job()
        answers = [await get(http, cc.job_url(guid)) for _ in range(12)]
    assert [status for status, _, _ in answers] == [200] * 10 + [429, 429]
    assert {headers["X-RateLimit-Limit"] for _, _, headers in answers} == {"10"}
    remaining = [int(headers["X-RateLimit-Remaining"]) for _, _, headers in answers]
    assert remaining == [8, 8, 6, 6, 4, 4, 2, 2, 0, 0, 0, 0]


async def test_uneven_vms_round_the_share_up(http: aiohttp.ClientSession) -> None:
    """vms=3 with limit 10: each VM allows 4, so 12 get through before the first 429."""
    rate_limit = RateLimit(10, 60.0, offset=offset_ending_at(soon(30), 60.0), vms=3)
    async with FakeCloudController(token=TOKEN, rate_limit=rate_limit) as cc:
        guid = cc.add_job()
        statuses = [(await get(http, cc.job_url(guid)))[0] for _ in range(13)]
    assert statuses == [200] * 12 + [429]


def test_rate_limit_rejects_nonsense_options() -> None:
    """retry_after other than seconds/epoch, vms below 1 or a non-finite offset are refused."""
    with pytest.raises(ValueError, match="retry_after"):
        RateLimit(retry_after="date")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vms"):
        RateLimit(vms=0)
    with pytest.raises(ValueError, match="offset"):
        RateLimit(offset=math.inf)
    assert RateLimit(5, 0.5) == RateLimit(limit=5, window=0.5)


# -- outages ---------------------------------------------------------------------------------


def router_text(cc: FakeCloudController, text: str) -> str:
    return text.format(route=f"api.{cc.url.split('//')[1].split(':')[0]}")


OUTAGE_ANSWERS = {
    Outage.ROUTER_404: (
        404,
        "text/plain; charset=utf-8",
        "unknown_route",
        "404 Not Found: Requested route ('{route}') does not exist.\n",
    ),
    Outage.ROUTER_502: (
        502,
        "text/plain; charset=utf-8",
        "endpoint_failure (",
        "502 Bad Gateway: Registered endpoint failed to handle the request.\n",
    ),
    Outage.ROUTER_503: (
        503,
        "text/plain; charset=utf-8",
        "no_endpoints",
        "503 Service Unavailable: Requested route ('{route}') has no available endpoints.\n",
    ),
    Outage.MAINTENANCE_503: (503, "text/html", None, "API down for maintenance"),
    Outage.DB_503: (503, "application/json; charset=utf-8", None, None),
    Outage.UAA_502: (502, "application/json; charset=utf-8", None, None),
}


@pytest.mark.parametrize("kind", list(OUTAGE_ANSWERS), ids=lambda kind: kind.name)
async def test_outage_answers_every_api_path_within_its_window_only(
    cc: FakeCloudController, http: aiohttp.ClientSession, kind: Outage
) -> None:
    """Within the window jobs and root get the outage's answer; after it, the job again."""
    status, content_type, router_error, text = OUTAGE_ANSWERS[kind]
    guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
    cc.schedule_outage(kind, 0.1)
    assert cc.outage_active is kind
    assert f"outage={kind.name}" in repr(cc)
    during = [await get(http, url) for url in (cc.job_url(guid), cc.url, f"{cc.url}/v3/apps")]
    for got, body, headers in during:
        assert got == status
        assert headers["Content-Type"] == content_type
        if router_error is None:
            assert "X-Cf-Routererror" not in headers
        else:
            assert headers["X-Cf-Routererror"].startswith(router_error)
            assert headers["X-Content-Type-Options"] == "nosniff"
        if text is not None:
            assert body == router_text(cc, text)
        assert "Retry-After" not in headers
    assert cc.outage_requests == 3
    assert cc.polls(guid) == 1
    (window,) = cc.outage_windows
    await sleep_until(window[2] + 0.01)
    assert cc.outage_active is None
    got, body, _ = await get(http, cc.job_url(guid))
    assert (got, body["state"]) == (200, "PROCESSING")  # the script did not advance
    assert cc.outage_requests == 3
    assert cc.polls(guid) == 2


async def test_json_outages_are_the_controllers_errors(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """DB_503 is CF-ServiceUnavailable 10015, UAA_502 is CF-UaaUnavailable 20004."""
    envelope = schema_validator("errors")
    guid = cc.add_job()
    seen = []
    for kind in (Outage.DB_503, Outage.UAA_502):
        cc.schedule_outage(kind, 0.05)
        _, body, _ = await get(http, cc.job_url(guid))
        envelope.validate(body)
        seen.append((body["errors"][0]["title"], body["errors"][0]["code"]))
        await asyncio.sleep(0.06)
    assert seen == [("CF-ServiceUnavailable", 10015), ("CF-UaaUnavailable", 20004)]


async def test_nginx_maintenance_has_its_status_line_and_server(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """MAINTENANCE_503 is nginx's `return 503`: its reason phrase, Server: nginx, bare text."""
    cc.schedule_outage(Outage.MAINTENANCE_503, 0.2)
    response, body = await raw(http, cc.url)
    assert response.status == 503
    assert response.reason == "Service Temporarily Unavailable"
    assert response.headers["Server"] == "nginx"
    assert body == b"API down for maintenance"


async def test_reset_outage_resets_every_connection(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """RESET: no byte comes back, on jobs and root alike; counted; then normal again."""
    guid = cc.add_job()
    cc.schedule_outage(Outage.RESET, 0.1)
    for url in (cc.job_url(guid), cc.url):
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(http, url)
    # aiohttp sends an idempotent request once more after a reset: count what arrived.
    job_gets = sum(1 for request in cc.requests if request.guid == guid)
    assert cc.outage_requests == len(cc.requests) >= 2
    assert cc.polls(guid) == job_gets >= 1
    await sleep_until(cc.outage_windows[0][2] + 0.01)
    assert (await get(http, cc.job_url(guid)))[0] == 200
    assert cc.outage_requests == len(cc.requests) - 1


async def test_refused_outage_stops_listening_then_listens_on_the_same_port(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """REFUSED: open keep-alive connections drop, new ones are refused, then the port is back."""
    guid = cc.add_job(states=("PROCESSING",))
    url, port = cc.job_url(guid), int(cc.url.rsplit(":", 1)[1])
    assert (await get(http, url))[0] == 200  # leaves a keep-alive connection in the pool
    cc.schedule_outage(Outage.REFUSED, 0.15)
    await asyncio.sleep(0.03)
    assert cc.outage_active is Outage.REFUSED
    with pytest.raises(aiohttp.ClientConnectorError):
        await get(http, url)
    with pytest.raises(aiohttp.ClientConnectorError):
        await token_grant(http, cc)  # the UAA shares the socket here
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert cc.outage_requests == 0
    assert cc.polls(guid) == 1
    await asyncio.sleep(0.15)
    assert cc.outage_active is None
    assert (await get(http, url))[0] == 200
    assert cc.job_url(guid) == url
    assert cc.polls(guid) == 2


async def test_refused_scheduled_before_start_applies_once_listening() -> None:
    """A REFUSED window scheduled before start() closes the socket as soon as it listens."""
    cc = FakeCloudController()
    cc.schedule_outage(Outage.REFUSED, 0.1)
    async with cc, aiohttp.ClientSession() as http:
        guid = cc.add_job()
        await asyncio.sleep(0.02)
        with pytest.raises(aiohttp.ClientConnectorError):
            await get(http, cc.job_url(guid))
        await asyncio.sleep(0.1)
        assert (await get(http, cc.job_url(guid)))[0] == 200


async def test_closing_during_a_refused_window_is_clean() -> None:
    """aclose() in the middle of a REFUSED window leaves nothing running or listening."""
    async with FakeCloudController() as cc:
        cc.schedule_outage(Outage.REFUSED, 5.0)
        cc.schedule_outage(Outage.REFUSED, 5.0, start=1.0)
        await asyncio.sleep(0.02)
        assert cc.outage_active is Outage.REFUSED


async def classify(http: aiohttp.ClientSession, url: str) -> str:
    try:
        status, _, headers = await get(http, url)
    except aiohttp.ClientConnectionError:
        # Refused; or, right as the listener closes, the open connection reset.
        return "no answer"
    if "X-Cf-Routererror" in headers:
        return f"router {status}"
    return f"{headers['Content-Type'].split(';')[0]} {status}"


async def test_deploy_goes_through_its_steps_in_order(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """schedule_deploy: back-to-back windows, each answering in turn, then the API is back."""
    guid = cc.add_job(states=("PROCESSING",))
    steps = [(Outage.MAINTENANCE_503, 0.08), (Outage.ROUTER_404, 0.08), (Outage.REFUSED, 0.08)]
    cc.schedule_deploy(steps, start=0.04)
    windows = cc.outage_windows
    assert [kind for kind, _, _ in windows] == [kind for kind, _ in steps]
    assert [end - begin for _, begin, end in windows] == pytest.approx([0.08] * 3)
    assert windows[0][2] == windows[1][1]
    assert windows[1][2] == windows[2][1]
    seen: list[str] = []
    while time.monotonic() < windows[-1][2] + 0.05:
        answer = await classify(http, cc.job_url(guid))
        if not seen or seen[-1] != answer:
            seen.append(answer)
        await asyncio.sleep(0.01)
    assert seen == [
        "application/json 200",
        "text/html 503",
        "router 404",
        "no answer",
        "application/json 200",
    ]


async def test_outage_in_the_future_and_overlapping_windows(cc: FakeCloudController) -> None:
    """A window starts `start` seconds from now; where two overlap, the earlier start answers."""
    cc.schedule_outage(Outage.ROUTER_502, 0.3, start=0.1)
    cc.schedule_outage(Outage.DB_503, 0.2, start=0.05)
    db, router = cc.outage_windows  # sorted by start
    assert (db[0], router[0]) == (Outage.DB_503, Outage.ROUTER_502)
    assert cc.outage_active is None
    await sleep_until(db[1] + 0.01)
    assert cc.outage_active is Outage.DB_503
    await sleep_until(router[1] + 0.02)
    assert cc.outage_active is Outage.DB_503
    await sleep_until(db[2] + 0.01)
    assert cc.outage_active is Outage.ROUTER_502
    await sleep_until(router[2] + 0.01)
    assert cc.outage_active is None


def test_outage_schedules_reject_nonsense() -> None:
    """A non-Outage kind, a non-positive duration or a negative start are refused."""
    cc = FakeCloudController()
    with pytest.raises(TypeError):
        cc.schedule_outage(Fault.ROUTER_502, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duration"):
        cc.schedule_outage(Outage.RESET, 0.0)
    with pytest.raises(ValueError, match="start"):
        cc.schedule_outage(Outage.RESET, 1.0, start=-1.0)
    with pytest.raises(ValueError, match="step"):
        cc.schedule_deploy([(Outage.RESET, 1.0), (Outage.REFUSED, -1.0)])
    assert cc.outage_windows == []


async def test_jobs_go_on_server_side_during_an_outage(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """A timeline job finishes while the API is down; GETs the outage answered count as polls."""
    guid = cc.add_job(timeline=((0.0, "PROCESSING"), (0.05, "COMPLETE")))
    assert (await get(http, cc.job_url(guid)))[1]["state"] == "PROCESSING"
    cc.schedule_outage(Outage.ROUTER_503, 0.1)
    assert (await get(http, cc.job_url(guid)))[0] == 503
    await asyncio.sleep(0.11)
    assert (await get(http, cc.job_url(guid)))[1]["state"] == "COMPLETE"
    assert cc.polls(guid) == 3
    assert cc.outage_requests == 1


async def test_outages_leave_the_uaa_alone(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """The UAA is another host: an API outage (but REFUSED) does not touch /oauth/token."""
    cc.schedule_outage(Outage.ROUTER_404, 0.2)
    response = await token_grant(http, cc)
    assert response.status == 200
    assert cc.outage_requests == 0


# -- the UAA --------------------------------------------------------------------------------


async def test_unavailable_uaa_answers_the_routers_503(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """uaa_available=False: /oauth/token is the router's no_endpoints 503 for the UAA's route."""
    cc.uaa_available = False
    async with http.post(f"{cc.uaa_url}/oauth/token", data={"grant_type": "x"}) as response:
        text = await response.text()
        status, headers = response.status, response.headers
    host = cc.url.split("//")[1].split(":")[0]
    assert status == 503
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Cf-Routererror"] == "no_endpoints"
    assert (
        text
        == f"503 Service Unavailable: Requested route ('uaa.{host}') has no available endpoints.\n"
    )
    assert cc.token == TOKEN
    assert cc.refresh_calls == 1
    cc.uaa_available = True
    assert (await token_grant(http, cc)).status == 200
    assert cc.token != TOKEN


async def test_uaa_latency_delays_its_answer(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """uaa_latency holds each token grant that long; the API is not slowed."""
    cc.uaa_latency = 0.08
    started = time.monotonic()
    assert (await token_grant(http, cc)).status == 200
    assert time.monotonic() - started >= 0.08
    started = time.monotonic()
    await get(http, cc.url)
    assert time.monotonic() - started < 0.08


# -- every real answer, servable ---------------------------------------------------------------


GATEWAY = {
    408: ("text/html", "awselb/2.0", "408 Request Time-out"),
    504: ("text/html", "awselb/2.0", "504 Gateway Time-out"),
    520: ("text/plain; charset=UTF-8", "cloudflare", "error code: 520"),
    521: ("text/plain; charset=UTF-8", "cloudflare", "error code: 521"),
    522: ("text/plain; charset=UTF-8", "cloudflare", "error code: 522"),
    523: ("text/plain; charset=UTF-8", "cloudflare", "error code: 523"),
    524: ("text/plain; charset=UTF-8", "cloudflare", "error code: 524"),
}


@pytest.mark.parametrize("status", list(GATEWAY))
async def test_gateway_errors_are_short_pages_not_json(
    cc: FakeCloudController, http: aiohttp.ClientSession, status: int
) -> None:
    """gateway_error: a load balancer's or CDN's answer, HTML or text, never JSON."""
    content_type, server, text = GATEWAY[status]
    guid = cc.add_job()
    cc.inject(guid, FakeResponse.gateway_error(status))
    response, body = await raw(http, cc.job_url(guid))
    assert response.status == status
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Server"] == server
    assert text in body.decode()
    assert len(body) < 300
    assert response.reason
    with pytest.raises(ValueError, match="Expecting value"):
        json.loads(body)


def test_gateway_error_needs_an_error_status() -> None:
    """Any other 4xx/5xx gets a generic page; a non-error status is refused."""
    assert FakeResponse.gateway_error(502).reason == "Bad Gateway"
    with pytest.raises(ValueError, match="status"):
        FakeResponse.gateway_error(200)


@pytest.mark.parametrize(
    ("fake", "status", "router_error", "text"),
    [
        (
            FakeResponse.router_404("api.sys.example.test"),
            404,
            "unknown_route",
            "404 Not Found: Requested route ('api.sys.example.test') does not exist.\n",
        ),
        (
            FakeResponse.router_503(),
            503,
            "no_endpoints",
            "503 Service Unavailable: Requested route ('api.example.org') "
            "has no available endpoints.\n",
        ),
        (
            FakeResponse.router_503_connection_limit(),
            503,
            "Connection Limit Reached",
            "503 Service Unavailable: Requested route ('api.example.org') "
            "has reached the connection limit.\n",
        ),
        (
            FakeResponse.router_502(),
            502,
            "endpoint_failure (dial tcp 10.0.16.12:9024: connect: connection refused)",
            "502 Bad Gateway: Registered endpoint failed to handle the request.\n",
        ),
        (
            FakeResponse.router_502("read tcp 10.0.16.12:9024: connection reset by peer"),
            502,
            "endpoint_failure (read tcp 10.0.16.12:9024: connection reset by peer)",
            "502 Bad Gateway: Registered endpoint failed to handle the request.\n",
        ),
    ],
    ids=["404", "503", "503_connection_limit", "502", "502_reset"],
)
async def test_router_answers_are_gorouters_plain_text(
    cc: FakeCloudController,
    http: aiohttp.ClientSession,
    fake: FakeResponse,
    status: int,
    router_error: str,
    text: str,
) -> None:
    """gorouter's own errors: text/plain, nosniff, X-Cf-Routererror, no Retry-After."""
    guid = cc.add_job()
    cc.inject(guid, fake)
    got, body, headers = await get(http, cc.job_url(guid))
    assert got == status
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Cf-Routererror"] == router_error
    assert body == text
    assert "Retry-After" not in headers


@pytest.mark.parametrize("fault", [Fault.ROUTER_404, Fault.ROUTER_503])
async def test_router_faults_name_the_fakes_own_route(
    cc: FakeCloudController, http: aiohttp.ClientSession, fault: Fault
) -> None:
    """Fault.ROUTER_404/503 serve the router's answers for `api.<the fake's host>`."""
    guid = cc.add_job()
    cc.inject(guid, fault)
    status, body, headers = await get(http, cc.job_url(guid))
    assert status == (404 if fault is Fault.ROUTER_404 else 503)
    assert "('api.127.0.0.1')" in body
    assert "X-Cf-Routererror" in headers
    assert cc.faults_injected[fault] == 1


async def test_rate_limited_legacy_sends_the_epoch_twice(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """rate_limited_legacy: Retry-After equals X-RateLimit-Reset, both the epoch; Remaining 0."""
    epoch = int(cc.server_time()) + 42
    guid = cc.add_job()
    cc.inject(guid, FakeResponse.rate_limited_legacy(epoch))
    response, body = await raw(http, cc.job_url(guid))
    headers = response.headers
    assert response.status == 429
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Retry-After"] == headers["X-RateLimit-Reset"] == str(epoch)
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Limit"] == "2000"
    assert body == RATE_LIMITED


async def test_every_new_json_body_matches_the_schema(
    http: aiohttp.ClientSession,
) -> None:
    """The new JSON errors validate as error envelopes; jobs on a skewed clock as jobs."""
    envelope, published = schema_validator("errors"), schema_validator("job")
    jsons = [
        FakeResponse.db_unavailable_503(),
        FakeResponse.uaa_unavailable_502(),
        FakeResponse.rate_limited(),
        FakeResponse.rate_limited_legacy(1_767_226_234),
    ]
    rate_limit = RateLimit(3, 60.0, offset=offset_ending_at(soon(30, -3600.0), 60.0))
    async with FakeCloudController(token=TOKEN, clock_skew=-3600.0, rate_limit=rate_limit) as cc:
        guid = cc.add_job(states=("PROCESSING", "POLLING", "COMPLETE"))
        cc.inject(guid, *jsons)
        bodies = [(await get(http, cc.job_url(guid)))[1] for _ in jsons]
        jobs = [(await get(http, cc.job_url(guid)))[1] for _ in range(3)]
        limited = await get(http, cc.job_url(guid))  # then the limiter's own 429
        for kind in (Outage.DB_503, Outage.UAA_502):
            cc.schedule_outage(kind, 0.03)
            bodies.append((await get(http, cc.job_url(guid)))[1])
            await asyncio.sleep(0.04)
    assert limited[0] == 429
    bodies.append(limited[1])
    for body in bodies:
        envelope.validate(body)
        (error,) = body["errors"]
        assert list(error) == ["detail", "title", "code"]
    assert [job["state"] for job in jobs] == ["PROCESSING", "POLLING", "COMPLETE"]
    for job in jobs:
        published.validate(job)
        assert abs(epoch_of(job["updated_at"]) - cc.server_time()) < 5
    assert [body["errors"][0]["code"] for body in bodies] == [
        10015,
        20004,
        10013,
        10013,
        10015,
        20004,
        10013,
    ]
