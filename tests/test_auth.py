"""Credentials: the cf CLI login, UAA refresh, where the token may go, and secrets kept hidden."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pickle
import shutil
import ssl
import subprocess
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import jobwatch
from jobwatch import RetryPolicy, UAATokenProvider
from jobwatch import _auth as auth_module
from jobwatch._auth import Token, jwt_expiry
from jobwatch._cfconfig import read_cf_config
from jobwatch._uaa import uaa_token_url
from jobwatch.testing import FakeCloudController, FakeResponse

# Test mode: clients keep the default policies and sleep through none of their intervals.
pytestmark = pytest.mark.usefixtures("testing_mode")

# Distinctive values, so a leak anywhere is found by a plain substring search.
EXPIRED = "expired-access-token-0f1e2d3c4b5a69788796"
LIVE = "live-access-token-7a6b5c4d3e2f1a0b9c8d"
REFRESH = "refresh-token-secret-9e8d7c6b5a4f3e2d1c0b"
CLIENT_SECRET = "client-secret-13579bdf2468ace0"

UAAAnswer = tuple[int, dict[str, Any] | str, dict[str, str]]


def write_cf_config(home: Path, **fields: Any) -> Path:
    """Write `~/.cf/config.json` in the cf CLI's own format (v6/v7/v8 keys)."""
    config: dict[str, Any] = {
        "ConfigVersion": 3,
        "Target": "https://api.example.org",
        "APIVersion": "3.180.0",
        "AuthorizationEndpoint": "https://login.example.org",
        "DopplerEndPoint": "wss://doppler.example.org:443",
        "UaaEndpoint": "https://uaa.example.org",
        "RoutingAPIEndpoint": "https://api.example.org/routing",
        "AccessToken": f"bearer {EXPIRED}",
        "SSHOAuthClient": "ssh-proxy",
        "UAAOAuthClient": "cf",
        "UAAOAuthClientSecret": "",
        "UAAGrantType": "",
        "RefreshToken": REFRESH,
        "OrganizationFields": {
            "GUID": "8f4c3e44-0b7a-4c3b-9f49-2c8f1c7c5f6e",
            "Name": "my-org",
            "QuotaDefinition": {"name": "", "memory_limit": 0, "total_routes": 0},
        },
        "SpaceFields": {
            "GUID": "0c0d4a66-8c1f-4b0e-a9b5-7b6a4f0e2d11",
            "Name": "dev",
            "AllowSSH": True,
        },
        "SSLDisabled": False,
        "AsyncTimeout": 0,
        "Trace": "",
        "ColorEnabled": "",
        "Locale": "",
        "PluginRepos": [{"Name": "CF-Community", "URL": "https://plugins.cloudfoundry.org"}],
        "MinCLIVersion": "6.23.0",
        "MinRecommendedCLIVersion": "6.23.0",
        "CFOnK8s": {"Enabled": False, "AuthInfo": ""},
    }
    for key, value in fields.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path = home / ".cf" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def cf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary CF_HOME; HOME points elsewhere so only CF_HOME can be read."""
    home = tmp_path / "cf-home"
    home.mkdir()
    monkeypatch.setenv("CF_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "not-home"))
    return home


@asynccontextmanager
async def serve(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve an aiohttp app on a loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}"
    finally:
        await runner.cleanup()


class UAAStub:
    """A UAA token endpoint with scripted answers, for what the fake UAA does not do."""

    def __init__(
        self, cc: FakeCloudController, answer: Callable[[int, dict[str, str]], UAAAnswer]
    ) -> None:
        self.cc = cc
        self.answer = answer
        self.forms: list[dict[str, str]] = []
        self.authorizations: list[str | None] = []

    async def token(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.forms.append(form)
        self.authorizations.append(request.headers.get("Authorization"))
        status, body, headers = self.answer(len(self.forms), form)
        if status == 200 and isinstance(body, dict) and "access_token" in body:
            self.cc.token = body["access_token"]  # the API now accepts the new token
        if isinstance(body, dict):
            return web.json_response(body, status=status, headers=headers)
        return web.Response(status=status, text=body, headers=headers)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_post("/oauth/token", self.token)
        async with serve(app) as url:
            yield url


def exposed(exc: BaseException) -> str:
    """Everything an exception shows: text, attributes, pickle, and its whole chain."""
    parts: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        parts += [str(item), repr(item), repr(item.args), repr(getattr(item, "__dict__", {}))]
        parts += traceback.format_exception(item)
        parts.append(pickle.dumps(item).decode("latin-1"))
        stack += [item.__cause__, item.__context__]
    return "\n".join(parts)


def bearer_tokens(cc: FakeCloudController) -> set[str]:
    """Every bearer token that was ever sent to the fake."""
    return {
        r.authorization.split()[-1]
        for r in cc.requests
        if r.authorization and r.authorization.lower().startswith("bearer ")
    }


# -- the cf CLI login -----------------------------------------------------------------------


async def test_from_cf_config_uses_the_whole_login_and_never_writes_the_file(
    cf_home: Path,
) -> None:
    """Target, tokens, UAA and OAuth client come from CF_HOME; the refresh stays in memory."""
    async with FakeCloudController(
        token=LIVE, refresh_token=REFRESH, uaa_client=("my-cli", CLIENT_SECRET)
    ) as cc:
        guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
        path = write_cf_config(
            cf_home,
            Target=cc.url,
            UaaEndpoint=cc.uaa_url,
            UAAOAuthClient="my-cli",
            UAAOAuthClientSecret=CLIENT_SECRET,
        )
        before, mtime = path.read_bytes(), path.stat().st_mtime_ns
        async with jobwatch.Client.from_cf_config() as cf:
            job = await cf.wait_for_job(guid, timeout=5)
        assert job.state == jobwatch.JobState.COMPLETE
        assert cc.refresh_calls == 1
        token_posts = [r for r in cc.requests if r.path == "/oauth/token"]
        assert len(token_posts) == 1
        basic = token_posts[0].authorization or ""
        assert base64.b64decode(basic.split()[1]).decode() == f"my-cli:{CLIENT_SECRET}"
        gets = [r.authorization for r in cc.requests if r.guid == guid]
        assert gets[0] == f"bearer {EXPIRED}"
        assert gets[-1] == f"bearer {cc.token}" != gets[0]
        assert path.read_bytes() == before
        assert path.stat().st_mtime_ns == mtime


async def test_module_functions_use_the_cf_cli_login(cf_home: Path) -> None:
    """`jobwatch.wait_for_job` without a client reads CF_HOME and refreshes the same way."""
    async with FakeCloudController(token=LIVE, refresh_token=REFRESH) as cc:
        guid = cc.add_job(states=("COMPLETE",))
        write_cf_config(cf_home, Target=cc.url, UaaEndpoint=cc.uaa_url)
        job = await jobwatch.wait_for_job(guid, timeout=5)
        assert job.guid == guid
        assert cc.refresh_calls == 1


async def test_from_cf_config_without_refresh_token_sends_the_access_token(
    cf_home: Path,
) -> None:
    """A login with no refresh token still works while its access token does."""
    async with FakeCloudController(token=LIVE) as cc:
        guid = cc.add_job(states=("COMPLETE",))
        write_cf_config(cf_home, Target=cc.url, AccessToken=f"bearer {LIVE}", RefreshToken="")
        async with jobwatch.Client.from_cf_config() as cf:
            await cf.wait_for_job(guid, timeout=5)
        cc.token = "rotated-token-value-000"
        async with jobwatch.Client.from_cf_config() as cf:
            with pytest.raises(jobwatch.Unauthorized):
                await cf.wait_for_job(guid, timeout=5)
        assert cc.refresh_calls == 0


@pytest.mark.parametrize(
    ("fields", "command"),
    [
        ({"Target": ""}, "cf api"),
        ({"Target": None}, "cf api"),
        ({"AccessToken": ""}, "cf login"),
        ({"AccessToken": None}, "cf login"),
    ],
)
def test_incomplete_login_says_which_cf_command_to_run(
    cf_home: Path, fields: dict[str, Any], command: str
) -> None:
    """A config without a target or token raises ConfigError naming the fix."""
    write_cf_config(cf_home, **fields)
    with pytest.raises(jobwatch.ConfigError, match=command):
        jobwatch.Client.from_cf_config()


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2]", "\udcff"], ids=["json", "list", "bytes"]
)
def test_unreadable_config_at_an_explicit_path_says_to_run_cf_login(
    tmp_path: Path, content: str
) -> None:
    """A broken file given by path is a ConfigError naming the file and the fix."""
    path = tmp_path / "config.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(jobwatch.ConfigError, match="cf login") as caught:
        jobwatch.Client.from_cf_config(path)
    assert str(path) in str(caught.value)


def test_token_must_be_a_string_or_a_callable() -> None:
    """Anything else is a programming error, caught when the client is built."""
    with pytest.raises(TypeError, match="token"):
        jobwatch.Client("https://api.example.org", token=42)  # type: ignore[arg-type]


def test_missing_login_says_to_run_cf_login(cf_home: Path) -> None:
    """No config file at all: ConfigError telling to log in."""
    with pytest.raises(jobwatch.ConfigError, match="cf login"):
        jobwatch.Client.from_cf_config()


async def test_authorization_endpoint_is_used_when_there_is_no_uaa_endpoint(
    cf_home: Path,
) -> None:
    """Configs without UaaEndpoint refresh at the AuthorizationEndpoint."""
    async with FakeCloudController(token=LIVE, refresh_token=REFRESH) as cc:
        guid = cc.add_job(states=("COMPLETE",))
        write_cf_config(cf_home, Target=cc.url, UaaEndpoint=None, AuthorizationEndpoint=cc.uaa_url)
        async with jobwatch.Client.from_cf_config() as cf:
            await cf.wait_for_job(guid, timeout=5)
        assert cc.refresh_calls == 1


# -- refresh ----------------------------------------------------------------------------------


async def test_expired_token_is_refreshed_in_the_middle_of_a_wait() -> None:
    """The token expires after two polls; the wait goes on with a new one, unnoticed."""
    async with FakeCloudController(token=LIVE, token_ttl_requests=2) as cc:
        guid = cc.add_job(states=("PROCESSING", "PROCESSING", "COMPLETE"))
        provider = UAATokenProvider(cc.uaa_url, refresh_token=cc.refresh_token, access_token=LIVE)
        seen: list[str] = []
        async with jobwatch.Client(cc.url, token=provider) as cf:
            job = await cf.wait_for_job(
                guid, timeout=5, on_update=lambda job: seen.append(job.state)
            )
            stats = cf.stats
        assert job.state == "COMPLETE"
        assert seen == ["PROCESSING", "COMPLETE"]
        assert cc.refresh_calls == 1
        assert stats.by_status == {200: 3, 401: 1}
        auths = [r.authorization for r in cc.requests if r.guid == guid]
        assert auths == [f"bearer {LIVE}"] * 3 + [f"bearer {cc.token}"]


@pytest.mark.parametrize("access_token", [EXPIRED, None], ids=["expired", "absent"])
async def test_a_thousand_waits_over_an_expired_token_refresh_once(
    access_token: str | None,
) -> None:
    """1,000 concurrent waits that all need a new token cause exactly one refresh request."""
    async with FakeCloudController(token=LIVE) as cc:
        guids = cc.add_jobs(1000, states=("PROCESSING", "COMPLETE"))
        provider = UAATokenProvider(
            cc.uaa_url, refresh_token=cc.refresh_token, access_token=access_token
        )
        async with jobwatch.Client(cc.url, token=provider) as cf:
            outcomes = await asyncio.gather(*(cf.wait_for_job(g, timeout=20) for g in guids))
            stats = cf.stats
        assert len(outcomes) == 1000
        assert cc.refresh_calls == 1
        assert stats.by_status[200] == 2000
        # Only the requests already in flight with the old token saw a 401.
        assert stats.by_status.get(401, 0) <= cf.max_in_flight


@pytest.mark.parametrize(
    ("fake", "title", "text"),
    [
        ({"refresh_token": "the-uaa-knows-another-one"}, "UAA-invalid_token", "Invalid refresh"),
        ({"uaa_client": ("cf", "a-secret-we-do-not-have")}, "UAA-unauthorized", "Bad credentials"),
    ],
    ids=["bad-refresh-token", "bad-client"],
)
async def test_refused_refresh_is_one_request_and_a_clear_unauthorized(
    fake: dict[str, Any], title: str, text: str
) -> None:
    """All waits fail with the UAA's error text after a single refresh request."""
    async with FakeCloudController(token=LIVE, **fake) as cc:
        guids = cc.add_jobs(300)
        provider = UAATokenProvider(cc.uaa_url, refresh_token=REFRESH, access_token=EXPIRED)
        async with jobwatch.Client(cc.url, token=provider) as cf:
            outcomes = await cf.wait_for_jobs(guids, timeout=5)
            with pytest.raises(jobwatch.Unauthorized) as caught:
                await cf.get_job(guids[0], timeout=5)
        assert cc.refresh_calls == 1  # the refusal is remembered, not asked again
        errors = [o.error for o in outcomes.values()]
        assert all(isinstance(e, jobwatch.Unauthorized) for e in errors)
        error = caught.value
        assert error.status == 401
        assert [e.title for e in error.errors] == ["CF-InvalidAuthToken", title]
        assert text in error.errors[1].detail
        assert title in str(error)
        assert guids[0] in str(error)
        assert REFRESH not in exposed(error)


