"""The pytest plugin: the `fake_cloud_controller` fixture, for every suite using jobwatch.

Registered through the `pytest11` entry point `jobwatch`, so pytest loads it by
itself (`-p no:jobwatch` turns it off). The fake is started and stopped by an
async fixture that pytest-asyncio runs, in its `auto` and `strict` modes alike.
Without pytest-asyncio (not installed, or turned off with `-p no:asyncio`) the
plugin still loads, so no suite fails to start because jobwatch is installed:
only a test that asks for the fixture fails, saying what to install.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._controller import FakeCloudController

#: The token the fixture's fake accepts (`fake_cloud_controller.token`).
TOKEN = "fake-cloud-controller-token"
#: The async fixture behind `fake_cloud_controller` (private: ask for that one).
_STARTED = "_jobwatch_fake_cloud_controller"

_NEEDS_PYTEST_ASYNCIO = (
    "the fake_cloud_controller fixture (from jobwatch) is async and needs pytest-asyncio: "
    "`pip install pytest-asyncio`, or start jobwatch.testing.FakeCloudController yourself "
    "with `async with FakeCloudController() as cc:`"
)


@pytest.fixture
def fake_cloud_controller(request: pytest.FixtureRequest) -> FakeCloudController:
    """A started `jobwatch.testing.FakeCloudController`, stopped after the test.

    It accepts one token (`fake_cloud_controller.token`); `fake_cloud_controller.client()`
    is a `jobwatch.Client` pointed at it with that token. Combine it with
    `jobwatch.testing.set_testing()` so that waits do not sleep through the
    real poll schedule. Needs pytest-asyncio (`auto` or `strict` mode).
    """
    # Asked per test, not at import: pytest-asyncio may be installed but turned off.
    if _started is None or not request.config.pluginmanager.has_plugin("asyncio"):
        pytest.fail(_NEEDS_PYTEST_ASYNCIO, pytrace=False)
    fake: FakeCloudController = request.getfixturevalue(_STARTED)
    return fake


async def _start() -> AsyncIterator[FakeCloudController]:
    async with FakeCloudController(token=TOKEN) as cc:
        yield cc


def _async_fixture() -> object | None:
    """`_start` as a pytest-asyncio fixture (which works in both modes); None without it."""
    try:
        import pytest_asyncio
    except ImportError:
        return None
    return pytest_asyncio.fixture(_start, name=_STARTED)


_started = _async_fixture()
