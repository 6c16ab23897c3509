"""Shared fixtures: the fake `cc`, `http`, the aioresponses shim, test mode, leak guards.

The constants and helpers the modules share (`TOKEN`, `fast_client`, ...) are in helpers.py.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core

from jobwatch.testing import FakeCloudController, is_testing, set_testing

from .helpers import AUTH, TOKEN

# Our own plugin (the `fake_cloud_controller` fixture), loaded here rather than through
# its entry point (turned off in pyproject.toml) so that coverage sees jobwatch imported.
pytest_plugins = ["jobwatch.testing._pytest_plugin"]


@pytest.fixture
async def cc() -> AsyncIterator[FakeCloudController]:
    """A fake controller on loopback, on this test's loop, accepting `TOKEN` only.

    `cc.client()` sends that token. A test that needs a fake configured otherwise
    (a rate limit, a skewed clock, another token) starts its own.
    """
    async with FakeCloudController(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session sending `TOKEN` on every request (to talk to a fake raw)."""
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


class _NoWriter:
    """Stands in for the request's stream writer: the mocked request sent nothing."""

    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's `stream_writer`.

    Upstream issue #289. Remove this shim (and the patch in `mocked_http`) once
    aioresponses ships a release that passes it.
    """

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoWriter())
        super().__init__(method, url, **kwargs)


_NEEDS_SHIM = "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters


@pytest.fixture
def mocked_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """aioresponses, made to work with aiohttp 3.14 (test-only shim, see above)."""
    if _NEEDS_SHIM:
        monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as mocked:
        yield mocked


@pytest.fixture
def no_server_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Faults are served on purpose: aiohttp and asyncio must not log errors about them."""
    yield
    noisy = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("aiohttp", "asyncio"))
    ]
    assert not noisy, [r.getMessage() for r in noisy]


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves a task running on the loop."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [
        task
        for task in asyncio.all_tasks() - before
        if not task.done() and task is not asyncio.current_task()
    ]
    for task in leaked:
        task.cancel()
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture
def testing_mode() -> Iterator[None]:
    """`jobwatch.testing.set_testing()` for one test: no interval or backoff is slept through."""
    with set_testing():
        yield


@pytest.fixture(autouse=True)
def no_leaked_testing_mode() -> Iterator[None]:
    """Fail a test that leaves test mode on (and turn it off for the next one)."""
    yield
    if is_testing():
        set_testing(False)
        pytest.fail("the test left jobwatch.testing.set_testing() on")