async def test_uaa_error_text_that_echoes_a_token_is_redacted() -> None:
    """The UAA has echoed refresh tokens in error_description; jobwatch never repeats them."""
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJhYmMifQ.c2lnbmF0dXJl"

    def answer(n: int, form: dict[str, str]) -> UAAAnswer:
        detail = f"Invalid refresh token (expired): {form['refresh_token']} and {jwt}"
        return 401, {"error": "invalid_token", "error_description": detail}, {}

    async with FakeCloudController(token=LIVE) as cc:
        guid = cc.add_job()
        stub = UAAStub(cc, answer)
        async with stub.running() as uaa:
            provider = UAATokenProvider(uaa, refresh_token=REFRESH, access_token=EXPIRED)
            async with jobwatch.Client(cc.url, token=provider) as cf:
                with pytest.raises(jobwatch.Unauthorized) as caught:
                    await cf.wait_for_job(guid, timeout=5)
    shown = exposed(caught.value)
    assert "Invalid refresh token (expired): ***" in shown
    assert REFRESH not in shown
    assert jwt not in shown
    assert stub.forms == [{"grant_type": "refresh_token", "refresh_token": REFRESH}]
    assert stub.authorizations == ["Basic " + base64.b64encode(b"cf:").decode()]


async def test_uaa_outage_is_transient_and_the_refresh_is_tried_again() -> None:
    """A 503 from the UAA is retried with the poll's backoff, then the wait goes on."""

    def answer(n: int, form: dict[str, str]) -> UAAAnswer:
        if n == 1:
            return 503, "UAA down for maintenance", {"Content-Type": "text/plain"}
        return 200, {"access_token": LIVE, "token_type": "bearer", "expires_in": 600}, {}

    async with FakeCloudController(token="not-yet-issued-token") as cc:
        guid = cc.add_job(states=("COMPLETE",))
        stub = UAAStub(cc, answer)
        async with stub.running() as uaa:
            provider = UAATokenProvider(uaa, refresh_token=REFRESH, access_token=EXPIRED)
            async with jobwatch.Client(cc.url, token=provider) as cf:
                job = await cf.wait_for_job(guid, timeout=5)
                retries = cf.stats.retries
    assert job.state == "COMPLETE"
    assert len(stub.forms) == 2
    assert retries == 1


