"""Wait on Cloud Foundry V3 jobs from asyncio: typed, concurrent, kind to the API."""

from __future__ import annotations

from importlib import metadata as _metadata

from ._auth import RefreshableTokenProvider, TokenProvider
from ._client import (
    DEFAULT_RATE_LIMIT_SHARE,
    DEFAULT_TIMEOUT,
    Client,
    ClientStats,
    get_job,
    get_jobs,
    wait_for_job,
    wait_for_jobs,
)
from ._errors import (
    ApiError,
    BadGateway,
    BadRequest,
    ClientClosed,
    ConfigError,
    Conflict,
    Forbidden,
    InternalServerError,
    InvalidJobReference,
    JobFailed,
    JobTimeout,
    JobwatchError,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnprocessableEntity,
)
from ._hooks import (
    Hook,
    OutageBegan,
    OutageEnded,
    Polled,
    RateLimitPaused,
    RetryScheduled,
    WaitCall,
    WaitEnded,
    WaitStarted,
)
from ._models import ErrorDetail, Job, JobState, JobWarning, Link
from ._policy import PollPolicy, RetryPolicy
from ._refs import AcceptedResponse, JobRef
from ._uaa import UAATokenProvider
from ._waiters import OnUpdate, Outcome

try:
    __version__ = _metadata.version("jobwatch")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AcceptedResponse",
    "ApiError",
    "BadGateway",
    "BadRequest",
    "Client",
    "ClientClosed",
    "ClientStats",
    "ConfigError",
    "Conflict",
    "DEFAULT_RATE_LIMIT_SHARE",
    "DEFAULT_TIMEOUT",
    "ErrorDetail",
    "Forbidden",
    "Hook",
    "InternalServerError",
    "InvalidJobReference",
    "Job",
    "JobFailed",
    "JobRef",
    "JobState",
    "JobTimeout",
    "JobWarning",
    "JobwatchError",
    "Link",
    "MalformedResponse",
    "NotFound",
    "OnUpdate",
    "OutageBegan",
    "OutageEnded",
    "Outcome",
    "PollPolicy",
    "Polled",
    "RateLimitPaused",
    "RateLimited",
    "RefreshableTokenProvider",
    "RetryPolicy",
    "RetryScheduled",
    "ServiceUnavailable",
    "TokenProvider",
    "TransportError",
    "UAATokenProvider",
    "Unauthorized",
    "UnprocessableEntity",
    "WaitCall",
    "WaitEnded",
    "WaitStarted",
    "__version__",
    "get_job",
    "get_jobs",
    "wait_for_job",
    "wait_for_jobs",
]
