"""Fast policies for the tests that need real intervals: milliseconds, never seconds.

Most tests need no schedule of their own: the `testing_mode` fixture
(`jobwatch.testing.set_testing()`) and `FakeCloudController.client()` give a
client with the default policies that sleeps through none of them. These are
for the tests that measure spacing, backoff, pacing or cancellation mid-wait.
"""

from __future__ import annotations

from typing import Any

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