async def test_uaa_outage_past_the_retries_is_a_transport_error() -> None:
    """When the UAA stays down the wait ends with a TransportError naming the refresh."""

    def answer(n: int, form: dict[str, str]) -> UAAAnswer:
        return 502, "502 Bad Gateway", {"Content-Type": "text/plain"}

    async with FakeCloudController(token=LIVE) as cc:
        guid = cc.add_job()
        stub = UAAStub(cc, answer)
        async with stub.running() as uaa:
            provider = UAATokenProvider(uaa, refresh_token=REFRESH, access_token=EXPIRED)
            retry = RetryPolicy(attempts=3)
            async with jobwatch.Client(cc.url, token=provider, retry=retry) as cf:
                with pytest.raises(jobwatch.TransportError, match="token refresh failed") as c:
                    await cf.wait_for_job(guid, timeout=5)
    assert len(stub.forms) == 3
    assert c.value.transient
    assert c.value.url == cc.job_url(guid)


async def test_a_rotated_refresh_token_is_used_for_the_next_refresh() -> None:
    """When the UAA issues a new refresh token, the next grant sends it (in memory only)."""

    def answer(n: int, form: dict[str, str]) -> UAAAnswer:
        body = {"access_token": f"access-{n}-{LIVE}", "refresh_token": f"{REFRESH}-{n}"}
        return 200, body, {}

    async with FakeCloudController(token=LIVE, token_ttl_requests=1) as cc:
        guid = cc.add_job(states=("PROCESSING", "PROCESSING", "COMPLETE"))
        stub = UAAStub(cc, answer)
        async with stub.running() as uaa:
            provider = UAATokenProvider(uaa, refresh_token=REFRESH, access_token=LIVE)
            async with jobwatch.Client(cc.url, token=provider) as cf:
                await cf.wait_for_job(guid, timeout=5)
    sent = [form["refresh_token"] for form in stub.forms]
    assert sent == [REFRESH, f"{REFRESH}-1"]


