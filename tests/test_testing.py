"""Tests for jobwatch.testing.FakeCloudController, talking plain aiohttp over loopback."""

from __future__ import annotations

import asyncio
import base64
import math
import re
import time
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import jsonschema
import pytest

from jobwatch.testing import (
    FakeCloudController,
    FakeResponse,
    Fault,
    RateLimit,
    RecordedRequest,
)

from .helpers import AUTH, CC_TIMESTAMP, TOKEN, get, schema_validator

REQUEST_ID = re.compile(r"^[0-9a-f-]{36}::[0-9a-f-]{36}$")


pytestmark = pytest.mark.usefixtures("no_server_errors_logged")


async def states_seen(http: aiohttp.ClientSession, url: str, n: int) -> list[str]:
    return [(await get(http, url))[1]["state"] for _ in range(n)]


# -- job bodies and scripting -------------------------------------------------------------


async def test_job_body_has_the_controller_shape_and_headers(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """A job GET answers the controller's keys, links, timestamps and headers."""
    guid = cc.add_job(operation="service_instance.create", resource="service_instances")
    status, body, headers = await get(http, cc.job_url(guid))
    _, _, headers2 = await get(http, cc.job_url(guid))

    assert status == 200
    assert list(body) == [
        "guid",
        "created_at",
        "updated_at",
        "operation",
        "state",
        "errors",
        "warnings",
        "links",
    ]
    assert body["guid"] == guid
    assert str(uuid.UUID(guid)) == guid
    assert body["operation"] == "service_instance.create"
    assert body["errors"] == []
    assert body["warnings"] == []
    assert CC_TIMESTAMP.match(body["created_at"])
    assert CC_TIMESTAMP.match(body["updated_at"])
    assert body["links"]["self"] == {"href": cc.job_url(guid)}
    assert re.fullmatch(
        re.escape(cc.url) + r"/v3/service_instances/[0-9a-f-]{36}",
        body["links"]["service_instances"]["href"],
    )
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert REQUEST_ID.match(headers["X-Vcap-Request-Id"])
    assert headers["X-Vcap-Request-Id"] != headers2["X-Vcap-Request-Id"]
    assert cc.job_url(guid) == f"{cc.url}/v3/jobs/{guid}"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", cc.url)


async def test_states_advance_one_per_get_and_stay_on_the_last(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """The n-th GET sees states[min(n, len - 1)]."""
    guid = cc.add_job(states=("PROCESSING", "POLLING", "COMPLETE"))
    seen = await states_seen(http, cc.job_url(guid), 5)
    assert seen == ["PROCESSING", "POLLING", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert cc.polls(guid) == 5


async def test_updated_at_moves_only_when_the_state_changes(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """updated_at equals created_at at first and grows on each state change."""
    guid = cc.add_job(
        states=("PROCESSING", "PROCESSING", "COMPLETE"), created_at="2016-10-19T20:25:04Z"
    )
    bodies = [(await get(http, cc.job_url(guid)))[1] for _ in range(3)]
    assert {b["created_at"] for b in bodies} == {"2016-10-19T20:25:04Z"}
    assert bodies[0]["updated_at"] == bodies[1]["updated_at"] == "2016-10-19T20:25:04Z"
    assert bodies[2]["updated_at"] > bodies[1]["updated_at"]


async def test_timeline_clock_starts_at_the_first_get(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """Timeline states follow seconds since the job's first GET, not since add_job."""
    guid = cc.add_job(
        timeline=((0.0, "PROCESSING"), (0.1, "POLLING"), (0.2, "COMPLETE")),
        states=("FAILED",),
    )
    url = cc.job_url(guid)
    await asyncio.sleep(0.12)
    start = time.monotonic()
    assert (await get(http, url))[1]["state"] == "PROCESSING"
    assert cc.finished_at(guid) is None
    await asyncio.sleep(0.13)
    assert (await get(http, url))[1]["state"] == "POLLING"
    await asyncio.sleep(0.1)
    assert (await get(http, url))[1]["state"] == "COMPLETE"
    finished = cc.finished_at(guid)
    assert finished is not None
    assert start + 0.19 <= finished <= start + 0.22


async def test_finished_at_is_the_get_that_first_served_a_terminal_state(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """For poll-count scripts the job ends when its terminal state is first served."""
    guid = cc.add_job(states=("PROCESSING", "FAILED"))
    await get(http, cc.job_url(guid))
    assert cc.finished_at(guid) is None
    before = time.monotonic()
    await get(http, cc.job_url(guid))
    finished = cc.finished_at(guid)
    assert finished is not None
    assert before <= finished <= time.monotonic()


async def test_failed_jobs_serve_the_scripted_errors(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """FAILED serves a realistic default error, [], null or the given list."""
    mine = [{"code": 10008, "title": "CF-UnprocessableEntity", "detail": "bad"}]
    guids = {
        "default": cc.add_job(states=("FAILED",), operation="service_instance.delete"),
        "empty": cc.add_job(states=("FAILED",), errors=[]),
        "null": cc.add_job(states=("FAILED",), errors=None),
        "mine": cc.add_job(states=("FAILED",), errors=mine),
    }
    errors = {k: (await get(http, cc.job_url(g)))[1]["errors"] for k, g in guids.items()}
    (default,) = errors["default"]
    assert default["code"] == 10009
    assert default["title"] == "CF-UnableToPerform"
    assert default["detail"].startswith("delete could not be completed")
    assert errors["empty"] == []
    assert errors["null"] is None
    assert errors["mine"] == mine


async def test_warnings_and_resource_link_follow_the_script(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """Warnings become [{detail}] and resource=None drops the resource link."""
    guid = cc.add_job(states=("COMPLETE",), warnings=("slow broker",), resource=None)
    body = (await get(http, cc.job_url(guid)))[1]
    assert body["warnings"] == [{"detail": "slow broker"}]
    assert list(body["links"]) == ["self"]


async def test_unknown_guid_is_404_job_not_found(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """An unknown job answers the controller's CF-ResourceNotFound envelope."""
    status, body, _ = await get(http, cc.job_url("no-such-job"))
    assert status == 404
    assert body == {
        "errors": [{"code": 10010, "title": "CF-ResourceNotFound", "detail": "Job not found"}]
    }
    assert cc.polls("no-such-job") == 1


async def test_unknown_route_is_404_cf_not_found(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """Paths the fake does not serve answer CF-NotFound 10000."""
    status, body, _ = await get(http, cc.url + "/v3/apps")
    assert status == 404
    assert body["errors"][0]["code"] == 10000


async def test_root_links_to_the_uaa(cc: FakeCloudController, http: aiohttp.ClientSession) -> None:
    """GET / lists the API and the UAA, like the controller's root endpoint."""
    status, body, _ = await get(http, cc.url + "/")
    assert status == 200
    assert body["links"]["uaa"]["href"] == cc.uaa_url


# -- auth -------------------------------------------------------------------------------


async def test_token_is_required_and_the_scheme_is_case_insensitive(
    cc: FakeCloudController,
) -> None:
    """No header is CF-NotAuthenticated, a wrong token CF-InvalidAuthToken; 'Bearer' works."""
    guid = cc.add_job()
    async with aiohttp.ClientSession() as http:
        missing = await get(http, cc.job_url(guid))
        wrong = await get(http, cc.job_url(guid), headers={"Authorization": "bearer nope"})
        basic = await get(http, cc.job_url(guid), headers={"Authorization": f"basic {TOKEN}"})
        right = await get(http, cc.job_url(guid), headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing[0] == 401
    assert missing[1]["errors"][0]["title"] == "CF-NotAuthenticated"
    assert wrong[0] == 401
    assert wrong[1] == {
        "errors": [{"code": 1000, "title": "CF-InvalidAuthToken", "detail": "Invalid Auth Token"}]
    }
    assert basic[0] == 401
    assert right[0] == 200
    assert right[1]["state"] == "PROCESSING"


async def test_rotating_the_token_rejects_the_old_one(cc: FakeCloudController) -> None:
    """Setting cc.token makes the API accept only the new token."""
    guid = cc.add_job()
    cc.token = "rotated"
    async with aiohttp.ClientSession() as http:
        old = await get(http, cc.job_url(guid), headers=AUTH)
        new = await get(http, cc.job_url(guid), headers={"Authorization": "bearer rotated"})
    assert (old[0], new[0]) == (401, 200)


async def test_no_token_accepts_any_request(http: aiohttp.ClientSession) -> None:
    """token=None turns auth off."""
    async with FakeCloudController() as cc:
        guid = cc.add_job()
        async with aiohttp.ClientSession() as bare:
            assert (await get(bare, cc.job_url(guid)))[0] == 200


async def uaa_refresh(
    http: aiohttp.ClientSession,
    cc: FakeCloudController,
    refresh_token: str = "refresh-token",
    client: tuple[str, str] = ("cf", ""),
) -> tuple[int, Any]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    basic = base64.b64encode(":".join(client).encode()).decode()
    async with http.post(
        cc.uaa_url + "/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"}
    ) as response:
        return response.status, await response.json()


async def test_uaa_refresh_issues_a_token_the_api_accepts(cc: FakeCloudController) -> None:
    """POST /oauth/token returns a new bearer token and makes it the accepted one."""
    guid = cc.add_job()
    async with aiohttp.ClientSession() as http:
        status, grant = await uaa_refresh(http, cc)
        new = {"Authorization": f"bearer {grant['access_token']}"}
        assert (await get(http, cc.job_url(guid), headers=new))[0] == 200
        assert (await get(http, cc.job_url(guid), headers=AUTH))[0] == 401
    assert status == 200
    assert grant["token_type"] == "bearer"
    assert grant["expires_in"] == 600
    assert grant["refresh_token"] == "refresh-token"
    assert cc.token == grant["access_token"] != TOKEN
    assert cc.refresh_calls == 1


async def test_uaa_rejects_a_wrong_refresh_token_or_client(cc: FakeCloudController) -> None:
    """A bad refresh token is 401 invalid_token; a bad client is 401 unauthorized."""
    async with aiohttp.ClientSession() as http:
        bad_token = await uaa_refresh(http, cc, refresh_token="stale")
        bad_client = await uaa_refresh(http, cc, client=("admin", "secret"))
    assert bad_token[0] == 401
    assert bad_token[1]["error"] == "invalid_token"
    assert "error_description" in bad_token[1]
    assert bad_client[0] == 401
    assert bad_client[1]["error"] == "unauthorized"
    assert cc.token == TOKEN
    assert cc.refresh_calls == 2


async def test_token_expires_after_ttl_requests_until_refreshed() -> None:
    """token_ttl_requests=N: N authorized requests, then 401 until a refresh."""
    async with FakeCloudController(token="t0", token_ttl_requests=2) as cc:
        guid = cc.add_job()
        url = cc.job_url(guid)
        async with aiohttp.ClientSession() as http:
            t0 = {"Authorization": "bearer t0"}
            statuses = [(await get(http, url, headers=t0))[0] for _ in range(3)]
            expired = await get(http, url, headers=t0)
            _, grant = await uaa_refresh(http, cc)
            fresh = {"Authorization": f"bearer {grant['access_token']}"}
            after = [(await get(http, url, headers=fresh))[0] for _ in range(3)]
    assert statuses == [200, 200, 401]
    assert expired[1]["errors"][0]["title"] == "CF-InvalidAuthToken"
    assert after == [200, 200, 401]


# -- injected responses -------------------------------------------------------------------


async def test_injected_responses_are_served_in_order_without_advancing_the_script(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """inject() replaces the next GETs; the job's poll-count script resumes after."""
    guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
    cc.inject(guid, FakeResponse.error(503), Fault.SERVER_ERROR, FakeResponse(204))
    results = [await get(http, cc.job_url(guid)) for _ in range(5)]
    assert [r[0] for r in results] == [503, 500, 204, 200, 200]
    assert results[0][1]["errors"][0]["title"] == "CF-ServiceUnavailable"
    assert [r[1]["state"] for r in results[3:]] == ["PROCESSING", "COMPLETE"]
    assert cc.polls(guid) == 5
    assert cc.faults_injected == {Fault.SERVER_ERROR: 1}


async def test_injected_responses_bypass_auth(cc: FakeCloudController) -> None:
    """Injections act like the router: they answer even an unauthenticated GET."""
    guid = cc.add_job()
    cc.inject(guid, FakeResponse.router_502())
    async with aiohttp.ClientSession() as http:
        assert (await get(http, cc.job_url(guid)))[0] == 502


@pytest.mark.parametrize(
    ("fake", "status", "content_type", "check"),
    [
        (
            FakeResponse.router_502(),
            502,
            "text/plain",
            lambda body, headers: (
                body.startswith("502 Bad Gateway: Registered endpoint")
                and headers["X-Cf-Routererror"].startswith("endpoint_failure (")
            ),
        ),
        (
            FakeResponse.bare_502(),
            502,
            "application/json",
            lambda body, headers: set(body) == {"code", "title", "detail"},
        ),
        (
            FakeResponse.maintenance_503(),
            503,
            "text/html",
            lambda body, headers: "API down for maintenance" in body,
        ),
        (
            FakeResponse.rate_limited(retry_after=7),
            429,
            "text/plain",
            lambda body, headers: (
                headers["Retry-After"] == "7"
                and body["errors"][0]
                == {
                    "code": 10013,
                    "title": "CF-RateLimitExceeded",
                    "detail": "Rate Limit Exceeded",
                }
            ),
        ),
        (
            FakeResponse.error(403),
            403,
            "application/json",
            lambda body, headers: body["errors"][0]["title"] == "CF-NotAuthorized",
        ),
        (
            FakeResponse.error(422, 10008, "CF-UnprocessableEntity", "no"),
            422,
            "application/json",
            lambda body, headers: body["errors"][0]["detail"] == "no",
        ),
        (
            FakeResponse(201, "raw", "text/x-custom", {"X-Extra": "1"}),
            201,
            "text/x-custom",
            lambda body, headers: body == "raw" and headers["X-Extra"] == "1",
        ),
    ],
    ids=["router_502", "bare_502", "maintenance_503", "rate_limited", "403", "422", "raw"],
)
async def test_fake_response_helpers_look_like_the_real_thing(
    cc: FakeCloudController,
    http: aiohttp.ClientSession,
    fake: FakeResponse,
    status: int,
    content_type: str,
    check: Any,
) -> None:
    """Each helper has the status, content type, headers and body real deployments send."""
    guid = cc.add_job()
    cc.inject(guid, fake)
    got_status, body, headers = await get(http, cc.job_url(guid))
    assert got_status == status
    assert headers["Content-Type"].startswith(content_type)
    assert REQUEST_ID.match(headers["X-Vcap-Request-Id"])
    assert check(body, headers)


# -- transport faults ---------------------------------------------------------------------


async def test_fault_reset_drops_the_connection_before_any_response(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """RESET raises a ClientError (twice: aiohttp retries an idempotent GET once)."""
    guid = cc.add_job()
    cc.inject(guid, Fault.RESET, Fault.RESET)
    with pytest.raises(aiohttp.ClientError):
        await get(http, cc.job_url(guid))
    assert cc.polls(guid) == 2
    assert (await get(http, cc.job_url(guid)))[0] == 200


@pytest.mark.parametrize("fault", [Fault.RESET_MID_BODY, Fault.SHORT_BODY])
async def test_fault_cut_off_body_raises_payload_error(
    cc: FakeCloudController, http: aiohttp.ClientSession, fault: Fault
) -> None:
    """A 200 whose body stops short of Content-Length raises ClientPayloadError."""
    guid = cc.add_job()
    cc.inject(guid, fault)
    async with http.get(cc.job_url(guid)) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert (await get(http, cc.job_url(guid)))[1]["state"] == "PROCESSING"


async def test_fault_stall_never_answers(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """STALL holds the request open until the client times out."""
    guid = cc.add_job()
    cc.inject(guid, Fault.STALL)
    with pytest.raises(asyncio.TimeoutError):
        await get(http, cc.job_url(guid), timeout=aiohttp.ClientTimeout(total=0.1))
    await asyncio.sleep(0.02)
    assert cc.in_flight == 0  # the client's disconnect cancelled the stalled handler


async def test_closing_the_server_cuts_off_stalled_requests_promptly() -> None:
    """Leaving the context does not wait for stall_seconds."""
    cc = FakeCloudController()
    await cc.start()
    guid = cc.add_job()
    cc.inject(guid, Fault.STALL, Fault.STALL)
    async with aiohttp.ClientSession() as http:
        task = asyncio.create_task(get(http, cc.job_url(guid)))
        await asyncio.sleep(0.05)
        assert cc.in_flight == 1
        assert cc.stall_seconds == 30
        start = time.monotonic()
        await cc.aclose()
        assert time.monotonic() - start < 0.5
        with pytest.raises(aiohttp.ClientError):
            await task


@pytest.mark.parametrize(
    ("fault", "body"), [(Fault.INVALID_JSON, '{"guid":'), (Fault.WRONG_SHAPE, "[1,2]")]
)
async def test_fault_malformed_200(
    cc: FakeCloudController, http: aiohttp.ClientSession, fault: Fault, body: str
) -> None:
    """INVALID_JSON and WRONG_SHAPE are 200s whose JSON is broken or not a job."""
    guid = cc.add_job()
    cc.inject(guid, fault)
    async with http.get(cc.job_url(guid)) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.text() == body


async def test_fault_huge_body_is_streamed(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """HUGE_BODY announces 50 MiB; a client can read one MiB and hang up."""
    guid = cc.add_job()
    cc.inject(guid, Fault.HUGE_BODY)
    async with http.get(cc.job_url(guid)) as response:
        assert response.status == 200
        assert response.content_length == 50 * 1024 * 1024
        first = await response.content.readexactly(1 << 20)
        response.close()
    assert first.startswith(f'{{"guid":"{guid}"'.encode())
    assert (await get(http, cc.job_url(guid)))[0] == 200


async def test_fault_drip_sends_the_body_one_byte_at_a_time(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """DRIP sends a valid job body one byte every drip_interval seconds."""
    guid = cc.add_job()
    cc.drip_interval = 0.03
    cc.inject(guid, Fault.DRIP)
    async with http.get(cc.job_url(guid)) as response:
        start = time.monotonic()
        received = b""
        while len(received) < 5:
            received += await response.content.readany()
        elapsed = time.monotonic() - start
        response.close()
    assert received == b'{"gui'
    assert elapsed >= 0.08


async def test_fault_drip_body_is_a_complete_job(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """A patient client gets the whole, valid job body from DRIP."""
    guid = cc.add_job(states=("COMPLETE",), resource=None)
    cc.drip_interval = 0.0
    cc.inject(guid, Fault.DRIP)
    status, body, _ = await get(http, cc.job_url(guid))
    assert status == 200
    assert body["state"] == "COMPLETE"


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        (Fault.SERVER_ERROR, 500, "application/json"),
        (Fault.ROUTER_502, 502, "text/plain"),
        (Fault.MAINTENANCE_503, 503, "text/html"),
        (Fault.RATE_LIMITED_429, 429, "text/plain"),
    ],
)
async def test_fault_error_statuses(
    cc: FakeCloudController,
    http: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    content_type: str,
) -> None:
    """Status faults serve the same bodies as the FakeResponse helpers."""
    guid = cc.add_job()
    cc.inject(guid, fault)
    got, body, headers = await get(http, cc.job_url(guid))
    assert got == status
    assert headers["Content-Type"].startswith(content_type)
    if fault is Fault.SERVER_ERROR:
        assert body["errors"][0] == {
            "code": 10001,
            "title": "CF-ServerError",
            "detail": "Server error",
        }
    if fault is Fault.RATE_LIMITED_429:
        assert headers["Retry-After"] == "1"
    assert cc.faults_injected[fault] == 1


# -- random faults ------------------------------------------------------------------------


async def fault_run(seed: int) -> tuple[list[int], dict[Fault, int]]:
    faults = {Fault.SERVER_ERROR: 0.3, Fault.ROUTER_502: 0.2}
    async with FakeCloudController(faults=faults, seed=seed) as cc:
        guid = cc.add_job(states=("PROCESSING",))
        async with aiohttp.ClientSession() as http:
            statuses = [(await get(http, cc.job_url(guid)))[0] for _ in range(40)]
        return statuses, dict(cc.faults_injected)


async def test_random_faults_are_reproducible_with_a_seed() -> None:
    """The same seed injects the same faults on the same requests."""
    first, second, other = await fault_run(7), await fault_run(7), await fault_run(8)
    assert first == second
    assert first != other
    statuses, counts = first
    assert {200, 500, 502} == set(statuses)
    assert counts[Fault.SERVER_ERROR] == statuses.count(500)
    assert counts[Fault.ROUTER_502] == statuses.count(502)


async def test_job_faults_apply_to_that_job_only(http: aiohttp.ClientSession) -> None:
    """add_job(faults=...) adds faults for one job on top of the server's."""
    async with FakeCloudController(token=TOKEN) as cc:
        flaky = cc.add_job(faults={Fault.ROUTER_502: 1.0})
        steady = cc.add_job()
        flaky_statuses = [(await get(http, cc.job_url(flaky)))[0] for _ in range(3)]
        steady_statuses = [(await get(http, cc.job_url(steady)))[0] for _ in range(3)]
    assert flaky_statuses == [502] * 3
    assert steady_statuses == [200] * 3
    assert cc.faults_injected == {Fault.ROUTER_502: 3}


def test_fault_probabilities_must_add_up_to_at_most_one() -> None:
    """Probabilities over 1 in total, or outside [0, 1], are refused."""
    with pytest.raises(ValueError, match="more than 1"):
        FakeCloudController(faults={Fault.RESET: 0.6, Fault.STALL: 0.6})
    with pytest.raises(ValueError, match="probability"):
        FakeCloudController(faults={Fault.RESET: -0.1})
    cc = FakeCloudController(faults={Fault.RESET: 0.6})
    with pytest.raises(ValueError, match="more than 1"):
        cc.add_job(faults={Fault.STALL: 0.6})


# -- rate limiting ------------------------------------------------------------------------


async def test_rate_limit_headers_round_down_and_429_when_over(
    http: aiohttp.ClientSession,
) -> None:
    """Every response has X-RateLimit-*; past the limit a text/plain 429 with Retry-After."""
    start = time.time()  # the window starts now
    rate_limit = RateLimit(limit=20, window=0.5, offset=start)
    async with FakeCloudController(token=TOKEN, rate_limit=rate_limit) as cc:
        guid = cc.add_job()
        url = cc.job_url(guid)
        answers = [await get(http, url) for _ in range(21)]
        remaining = [int(headers["X-RateLimit-Remaining"]) for _, _, headers in answers]
        status, body, headers = answers[-1]
        resets = {int(h["X-RateLimit-Reset"]) for _, _, h in answers}
        (reset,) = resets
        assert reset == math.floor(start + 0.5)  # the window's end, truncated
        assert {h["X-RateLimit-Limit"] for _, _, h in answers} == {"20"}
        # 20 - n remaining, rounded down to steps of 10 % of 20 (2)
        assert remaining == [(20 - n) // 2 * 2 for n in range(1, 21)] + [0]
        assert [s for s, _, _ in answers[:20]] == [200] * 20
        assert status == 429
        assert headers["Content-Type"].startswith("text/plain")
        # Delay-seconds until the truncated reset: under a second away, so 0.
        assert headers["Retry-After"] == "0"
        assert body == {
            "errors": [
                {"code": 10013, "title": "CF-RateLimitExceeded", "detail": "Rate Limit Exceeded"}
            ]
        }
        assert cc.rate_limited_count == 1

        await asyncio.sleep(max(0.0, start + 0.52 - time.time()))
        status, _, headers = await get(http, url)
        assert status == 200
        assert headers["X-RateLimit-Remaining"] == "18"


def test_rate_limit_rejects_nonsense() -> None:
    """A limit below 1 or a non-positive window is refused."""
    with pytest.raises(ValueError, match="limit"):
        RateLimit(limit=0)
    with pytest.raises(ValueError, match="window"):
        RateLimit(window=0)


# -- bookkeeping ------------------------------------------------------------------------


async def test_peak_in_flight_counts_concurrent_requests_during_delay(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """Requests sleeping in a FakeResponse delay count as in flight."""
    guids = cc.add_jobs(5)
    for guid in guids:
        cc.inject(guid, FakeResponse(body={"ok": True}, delay=0.1))
    tasks = [asyncio.create_task(get(http, cc.job_url(g))) for g in guids]
    await asyncio.sleep(0.05)
    assert cc.in_flight == 5
    results = await asyncio.gather(*tasks)
    assert [r[1] for r in results] == [{"ok": True}] * 5
    assert cc.peak_in_flight == 5
    assert cc.in_flight == 0


async def test_latency_delays_every_job_get(http: aiohttp.ClientSession) -> None:
    """latency= makes every job GET take that long, in flight meanwhile."""
    async with FakeCloudController(token=TOKEN, latency=0.05) as cc:
        guid = cc.add_job()
        start = time.monotonic()
        await asyncio.gather(*(get(http, cc.job_url(guid)) for _ in range(4)))
        assert 0.05 <= time.monotonic() - start < 0.2
        assert cc.peak_in_flight == 4


async def test_requests_are_recorded(cc: FakeCloudController, http: aiohttp.ClientSession) -> None:
    """cc.requests keeps method, path, guid, auth header, Host and time of each request."""
    guid = cc.add_job()
    before = time.monotonic()
    await get(http, cc.job_url(guid))
    await get(http, cc.url + "/v3/apps")
    first, second = cc.requests
    host = cc.url.removeprefix("http://")
    assert first == RecordedRequest(
        "GET", f"/v3/jobs/{guid}", guid, f"bearer {TOKEN}", host, first.time
    )
    assert before <= first.time <= second.time <= time.monotonic()
    assert second.guid is None
    assert second.path == "/v3/apps"


async def test_add_jobs_makes_thousands_cheaply(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """add_jobs(n) returns n distinct uuid guids in well under a second."""
    start = time.monotonic()
    guids = cc.add_jobs(5000, states=("COMPLETE",), operation="space.apply_manifest")
    assert time.monotonic() - start < 0.5
    assert len(set(guids)) == 5000
    body = (await get(http, cc.job_url(guids[-1])))[1]
    assert body["operation"] == "space.apply_manifest"
    assert body["state"] == "COMPLETE"


def test_add_job_refuses_bad_scripts() -> None:
    """Duplicate guids, empty states or timelines and slashes are mistakes."""
    cc = FakeCloudController()
    cc.add_job("job-1")
    with pytest.raises(ValueError, match="exists"):
        cc.add_job("job-1")
    with pytest.raises(ValueError, match="invalid"):
        cc.add_job("a/b")
    with pytest.raises(ValueError, match="states"):
        cc.add_job(states=())
    with pytest.raises(ValueError, match="timeline"):
        cc.add_job(timeline=())
    with pytest.raises(TypeError):
        cc.inject("job-1", 502)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not started"):
        _ = cc.url
    assert "not started" in repr(cc)


async def test_repr_shows_live_state_but_never_the_token(cc: FakeCloudController) -> None:
    """The repr helps debugging without leaking credentials."""
    token = cc.token
    assert token
    cc.add_job()
    assert cc.url in repr(cc)
    assert "jobs=1" in repr(cc)
    assert token not in repr(cc)


# -- conformance ------------------------------------------------------------------------


async def test_served_job_bodies_conform_to_the_schema(
    cc: FakeCloudController, http: aiohttp.ClientSession
) -> None:
    """Every job body validates as served; documented ones also against the published spec."""
    as_served, published = schema_validator("job_as_served"), schema_validator("job")
    documented = ("PROCESSING", "POLLING", "COMPLETE", "FAILED")
    scripts: list[dict[str, Any]] = [
        {"states": documented},
        {"states": ("FAILED",), "errors": []},
        {"states": ("FAILED",), "errors": None},
        {"states": ("FAILED",), "errors": [{"code": 1, "title": "CF-X", "detail": "y"}]},
        {"states": ("PROCESSING", "COMPLETE"), "warnings": ("a", "b"), "resource": None},
        {"states": ("CANCELING", "COMPLETE"), "resource": "service_credential_binding"},
        {"timeline": ((0.0, "POLLING"), (0.0, "COMPLETE")), "operation": "buildpack.upload"},
        {"guid": "not-a-uuid", "states": ("COMPLETE",)},
    ]
    checked = 0
    for script in scripts:
        guid = cc.add_job(**script)
        for _ in range(len(script.get("states", ())) or 1):
            status, body, _ = await get(http, cc.job_url(guid))
            assert status == 200
            as_served.validate(body)
            strict = body["state"] in documented and body["errors"] is not None
            if strict and script.get("guid") is None:
                published.validate(body)
            checked += 1
    assert checked == 13
    with pytest.raises(jsonschema.ValidationError):
        published.validate({"guid": "x", "state": "CANCELING"})
    with pytest.raises(jsonschema.ValidationError):
        as_served.validate({"guid": "x", "state": "COMPLETE", "created_at": "yesterday"})


# -- accept: the 202 that creates a job ------------------------------------------------------


async def test_accept_answers_202_with_the_jobs_location_and_no_body() -> None:
    """DELETE of a resource: 202, `Location` of a job that exists from then on, no body."""
    async with FakeCloudController(token=TOKEN) as cc, aiohttp.ClientSession(headers=AUTH) as http:
        guid = cc.accept("DELETE", "/v3/apps/a1")
        status, _, _ = await get(http, cc.job_url(guid))
        assert status == 404  # not created before its request
        before = int(cc.server_time())
        async with http.delete(f"{cc.url}/v3/apps/a1") as resp:
            assert resp.status == 202
            assert await resp.read() == b""
            assert resp.headers["Location"] == cc.job_url(guid)
            assert "Date" in resp.headers
        status, body, _ = await get(http, cc.job_url(guid))
        assert status == 200
        assert body["operation"] == "app.delete"
        assert body["state"] == "PROCESSING"
        assert body["links"]["app"]["href"].startswith(f"{cc.url}/v3/apps/")
        created = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
        assert before <= created.timestamp() <= cc.server_time()
        async with http.delete(f"{cc.url}/v3/apps/a1") as again:
            assert again.status == 404  # served once: the app is gone


async def test_accept_names_the_operation_after_the_route() -> None:
    """POST creates, PATCH updates, DELETE deletes; an explicit operation wins."""
    async with FakeCloudController() as cc, aiohttp.ClientSession() as http:
        routes = [
            ("POST", "/v3/service_instances", None, "service_instance.create"),
            ("PATCH", "/v3/service_instances/s1", None, "service_instance.update"),
            ("DELETE", "/v3/spaces/s2", "space.apply_manifest", "space.apply_manifest"),
        ]
        for method, path, operation, expected in routes:
            guid = cc.accept(method, path, operation=operation)
            async with http.request(method, cc.url + path) as resp:
                assert resp.status == 202
            _, body, _ = await get(http, cc.job_url(guid))
            assert body["operation"] == expected


async def test_accepted_routes_answer_in_order() -> None:
    """Two scripts on one route: the first request gets the first job, the second the next."""
    async with FakeCloudController() as cc, aiohttp.ClientSession() as http:
        first = cc.accept("POST", "/v3/service_instances", states=("FAILED",))
        second = cc.accept("POST", "/v3/service_instances")
        locations = []
        for _ in range(2):
            async with http.post(f"{cc.url}/v3/service_instances") as resp:
                locations.append(resp.headers["Location"])
        assert locations == [cc.job_url(first), cc.job_url(second)]


async def test_an_accepted_jobs_timeline_counts_from_its_202() -> None:
    """A timeline runs from the 202, polled or not: the first GET after it sees the end."""
    async with FakeCloudController() as cc, aiohttp.ClientSession() as http:
        guid = cc.accept("DELETE", "/v3/apps/a1", timeline=[(0, "PROCESSING"), (0.05, "COMPLETE")])
        async with http.delete(f"{cc.url}/v3/apps/a1"):
            pass
        await asyncio.sleep(0.1)
        assert cc.finished_at(guid) is not None
        _, body, _ = await get(http, cc.job_url(guid))
        assert body["state"] == "COMPLETE"
        assert cc.polls(guid) == 1


async def test_accepted_requests_are_authenticated_and_rate_limited() -> None:
    """The controller's checks come before any endpoint: 401 without the token, 429 over."""
    async with (
        FakeCloudController(token=TOKEN, rate_limit=RateLimit(1, 60.0)) as cc,
        aiohttp.ClientSession() as http,
    ):
        guid = cc.accept("DELETE", "/v3/apps/a1")
        async with http.delete(f"{cc.url}/v3/apps/a1") as resp:
            assert resp.status == 401
        async with http.delete(f"{cc.url}/v3/apps/a1", headers=AUTH) as resp:
            assert resp.status == 202
            assert resp.headers["X-RateLimit-Limit"] == "1"
        status, _, _ = await get(http, cc.job_url(guid), headers=AUTH)
        assert status == 429


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v3/apps/a1"),
        ("DELETE", "/v2/apps/a1"),
        ("DELETE", "/v3/jobs/j1"),
        ("PUT", "apps"),
    ],
)
async def test_accept_refuses_what_no_controller_answers_202(method: str, path: str) -> None:
    """A GET, a path outside /v3 or the fake's own jobs route: ValueError at once."""
    async with FakeCloudController() as cc:
        with pytest.raises(ValueError, match=r"202|/v3"):
            cc.accept(method, path)
