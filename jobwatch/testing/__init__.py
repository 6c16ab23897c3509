"""Helpers for testing code that waits on Cloud Foundry jobs (public).

- `FakeCloudController`: a Cloud Controller (and UAA) double serving scripted
  jobs over real HTTP on loopback, with the faults, outages and rate limits of
  a real foundation; `client()` hands out a `jobwatch.Client` pointed at it.
- `set_testing()`: every `Client` polls and retries without waiting, while
  deadlines still hold, so a suite never sleeps through the real schedule.
- A pytest plugin (`jobwatch.testing._pytest_plugin`, registered through the
  `pytest11` entry point) gives every suite the `fake_cloud_controller` fixture.

The fake is cut by job: `_controller` (`FakeCloudController`: scripting,
routing), `_platform` (listening, outage windows, headers), `_scripts` (a
job's script and body), `_responses` (canned answers), `_faults` (faults,
outages and their serving), `_limiter` (`RateLimit`), `_uaa` (the token
endpoint).
"""

from __future__ import annotations

from .._testing_mode import is_testing, set_testing
from ._controller import FakeCloudController
from ._faults import Fault, Outage
from ._limiter import RateLimit
from ._platform import RecordedRequest
from ._responses import CC_ERRORS, FakeResponse

__all__ = [
    "CC_ERRORS",
    "FakeCloudController",
    "FakeResponse",
    "Fault",
    "Outage",
    "RateLimit",
    "RecordedRequest",
    "is_testing",
    "set_testing",
]