@pytest.mark.parametrize(
    "answer",
    [
        (200, {"token_type": "bearer"}, {}),
        (200, "<html>login page</html>", {"Content-Type": "text/html"}),
        (404, "not here", {"Content-Type": "text/plain"}),
    ],
    ids=["no-access-token", "not-json", "404"],
)
async def test_a_token_endpoint_answer_without_a_token_is_unauthorized(
    answer: UAAAnswer,
) -> None:
    """A UAA that answers but gives no token fails the wait with Unauthorized."""
    async with FakeCloudController(token=LIVE) as cc:
        guid = cc.add_job()
        stub = UAAStub(cc, lambda n, form: answer)
        async with stub.running() as uaa:
            provider = UAATokenProvider(uaa, refresh_token=REFRESH, access_token=EXPIRED)
            async with jobwatch.Client(cc.url, token=provider) as cf:
                with pytest.raises(jobwatch.Unauthorized, match="UAA") as caught:
                    await cf.wait_for_job(guid, timeout=5)
    assert len(stub.forms) == 1
    assert caught.value.errors[-1].title == "UAA"


@pytest.mark.parametrize("is_async", [True, False], ids=["async-refresh", "sync-refresh"])
async def test_provider_object_with_refresh_is_asked_once_per_401(is_async: bool) -> None:
    """Any object with `__call__` and `refresh()` works: 100 waits hit 401, one refresh."""

    class Vault:
        def __init__(self) -> None:
            self.value = EXPIRED
            self.refreshes = 0

        def __call__(self) -> str:
            return self.value

        def refresh(self) -> Awaitable[None] | None:
            self.refreshes += 1
            self.value = LIVE
            return asyncio.sleep(0.01) if is_async else None  # others pile up on the 401

    async with FakeCloudController(token=LIVE) as cc:
        guids = cc.add_jobs(100, states=("COMPLETE",))
        vault = Vault()
        async with jobwatch.Client(cc.url, token=vault) as cf:
            outcomes = await cf.wait_for_jobs(guids, timeout=5)
        assert all(o.ok for o in outcomes.values())
        assert vault.refreshes == 1


async def test_async_callable_is_asked_again_after_a_401() -> None:
    """A plain async callable (a service's own grant) is simply called again on 401."""
    calls: list[str] = []

    async def client_credentials() -> str:
        calls.append("grant")
        return LIVE if len(calls) > 1 else EXPIRED

    async with FakeCloudController(token=LIVE) as cc:
        guid = cc.add_job(states=("COMPLETE",))
        async with jobwatch.Client(cc.url, token=client_credentials) as cf:
            await cf.wait_for_job(guid, timeout=5)
    assert calls == ["grant", "grant"]


async def test_slow_provider_is_asked_once_for_many_first_requests() -> None:
    """Concurrent first requests share one call of an async provider (e.g. a network grant)."""
    calls: list[str] = []

    async def slow_grant() -> str:
        calls.append("grant")
        await asyncio.sleep(0.01)
        return LIVE

    async with FakeCloudController(token=LIVE) as cc:
        guids = cc.add_jobs(200, states=("COMPLETE",))
        async with jobwatch.Client(cc.url, token=slow_grant) as cf:
            outcomes = await cf.wait_for_jobs(guids, timeout=5)
    assert all(o.ok for o in outcomes.values())
    assert calls == ["grant"]


async def test_provider_returning_nothing_after_refresh_is_unauthorized() -> None:
    """A provider that has no token left ends the wait with Unauthorized, saying why."""
    answers = iter([EXPIRED, ""])

    async with FakeCloudController(token=LIVE) as cc:
        guid = cc.add_job()
        async with jobwatch.Client(cc.url, token=lambda: next(answers)) as cf:
            with pytest.raises(jobwatch.Unauthorized, match="returned no token") as caught:
                await cf.wait_for_job(guid, timeout=5)
    assert caught.value.errors[-1].title == "TokenRefreshFailed"


async def test_unattached_provider_says_to_give_it_to_a_client() -> None:
    """Used on its own, a UAATokenProvider has no session to send the grant with."""
    provider = UAATokenProvider("https://uaa.example.org", refresh_token=REFRESH)
    with pytest.raises(RuntimeError, match="Client"):
        await provider()


# -- refresh ahead of expiry, shielded from cancelled waiters ---------------------------------


