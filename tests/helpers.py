"""Fast policies for the tests that need real intervals: milliseconds, never seconds.

Most tests need no schedule of their own: the `testing_mode` fixture
(`jobwatch.testing.set_testing()`) and `FakeCloudController.client()` give a
client with the default policies that sleeps through none of them. These are
for the tests that measure spacing, backoff, pacing or cancellation mid-wait.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

import jobwatch

FAST_POLL = jobwatch.PollPolicy(
    initial=0.01, maximum=0.05, polling_initial=0.02, polling_maximum=0.1, jitter=0.1
)
FAST_RETRY = jobwatch.RetryPolicy(initial=0.005, maximum=0.02, attempts=4)


def fast_client(url: str, **kwargs: Any) -> jobwatch.Client:
    """A client on `url` with millisecond schedules (override any keyword)."""
    kwargs.setdefault("poll", FAST_POLL)
    kwargs.setdefault("retry", FAST_RETRY)
    return jobwatch.Client(url, **kwargs)


async def get(
    http: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    """GET `url`; return status, the body (JSON-decoded when possible) and headers."""
    async with http.get(url, **kwargs) as response:
        text = await response.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return response.status, body, response.headers
