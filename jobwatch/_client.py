"""The public `Client`, and the module-level functions that borrow the cf CLI login."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import TYPE_CHECKING, TypedDict, TypeVar, Unpack

import attrs

from ._auth import Credentials, Token
from ._cfconfig import read_cf_config
from ._errors import JobFailed
from ._hooks import Emitter, Hook
from ._models import Job, JobState
from ._policy import PollPolicy, RetryPolicy
from ._refs import Accepted, ApiBase, JobRef
from ._scheduler import Scheduler
from ._transport import Transport
from ._uaa import UAATokenProvider
from ._waiters import BatchWait, OnUpdate, Outcome, StreamWait, run_single, run_watch

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("jobwatch")
_T = TypeVar("_T")

#: Seconds a wait lasts when the caller does not say (None waits for ever).
DEFAULT_TIMEOUT = 600.0
#: The share of the API's rate limit a client spends; the rest is left to the
#: same user's cf CLI and other automation.
DEFAULT_RATE_LIMIT_SHARE = 0.8


@attrs.frozen
class ClientStats:
    """Counters of one client, cheap enough to be always on."""

    requests: int
    #: Answers by HTTP status.
    by_status: dict[int, int]
    retries: int
    rate_limit_paused_seconds: float
    waiting: int
    in_flight: int
    #: Requests that got no HTTP answer (refused, reset, timed out, cut off).
    no_answer: int = 0
    #: Times the API was found down (every poll held behind one probe), and for how long.
    outages: int = 0
    outage_seconds: float = 0.0
    #: Wall-clock time (`time.time()`) the current outage began; None while the API answers.
    unavailable_since: float | None = None
    #: The rate-limit window's limit and this client's estimate of what is left (None:
    #: the API reported no rate limit).
    rate_limit: int | None = None
    rate_limit_remaining: int | None = None
    #: The fraction of the window's limit this client has spent in the current window,
    #: by its own count (at most its `rate_limit_share`, give or take the requests in
    #: flight when the window began); None: the API reported no rate limit.
    rate_limit_share_used: float | None = None


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if not timeout > 0 or math.isnan(timeout):
        raise ValueError(f"timeout must be > 0 seconds (or None), not {timeout!r}")
    return float(timeout)


class ClientOptions(TypedDict, total=False):
    """The keyword arguments of `Client` (for `from_cf_config`, so mypy checks them)."""

    token: Token | None
    session: aiohttp.ClientSession | None
    max_in_flight: int
    poll: PollPolicy
    retry: RetryPolicy
    request_timeout: float
    verify_ssl: bool
    allow_insecure_http: bool
    rate_limit_share: float
    rng: random.Random | None
    hooks: Sequence[Hook]


class Client:
    """Waits on the jobs of one Cloud Foundry API.

    Args:
        api_url: the API's base URL, e.g. ``https://api.example.org``.
        token: the Authorization header value (``"bearer …"``), or a sync or
            async callable returning it; a provider with a ``refresh()`` method
            is asked for a new token once when the API answers 401.
        session: an ``aiohttp.ClientSession`` to use; it is never closed here.
        max_in_flight: the most requests this client has open at once.
        poll: when to poll a job that has not ended yet.
        retry: how a poll recovers from transient failures.
        request_timeout: seconds one request may take, end to end.
        verify_ssl: False turns TLS verification off (cf's ``SSLDisabled``).
        allow_insecure_http: allow plain http to a host that is not loopback.
        rate_limit_share: the share of the API's rate limit (0 < share <= 1) this
            client may spend; the rest stays free for the same user's other work.
        hooks: instrumentation hooks (`Hook`), called synchronously at each poll,
            retry, wait start and end, outage and rate-limit pause; e.g.
            `jobwatch.otel.OpenTelemetryHook()`. None set costs nothing.
    """

    def __init__(
        self,
        api_url: str,
        *,
        token: Token | None = None,
        session: aiohttp.ClientSession | None = None,
        max_in_flight: int = 32,
        poll: PollPolicy = PollPolicy(),  # noqa: B008 - frozen, so sharing is safe
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008
        request_timeout: float = 30.0,
        verify_ssl: bool = True,
        allow_insecure_http: bool = False,
        rate_limit_share: float = DEFAULT_RATE_LIMIT_SHARE,
        rng: random.Random | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an integer, not {max_in_flight!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight}")
        if not isinstance(poll, PollPolicy) or not isinstance(retry, RetryPolicy):
            raise TypeError("poll must be a PollPolicy and retry a RetryPolicy")
        if isinstance(rate_limit_share, bool) or not isinstance(rate_limit_share, int | float):
            raise TypeError(f"rate_limit_share must be a number, not {rate_limit_share!r}")
        if not 0 < rate_limit_share <= 1:
            raise ValueError(f"rate_limit_share must be in (0, 1], not {rate_limit_share!r}")
        self._api = ApiBase.parse(api_url, allow_insecure_http=allow_insecure_http)
        if isinstance(hooks, str | bytes) or not isinstance(hooks, Iterable):
            raise TypeError(f"hooks must be a sequence of hooks, not {hooks!r}")
        self.hooks: tuple[Hook, ...] = tuple(hooks)
        if not verify_ssl:
            log.warning("TLS verification is off for %s (SSLDisabled)", self._api.url)
        self._transport = Transport(
            Credentials(token),
            session=session,
            max_connections=max_in_flight,
            request_timeout=_check_timeout(request_timeout) or 30.0,
            verify_ssl=verify_ssl,
            rate_limit_share=float(rate_limit_share),
        )
        if isinstance(token, UAATokenProvider):
            token._attach(self._transport.post_form)
        self._scheduler = Scheduler(
            self._transport,
            self._api.jobs_prefix,
            poll=poll,
            retry=retry,
            max_in_flight=max_in_flight,
            rng=rng,
            hooks=Emitter.of(self.hooks, self._api.url),
        )
        #: The one closing of this client, awaited by every `aclose()`.
        self._closing: asyncio.Future[None] | None = None
        self.max_in_flight = max_in_flight
        self.poll_policy = poll
        self.retry_policy = retry

    @classmethod
    def from_cf_config(
        cls, path: str | os.PathLike[str] | None = None, **kwargs: Unpack[ClientOptions]
    ) -> Client:
        """Build a client from the cf CLI login (`$CF_HOME/.cf/config.json`).

        With a refresh token and a UAA endpoint in the login, an expired access
        token is refreshed at the UAA as the cf CLI does, in memory only: the
        config file is never written. `SSLDisabled` turns TLS verification off
        for this client (a WARNING says so). Keyword arguments override.

        Raises:
            ConfigError: no login, one without a target or token, or a target or
                UAA on plain http to a host that is not loopback.
        """
        config = read_cf_config(path)
        if "token" not in kwargs:
            if config.refresh_token and config.uaa_endpoint:
                kwargs["token"] = UAATokenProvider(
                    config.uaa_endpoint,
                    refresh_token=config.refresh_token,
                    access_token=config.access_token,
                    client_id=config.client_id,
                    client_secret=config.client_secret,
                    allow_insecure_http=kwargs.get("allow_insecure_http", False),
                )
            else:
                kwargs["token"] = config.access_token
        if config.ssl_disabled:
            kwargs.setdefault("verify_ssl", False)
        return cls(config.target, **kwargs)

    def __repr__(self) -> str:
        state = self._scheduler.state.value
        return (
            f"<jobwatch.Client {self._api.url} {state} waiting={self._scheduler.waiting} "
            f"in_flight={self._transport.in_flight}/{self.max_in_flight}>"
        )

    @property
    def api_url(self) -> str:
        """The API base URL this client talks to."""
        return self._api.url

    @property
    def stats(self) -> ClientStats:
        """A snapshot of this client's counters."""
        statuses = self._transport.statuses
        outages, outage_seconds, since = self._scheduler.gate.report(self._scheduler.loop_time())
        return ClientStats(
            requests=sum(statuses.values()) + self._transport.no_answer,
            by_status=dict(statuses),
            no_answer=self._transport.no_answer,
            retries=self._scheduler.retries,
            rate_limit_paused_seconds=self._transport.budget.paused_seconds,
            waiting=self._scheduler.waiting,
            in_flight=self._transport.in_flight,
            outages=outages,
            outage_seconds=outage_seconds,
            unavailable_since=since,
            rate_limit=self._transport.budget.limit,
            rate_limit_remaining=self._transport.budget.remaining,
            rate_limit_share_used=self._transport.budget.share_used(self._scheduler.loop_time()),
        )

    async def __aenter__(self) -> Client:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every wait and close the session if this client made it.

        Every call returns once the closing is done, a second one included; a
        caller cancelled meanwhile leaves it running to the end.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._scheduler.close())
        await asyncio.shield(self._closing)

    def _check_open(self) -> None:
        """`ClientClosed` on a closed client, `RuntimeError` from another event loop."""
        self._scheduler.check_usable()

    def _resolve(self, job: JobRef) -> tuple[str, Accepted | None]:
        """The guid of a job reference (and `Accepted` for a 202); refused before any request."""
        self._check_open()
        return self._api.resolve_ref(job)

    def _resolve_all(self, jobs: Iterable[JobRef]) -> tuple[list[str], dict[str, Accepted]]:
        """The guids, and what the 202 responses among `jobs` say of their jobs' age."""
        if isinstance(jobs, str):
            raise TypeError("jobs must be an iterable of guids or URLs, not one string")
        self._check_open()
        resolve = self._api.resolve_ref
        guids: list[str] = []
        accepted: dict[str, Accepted] = {}
        for job in jobs:
            guid, fresh = resolve(job)
            guids.append(guid)
            if fresh is not None:
                accepted.setdefault(guid, fresh)
        return guids, accepted

    async def get_job(self, job: JobRef, *, timeout: float | None = DEFAULT_TIMEOUT) -> Job:
        """Fetch a job once (transient failures retried), at once even for a 202 response.

        Raises:
            InvalidJobReference: before any request, for a bad guid or foreign URL.
            ApiError, TransportError, MalformedResponse: the fetch failed.
            JobTimeout: no answer within `timeout`.
        """
        guid = self._resolve(job)[0]
        timeout = _check_timeout(timeout)
        return await run_single(self._scheduler, guid, timeout=timeout, until_terminal=False)

    async def wait_for_job(
        self,
        job: JobRef,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_update: OnUpdate | None = None,
    ) -> Job:
        """Wait until the job ends and return it COMPLETE.

        Args:
            job: a guid, a job URL (e.g. the `Location` of a 202), or the 202
                response itself (anything with `headers` holding `Location`): then
                the job is known to be fresh, and its first GET goes once the first
                interval has passed since its `Date`, instead of at once.
            timeout: seconds to wait; None waits for ever.
            on_update: called (sync or async) with the job at each observed change.

        Raises:
            JobFailed: the job ended FAILED.
            JobTimeout: the deadline passed; carries the last job seen.
            InvalidJobReference, ApiError, TransportError, MalformedResponse.
        """
        guid, accepted = self._resolve(job)
        timeout = _check_timeout(timeout)
        if on_update is None:
            return await run_single(
                self._scheduler, guid, timeout=timeout, until_terminal=True, accepted=accepted
            )
        last: Job | None = None
        watch = run_watch(
            self._scheduler, guid, timeout=timeout, call="wait_for_job", accepted=accepted
        )
        async with aclosing(watch) as jobs:
            async for last in jobs:
                result = on_update(last)
                if inspect.isawaitable(result):
                    await result
        assert last is not None
        assert last.is_terminal
        if last.state != JobState.COMPLETE:
            raise JobFailed(last)
        return last

    def watch_job(
        self, job: JobRef, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> AsyncGenerator[Job, None]:
        """Yield the job each time its state (or `updated_at`) changes.

        Ends after the terminal job, which is yielded, FAILED included. Bad
        references are refused here, before any request; the wait (and its
        `timeout`) starts with the first iteration.
        """
        guid, accepted = self._resolve(job)
        timeout = _check_timeout(timeout)
        return run_watch(self._scheduler, guid, timeout=timeout, accepted=accepted)

    async def get_jobs(
        self, jobs: Iterable[JobRef], *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> dict[str, Outcome]:
        """Check many jobs once, concurrently (202 responses too: at once); keyed by guid."""
        guids = self._resolve_all(jobs)[0]
        timeout = _check_timeout(timeout)
        batch = BatchWait(self._scheduler, guids, until_terminal=False, timeout=timeout)
        return await batch.results()

    async def wait_for_jobs(
        self,
        jobs: Iterable[JobRef],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_update: OnUpdate | None = None,
    ) -> dict[str, Outcome]:
        """Wait until every job ends; one job's error never stops the others.

        Args:
            jobs: guids, job URLs or 202 responses (as for `wait_for_job`);
                duplicates collapse to one key and one poll loop.
            timeout: seconds for the whole call; None waits for ever.
            on_update: called (sync or async) with a job at each observed change,
                e.g. for a progress display, in the caller's task; if it raises,
                the call ends with that error.

        Returns:
            An `Outcome` per unique guid, in input order. FAILED jobs carry
            `JobFailed`, late ones `JobTimeout`, others the error they met.
        """
        guids, accepted = self._resolve_all(jobs)
        timeout = _check_timeout(timeout)
        batch = BatchWait(
            self._scheduler,
            guids,
            until_terminal=True,
            timeout=timeout,
            on_update=on_update,
            accepted=accepted,
        )
        return await batch.results()

    def as_completed(
        self,
        jobs: Iterable[JobRef],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_update: OnUpdate | None = None,
    ) -> AsyncGenerator[Outcome, None]:
        """Yield each job's `Outcome` as it ends (close the iterator to stop early).

        `on_update` as for `wait_for_jobs`: a job's changes come before its outcome.
        """
        guids, accepted = self._resolve_all(jobs)
        timeout = _check_timeout(timeout)
        return _stream(self._scheduler, guids, timeout, on_update, accepted)


async def _stream(
    scheduler: Scheduler,
    guids: list[str],
    timeout: float | None,
    on_update: OnUpdate | None,
    accepted: dict[str, Accepted],
) -> AsyncGenerator[Outcome, None]:
    batch = StreamWait(
        scheduler,
        guids,
        until_terminal=True,
        timeout=timeout,
        on_update=on_update,
        accepted=accepted,
    )
    async with aclosing(batch.as_completed()) as outcomes:
        async for outcome in outcomes:
            yield outcome


async def _with_client(client: Client | None, call: Callable[[Client], Awaitable[_T]]) -> _T:
    if client is not None:
        return await call(client)
    async with Client.from_cf_config() as own:
        return await call(own)


async def get_job(
    job: JobRef, *, timeout: float | None = DEFAULT_TIMEOUT, client: Client | None = None
) -> Job:
    """`Client.get_job`, with the cf CLI login when no client is given."""
    return await _with_client(client, lambda c: c.get_job(job, timeout=timeout))


async def wait_for_job(
    job: JobRef,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    on_update: OnUpdate | None = None,
    client: Client | None = None,
) -> Job:
    """`Client.wait_for_job`, with the cf CLI login when no client is given."""
    return await _with_client(
        client, lambda c: c.wait_for_job(job, timeout=timeout, on_update=on_update)
    )


async def get_jobs(
    jobs: Iterable[JobRef],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    client: Client | None = None,
) -> dict[str, Outcome]:
    """`Client.get_jobs`, with the cf CLI login when no client is given."""
    return await _with_client(client, lambda c: c.get_jobs(jobs, timeout=timeout))


async def wait_for_jobs(
    jobs: Iterable[JobRef],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    on_update: OnUpdate | None = None,
    client: Client | None = None,
) -> dict[str, Outcome]:
    """`Client.wait_for_jobs`, with the cf CLI login when no client is given."""
    return await _with_client(
        client, lambda c: c.wait_for_jobs(jobs, timeout=timeout, on_update=on_update)
    )