def jwt(expires_in: float | None, **claims: Any) -> str:
    """An unsigned JWT (`alg: none`) whose `exp` is `expires_in` seconds from now."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    payload = {"jti": uuid.uuid4().hex, **claims}
    if expires_in is not None:
        payload["exp"] = int(time.time() + expires_in)
    return f"{part({'alg': 'none'})}.{part(payload)}."


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (in millisecond steps, 2 s at most) until `condition()` holds."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def refresh_tasks() -> list[asyncio.Task[Any]]:
    """The token refreshes still running on the loop."""
    return [
        t for t in asyncio.all_tasks() if t.get_name() == "jobwatch-token-refresh" and not t.done()
    ]


class GatedRefresh:
    """A token provider whose refresh waits for `go`; the new token is `fresh-<n>`."""

    def __init__(self, cc: FakeCloudController, token: str) -> None:
        self.cc = cc
        self.token = token
        self.refreshing = asyncio.Event()
        self.go = asyncio.Event()
        self.refreshes = 0
        self.completed = 0

    def __call__(self) -> str:
        return f"bearer {self.token}"

    async def refresh(self) -> None:
        self.refreshes += 1
        self.refreshing.set()
        await self.go.wait()
        self.token = self.cc.token = f"fresh-{self.refreshes}-{LIVE}"
        self.completed += 1


class FailingRefresh:
    """A token provider whose refresh raises: a UAA it cannot reach."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.refreshes = 0

    def __call__(self) -> str:
        return f"bearer {self.token}"

    def refresh(self) -> None:
        self.refreshes += 1
        raise ConnectionRefusedError("connect call failed ('10.0.0.9', 443)")


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": 1_700_000_000}, 1_700_000_000.0),
        ({"exp": 1_700_000_000.5}, 1_700_000_000.5),
        ({}, None),
        ({"exp": "1700000000"}, None),
        ({"exp": True}, None),
    ],
    ids=["int", "float", "no-exp", "string-exp", "bool-exp"],
)
def test_jwt_expiry_reads_exp_without_checking_the_signature(
    claims: dict[str, Any], expected: float | None
) -> None:
    """`exp` is read from the payload of a `bearer <JWT>`; anything unreadable is None."""
    header = jwt(None, **claims)
    assert jwt_expiry(f"bearer {header}") == expected
    assert jwt_expiry(f"Bearer {header}x") == expected  # a signature is not checked


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        f"bearer {LIVE}",
        "bearer eyJhbGciOiJub25lIn0.bm90IGpzb24.",
        "bearer eyJhbGciOiJub25lIn0.W10.",
        "bearer eyJhbGciOiJub25lIn0.eyJleHAiOiBJbmZpbml0eX0.",
        "bearer eyJhbGciOiJub25lIn0.e30",
        "bearer eyJh.%%%.x",
        "basic eyJhbGciOiJub25lIn0.eyJleHAiOiAxfQ.",
    ],
    ids=[
        "none",
        "empty",
        "opaque",
        "not-json",
        "list",
        "infinity",
        "two-parts",
        "bad-b64",
        "basic",
    ],
)
def test_jwt_expiry_of_what_is_not_a_readable_jwt_is_none(header: str | None) -> None:
    """Opaque tokens, broken payloads and other schemes have no expiry to act on."""
    assert jwt_expiry(header) is None


@pytest.mark.parametrize("expires_in", [30, -5], ids=["in-30s", "expired"])
async def test_token_near_its_expiry_is_refreshed_before_the_first_request(
    expires_in: float,
) -> None:
    """200 concurrent get_jobs over a JWT with < 60 s left: one refresh first, no 401 at all."""
    soon = jwt(expires_in)
    async with FakeCloudController(token=soon) as cc:
        guids = cc.add_jobs(200, states=("COMPLETE",))
        provider = UAATokenProvider(cc.uaa_url, refresh_token=cc.refresh_token, access_token=soon)
        async with jobwatch.Client(cc.url, token=provider) as cf:
            jobs = await asyncio.gather(*(cf.get_job(g, timeout=5) for g in guids))
            stats = cf.stats
        assert [j.guid for j in jobs] == guids
        assert cc.refresh_calls == 1
        assert stats.by_status == {200: 200}
        assert {r.authorization for r in cc.requests if r.guid} == {f"bearer {cc.token}"}
        assert cc.token != soon


@pytest.mark.parametrize(
    "token",
    [jwt(600), LIVE, jwt(None), "eyJhbGciOiJub25lIn0.bm90IGpzb24."],
    ids=["jwt-10-min", "opaque", "jwt-without-exp", "jwt-unreadable"],
)
async def test_token_without_a_near_expiry_is_not_refreshed_ahead(token: str) -> None:
    """A JWT with 10 min left, or a token with no readable `exp`, is sent as it is."""
    async with FakeCloudController(token=token) as cc:
        guids = cc.add_jobs(50, states=("COMPLETE",))
        provider = UAATokenProvider(cc.uaa_url, refresh_token=cc.refresh_token, access_token=token)
        async with jobwatch.Client(cc.url, token=provider) as cf:
            await asyncio.gather(*(cf.get_job(g, timeout=5) for g in guids))
            await cf.get_job(guids[0], timeout=5)
        assert cc.refresh_calls == 0
        assert {r.authorization for r in cc.requests} == {f"bearer {token}"}


async def test_refreshed_token_near_its_end_is_not_refreshed_again_at_once() -> None:
    """A UAA issuing 30-second tokens draws one refresh, not one per request."""
    soon = jwt(30)

    def answer(n: int, form: dict[str, str]) -> UAAAnswer:
        return 200, {"access_token": jwt(30), "token_type": "bearer"}, {}

    async with FakeCloudController(token=soon) as cc:
        guid = cc.add_job(states=("COMPLETE",))
        stub = UAAStub(cc, answer)
        async with stub.running() as uaa:
            provider = UAATokenProvider(uaa, refresh_token=REFRESH, access_token=soon)
            async with jobwatch.Client(cc.url, token=provider) as cf:
                for _ in range(20):
                    await cf.get_job(guid, timeout=5)
                stats = cf.stats
    assert len(stub.forms) == 1
    assert stats.by_status == {200: 20}


async def test_refused_ahead_refresh_sends_the_old_token_until_the_api_refuses_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The UAA refuses: requests go on with the still-valid token; its 401 asks no UAA again."""
    caplog.set_level(logging.INFO, logger="jobwatch")
    soon = jwt(30)
    async with FakeCloudController(token=soon, refresh_token="the-uaa-knows-another-one") as cc:
        guids = cc.add_jobs(100, states=("COMPLETE",))
        provider = UAATokenProvider(cc.uaa_url, refresh_token=REFRESH, access_token=soon)
        async with jobwatch.Client(cc.url, token=provider) as cf:
            jobs = await asyncio.gather(*(cf.get_job(g, timeout=5) for g in guids))
            await cf.get_job(guids[0], timeout=5)  # a refusal is not asked again
            assert cc.refresh_calls == 1
            cc.token = "a-token-the-client-never-got"  # now the old one is really dead
            with pytest.raises(jobwatch.Unauthorized) as caught:
                await cf.get_job(guids[0], timeout=5)
        assert len(jobs) == 100
        assert cc.refresh_calls == 1
        assert [e.title for e in caught.value.errors] == [
            "CF-InvalidAuthToken",
            "UAA-invalid_token",
        ]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "ahead" in r.message]
    assert len(warned) == 1
    logged = log_text(caplog)
    for secret in (soon, REFRESH):
        assert secret not in logged
        assert secret not in exposed(caught.value)


class Clock:
    """Stands in for the `time` module in `jobwatch._auth`: real time plus `offset`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


@pytest.mark.parametrize("uaa", ["provider-raises", "uaa-503"])
async def test_ahead_refresh_that_fails_lets_the_requests_through_with_the_old_token(
    uaa: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The UAA is down: one attempt for 100 requests, which all pass; tried again 5 s on."""
    caplog.set_level(logging.INFO, logger="jobwatch")
    clock = Clock()
    monkeypatch.setattr(auth_module, "time", clock)
    soon = jwt(30)

    def answer(n: int, form: dict[str, str]) -> UAAAnswer:
        return 503, "UAA down for maintenance", {"Content-Type": "text/plain"}

    async with FakeCloudController(token=soon) as cc:
        guids = cc.add_jobs(100, states=("COMPLETE",))
        stub = UAAStub(cc, answer)
        async with stub.running() as url:
            failing = FailingRefresh(soon)
            token: Token = failing
            if uaa == "uaa-503":
                token = UAATokenProvider(url, refresh_token=REFRESH, access_token=soon)

            def attempts() -> int:
                return failing.refreshes if uaa == "provider-raises" else len(stub.forms)

            async with jobwatch.Client(cc.url, token=token) as cf:
                jobs = await asyncio.gather(*(cf.get_job(g, timeout=5) for g in guids))
                clock.offset = 4.0
                await asyncio.gather(*(cf.get_job(g, timeout=5) for g in guids[:10]))
                assert attempts() == 1  # no storm while the UAA stays down
                clock.offset = 6.0
                await cf.get_job(guids[0], timeout=5)
                assert attempts() == 2
                stats = cf.stats
        assert len(jobs) == 100
        assert stats.by_status == {200: 111}
        assert {r.authorization for r in cc.requests if r.guid} == {f"bearer {soon}"}
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "ahead" in r.message]
    assert len(warned) == 2
    assert soon not in log_text(caplog)


@pytest.mark.parametrize("waiters", [1, 50])
@pytest.mark.parametrize("why", ["ahead", "after-401"])
async def test_cancelled_waiters_do_not_cancel_the_refresh_nor_lose_its_token(
    why: str, waiters: int
) -> None:
    """Every waiter cancelled mid-refresh gets CancelledError; the refresh ends and is used."""
    sent = jwt(30) if why == "ahead" else EXPIRED
    async with FakeCloudController(token=sent if why == "ahead" else LIVE) as cc:
        guids = cc.add_jobs(waiters, states=("COMPLETE",))
        provider = GatedRefresh(cc, sent)
        async with jobwatch.Client(cc.url, token=provider) as cf:
            tasks = [asyncio.ensure_future(cf.get_job(g, timeout=10)) for g in guids]
            await asyncio.wait_for(provider.refreshing.wait(), 2)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(task, 1)  # promptly, not when the refresh ends
            assert cf.stats.waiting == 0
            assert len(refresh_tasks()) == 1  # still going, for nobody in particular
            assert provider.completed == 0

            provider.go.set()
            await eventually(lambda: provider.completed == 1 and not refresh_tasks())
            before = len(cc.requests)
            job = await cf.get_job(guids[0], timeout=5)
            stats = cf.stats
        assert job.guid == guids[0]
        assert (provider.refreshes, provider.completed) == (1, 1)
        assert [r.authorization for r in cc.requests[before:]] == [f"bearer {provider.token}"]
        assert stats.by_status[200] == 1
        assert (401 in stats.by_status) == (why == "after-401")


@pytest.mark.parametrize("waiting", [True, False], ids=["waiter-left", "no-waiter-left"])
async def test_closing_the_client_during_a_refresh_leaves_no_task(waiting: bool) -> None:
    """aclose() ends a refresh still running; a waiter gets ClientClosed; nothing is left."""
    before = asyncio.all_tasks()
    soon = jwt(30)
    async with FakeCloudController(token=soon) as cc:
        guid = cc.add_job(states=("COMPLETE",))
        provider = GatedRefresh(cc, soon)
        cf = jobwatch.Client(cc.url, token=provider)
        task = asyncio.ensure_future(cf.get_job(guid, timeout=10))
        await asyncio.wait_for(provider.refreshing.wait(), 2)
        if not waiting:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert len(refresh_tasks()) == 1
        await asyncio.wait_for(cf.aclose(), 1)
        if waiting:
            with pytest.raises(jobwatch.ClientClosed):
                await asyncio.wait_for(task, 1)
        assert refresh_tasks() == []
        left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
        assert left == []
        assert provider.completed == 0
        assert cc.refresh_calls == 0
        assert [r.authorization for r in cc.requests] == []


# -- where requests may go --------------------------------------------------------------------


async def test_redirect_to_another_origin_does_not_carry_the_token() -> None:
    """A 302 to a second server is not followed: that server sees no request at all."""
    async with (
        FakeCloudController(token=LIVE) as cc,
        FakeCloudController() as other,
    ):
        guid = cc.add_job()
        other.add_job(guid)
        cc.inject(guid, FakeResponse(status=302, headers={"Location": other.job_url(guid)}))
        async with jobwatch.Client(cc.url, token=LIVE) as cf:
            with pytest.raises(jobwatch.ApiError) as caught:
                await cf.wait_for_job(guid, timeout=5)
            with pytest.raises(jobwatch.InvalidJobReference):
                await cf.wait_for_job(other.job_url(guid), timeout=5)
        assert caught.value.status == 302
        assert [r.authorization for r in cc.requests] == [f"bearer {LIVE}"]
        assert other.requests == []


async def test_uaa_redirect_to_another_origin_is_not_followed() -> None:
    """The token endpoint's redirect is refused too: the refresh token stays put."""
    async with (
        FakeCloudController(token=LIVE) as cc,
        FakeCloudController() as other,
    ):
        guid = cc.add_job()
        location = f"{other.uaa_url}/oauth/token"
        stub = UAAStub(cc, lambda n, form: (307, "", {"Location": location}))
        async with stub.running() as uaa:
            provider = UAATokenProvider(uaa, refresh_token=REFRESH, access_token=EXPIRED)
            async with jobwatch.Client(cc.url, token=provider) as cf:
                with pytest.raises(jobwatch.Unauthorized, match="status 307"):
                    await cf.wait_for_job(guid, timeout=5)
        assert len(stub.forms) == 1
        assert other.requests == []
        assert other.refresh_calls == 0


@pytest.mark.parametrize("url", ["http://api.example.org", "http://10.0.0.7:8080"])
def test_plain_http_to_a_remote_api_is_refused_unless_opted_in(url: str) -> None:
    """The token never travels in clear text to a host that is not loopback by default."""
    with pytest.raises(jobwatch.ConfigError, match="allow_insecure_http"):
        jobwatch.Client(url, token=LIVE)
    cf = jobwatch.Client(url, token=LIVE, allow_insecure_http=True)
    assert cf.api_url == url


@pytest.mark.parametrize("uaa", ["http://uaa.example.org", "http://192.0.2.1/uaa"])
def test_plain_http_to_a_remote_uaa_is_refused_unless_opted_in(uaa: str) -> None:
    """The refresh token is held to the same rule as the access token."""
    with pytest.raises(jobwatch.ConfigError, match="allow_insecure_http"):
        UAATokenProvider(uaa, refresh_token=REFRESH)
    provider = UAATokenProvider(uaa, refresh_token=REFRESH, allow_insecure_http=True)
    assert provider.token_url == f"{uaa}/oauth/token"


def test_from_cf_config_applies_the_opt_in_to_target_and_uaa(cf_home: Path) -> None:
    """A cf login on plain http needs the opt-in, which then covers the UAA as well."""
    write_cf_config(cf_home, Target="http://api.example.org", UaaEndpoint="https://uaa.x.org")
    with pytest.raises(jobwatch.ConfigError, match=r"plain http to api\.example\.org"):
        jobwatch.Client.from_cf_config()
    write_cf_config(cf_home, Target="https://api.example.org", UaaEndpoint="http://uaa.x.org")
    with pytest.raises(jobwatch.ConfigError, match="plain http to the UAA"):
        jobwatch.Client.from_cf_config()
    write_cf_config(cf_home, Target="http://api.example.org", UaaEndpoint="http://uaa.x.org")
    cf = jobwatch.Client.from_cf_config(allow_insecure_http=True)
    assert cf.api_url == "http://api.example.org"


@pytest.mark.parametrize(
    ("uaa", "token_url"),
    [
        ("https://uaa.example.org", "https://uaa.example.org/oauth/token"),
        ("https://uaa.example.org/", "https://uaa.example.org/oauth/token"),
        ("https://login.example.org/uaa/", "https://login.example.org/uaa/oauth/token"),
        ("http://localhost:8080", "http://localhost:8080/oauth/token"),
        ("http://[::1]:8080", "http://[::1]:8080/oauth/token"),
    ],
)
def test_uaa_token_url(uaa: str, token_url: str) -> None:
    """The grant goes to `<uaa>/oauth/token`; loopback may be plain http."""
    assert uaa_token_url(uaa) == token_url


@pytest.mark.parametrize(
    "uaa",
    [
        "uaa.example.org",
        "ftp://uaa.example.org",
        "https://user:pw@uaa.example.org",
        "https://uaa.example.org/?next=1",
        "https://uaa.example.org:99999",
        42,
    ],
)
def test_unusable_uaa_urls_are_config_errors(uaa: Any) -> None:
    """A UAA URL jobwatch cannot safely send a refresh token to is refused up front."""
    with pytest.raises(jobwatch.ConfigError):
        uaa_token_url(uaa)


def test_provider_needs_a_refresh_token() -> None:
    """Without a refresh token there is nothing to refresh with."""
    with pytest.raises(jobwatch.ConfigError, match="refresh token"):
        UAATokenProvider("https://uaa.example.org", refresh_token=" ")


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a throwaway self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def tls_api() -> web.Application:
    """An API that serves every job COMPLETE (enough to see whether TLS let us through)."""

    async def job(request: web.Request) -> web.Response:
        guid = request.match_info["guid"]
        return web.json_response(
            {
                "guid": guid,
                "created_at": "2016-10-19T20:25:04Z",
                "updated_at": "2016-10-19T20:25:04Z",
                "operation": "app.delete",
                "state": "COMPLETE",
                "errors": [],
                "warnings": [],
                "links": {"self": {"href": str(request.url)}},
            }
        )

    app = web.Application()
    app.router.add_get("/v3/jobs/{guid}", job)
    return app


@pytest.mark.parametrize("disabled", [True, False])
async def test_ssl_disabled_turns_verification_off_with_a_warning(
    cf_home: Path,
    self_signed: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    disabled: bool,
) -> None:
    """SSLDisabled lets a self-signed API through and says so at WARNING; otherwise refused."""
    caplog.set_level(logging.WARNING, logger="jobwatch")
    async with serve(tls_api(), self_signed) as url:
        write_cf_config(cf_home, Target=url, SSLDisabled=disabled)
        async with jobwatch.Client.from_cf_config() as cf:
            if disabled:
                job = await cf.get_job("abc", timeout=5)
                assert job.state == "COMPLETE"
            else:
                with pytest.raises(jobwatch.TransportError, match=r"[Cc]ertificate"):
                    await cf.get_job("abc", timeout=5)
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "TLS verification is off" in r.getMessage()
    ]
    assert len(warnings) == (1 if disabled else 0)
    if disabled:
        assert url in warnings[0].getMessage()


# -- secrets never show -----------------------------------------------------------------------


LOGGERS = ("", "jobwatch", "aiohttp", "aiohttp.client", "aiohttp.internal", "aiohttp.server")


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every record, DEBUG included, from jobwatch, aiohttp and the root logger."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """All captured records, formatted with arguments and tracebacks."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    return "\n".join(f"{formatter.format(r)} {r.args!r} {r.__dict__!r}" for r in caplog.records)


async def test_no_secret_in_debug_logs_reprs_stats_or_exceptions(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    """A run with 401 + refresh, 502s, a 404 and a refused refresh shows no token anywhere."""
    async with FakeCloudController(
        token=LIVE, refresh_token=REFRESH, uaa_client=("cf", CLIENT_SECRET)
    ) as cc:
        flaky, failing = cc.add_jobs(2, states=("PROCESSING", "PROCESSING", "COMPLETE"))
        cc.inject(flaky, FakeResponse.router_502(), FakeResponse.bare_502())
        failed = cc.add_job(states=("PROCESSING", "FAILED"))
        provider = UAATokenProvider(
            cc.uaa_url, refresh_token=REFRESH, access_token=EXPIRED, client_secret=CLIENT_SECRET
        )
        raised: list[BaseException] = []
        async with jobwatch.Client(cc.url, token=provider) as cf:
            outcomes = await cf.wait_for_jobs([flaky, failed, "no-such-job"], timeout=5)
            raised += [o.error for o in outcomes.values() if o.error is not None]
            # Now the API drops the token and the UAA forgets the refresh token.
            cc.token = "a-newer-token-the-client-never-got"
            cc.refresh_token = "the-uaa-moved-on-to-another-one"
            with pytest.raises(jobwatch.Unauthorized) as refused:
                await cf.wait_for_job(failing, timeout=5)
            raised.append(refused.value)
            shown = [repr(cf), str(cf), repr(cf.stats), repr(provider), str(provider)]
            shown += [repr(o) for o in outcomes.values()]
            shown += [pickle.dumps(o).decode("latin-1") for o in outcomes.values()]
        assert outcomes[flaky].ok
        assert isinstance(outcomes[failed].error, jobwatch.JobFailed)
        assert isinstance(outcomes["no-such-job"].error, jobwatch.NotFound)
        assert cc.refresh_calls == 2
        shown += [exposed(exc) for exc in raised]
        logged = log_text(debug_logs)
        secrets = {EXPIRED, LIVE, REFRESH, CLIENT_SECRET} | bearer_tokens(cc)
        basic = base64.b64encode(f"cf:{CLIENT_SECRET}".encode()).decode()
        assert len(secrets) >= 5  # the refreshed token was sent, and is checked too
        everything = "\n".join([*shown, logged])
        for secret in (*secrets, basic):
            assert secret not in everything
        # The capture really saw the run: polls at DEBUG, retries, the refresh.
        levels = {r.levelno for r in debug_logs.records if r.name == "jobwatch"}
        assert {logging.DEBUG, logging.INFO, logging.WARNING} <= levels
        assert "502" in logged
        assert "UAA" in logged


async def test_transport_error_does_not_keep_aiohttp_request_headers() -> None:
    """A broken response raises TransportError without aiohttp's exception (and its headers)."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 abc\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    retry = RetryPolicy(attempts=1)
    try:
        async with jobwatch.Client(f"http://127.0.0.1:{port}", token=LIVE, retry=retry) as cf:
            with pytest.raises(jobwatch.TransportError) as caught:
                await cf.get_job("abc", timeout=5)
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert LIVE not in exposed(caught.value)


async def test_refresh_transport_error_does_not_keep_the_basic_credentials() -> None:
    """A UAA that cannot be reached gives a TransportError with no aiohttp exception inside."""
    async with FakeCloudController(token=LIVE) as cc:
        guid = cc.add_job()
        closed = FakeCloudController()
        await closed.start()
        uaa = closed.uaa_url
        await closed.aclose()  # nothing listens there any more
        provider = UAATokenProvider(
            uaa, refresh_token=REFRESH, access_token=EXPIRED, client_secret=CLIENT_SECRET
        )
        retry = RetryPolicy(attempts=2)
        async with jobwatch.Client(cc.url, token=provider, retry=retry) as cf:
            with pytest.raises(jobwatch.TransportError, match="token refresh failed") as caught:
                await cf.wait_for_job(guid, timeout=5)
    inner = caught.value.__cause__
    assert isinstance(inner, jobwatch.TransportError)
    assert inner.__cause__ is None
    assert inner.__context__ is None
    shown = exposed(caught.value)
    for secret in (REFRESH, CLIENT_SECRET, EXPIRED):
        assert secret not in shown


def test_reprs_never_show_secrets() -> None:
    """repr and str of the provider and the client name the endpoint, never a token."""
    provider = UAATokenProvider(
        "https://uaa.example.org",
        refresh_token=REFRESH,
        access_token=EXPIRED,
        client_secret=CLIENT_SECRET,
    )
    cf = jobwatch.Client("https://api.example.org", token=provider)
    text = " ".join([repr(provider), str(provider), repr(cf), str(cf), repr(cf.stats)])
    assert "https://uaa.example.org/oauth/token" in text
    for secret in (REFRESH, EXPIRED, CLIENT_SECRET):
        assert secret not in text


def test_cf_config_repr_hides_tokens(cf_home: Path) -> None:
    """The parsed login prints without its tokens or client secret."""
    write_cf_config(cf_home, UAAOAuthClientSecret=CLIENT_SECRET)
    config = read_cf_config()
    assert config.refresh_token == REFRESH
    assert config.client_secret == CLIENT_SECRET
    for secret in (REFRESH, EXPIRED, CLIENT_SECRET):
        assert secret not in repr(config)
