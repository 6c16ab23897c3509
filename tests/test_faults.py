"""The fault matrix: every fault of the fake x every way to wait, against one table of results."""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import attrs
import pytest

import jobwatch
from jobwatch.testing import FakeCloudController, FakeResponse, Fault

from .test_properties import schema_validator

TOKEN = "matrix-token"
#: Consecutive failed attempts before a transient error is raised, in every row below.
ATTEMPTS = 3
RETRY = jobwatch.RetryPolicy(initial=0.005, maximum=0.02, attempts=ATTEMPTS)
POLL = jobwatch.PollPolicy(initial=0.01, maximum=0.05, polling_initial=0.02, polling_maximum=0.1)
#: Short, so a STALL or a DRIP costs a tenth of a second per attempt.
REQUEST_TIMEOUT = 0.1
#: aiohttp resends an idempotent GET once by itself when the connection is reset
#: before any response byte, so one attempt of jobwatch's consumes two RESETs.
RESET_EXHAUSTS = 2 * ATTEMPTS

#: Shorter than the Retry-After: 1 of the fake's 429s.
DEADLINE = 0.3
RETRIED = None  #: the `expected` of a row that ends in success


@attrs.frozen
class Row:
    """One line of the table: a fault, how it is injected, and what the caller gets."""

    label: str
    item: FakeResponse | Fault
    times: int = 1  #: injected in front of the job's answers this many times
    probability: float | None = None  #: or: served at random with this probability
    expected: type[jobwatch.JobwatchError] | None = RETRIED
    gets: int | None = None  #: GETs the server sees before the error (None: chance decides)
    timeout: float = 5.0
    note: str = ""

    @property
    def how(self) -> str:
        if self.probability is not None:
            how = f"at random, p = {self.probability:g} per GET"
        else:
            how = "once" if self.times == 1 else f"{self.times} times in a row"
        return how + (f", deadline {self.timeout:g} s" if self.timeout != 5.0 else "")

    @property
    def id(self) -> str:
        name = re.sub(r"[^A-Za-z0-9]+", "_", self.label).strip("_")
        how = f"p{self.probability:g}" if self.probability is not None else f"x{self.times}"
        return f"{name}-{how}"

    @property
    def result(self) -> str:
        return "retried to success" if self.expected is None else self.expected.__name__

    @property
    def pauses_client(self) -> bool:
        """A 429 with Retry-After pauses every request of the client, other jobs too."""
        status = self.item.status if isinstance(self.item, FakeResponse) else 0
        retry_after = float(getattr(self.item, "headers", {}).get("Retry-After", 0))
        return (self.item is Fault.RATE_LIMITED_429 or status == 429) and (
            self.item is Fault.RATE_LIMITED_429 or retry_after >= self.timeout
        )


def _exhausting(item: FakeResponse | Fault) -> int:
    # aiohttp resends an idempotent GET once after a reset before any response byte.
    return RESET_EXHAUSTS if item is Fault.RESET else ATTEMPTS


def _transient(
    label: str, item: FakeResponse | Fault, error: type[jobwatch.JobwatchError]
) -> list[Row]:
    """Once is cured by a retry, and so is one short of giving up; then the typed error."""
    n = _exhausting(item)
    resent = "aiohttp resends the GET by itself: jobwatch never sees it"
    rows = [
        Row(label, item, note=resent if item is Fault.RESET else ""),
        Row(label, item, times=n - 1),
        Row(label, item, times=n, expected=error, gets=n),
    ]
    if item in (Fault.STALL, Fault.DRIP):
        del rows[1]  # a tenth of a second per attempt: the cheap faults show the boundary
    return rows


def _permanent(
    label: str, item: FakeResponse | Fault, error: type[jobwatch.JobwatchError]
) -> list[Row]:
    return [Row(label, item, expected=error, gets=1, note=AT_ONCE)]


def _random(fault: Fault, error: type[jobwatch.JobwatchError], *, transient: bool) -> list[Row]:
    """p = 1 never lets a GET through; a transient fault at p = 0.2 is ridden out."""
    rows = [Row(f"Fault.{fault.name}", fault, probability=1.0, expected=error, gets=1)]
    if transient:
        rows = [
            Row(f"Fault.{fault.name}", fault, probability=0.2),
            Row(
                f"Fault.{fault.name}",
                fault,
                probability=1.0,
                expected=error,
                gets=_exhausting(fault),
            ),
        ]
    return rows


AT_ONCE = "raised at once, never retried"
PAST_DEADLINE = "Retry-After: 1 ends past the deadline: raised at once"

#: THE table. The tests below and the README's "Failure semantics" are generated from it.
TABLE: list[Row] = [
    *_transient("Fault.RESET", Fault.RESET, jobwatch.TransportError),
    *_transient("Fault.RESET_MID_BODY", Fault.RESET_MID_BODY, jobwatch.TransportError),
    *_transient("Fault.SHORT_BODY", Fault.SHORT_BODY, jobwatch.TransportError),
    *_transient("Fault.STALL", Fault.STALL, jobwatch.TransportError),
    *_transient("Fault.DRIP", Fault.DRIP, jobwatch.TransportError),
    *_transient("Fault.SERVER_ERROR", Fault.SERVER_ERROR, jobwatch.InternalServerError),
    *_transient("Fault.ROUTER_502", Fault.ROUTER_502, jobwatch.BadGateway),
    *_transient("Fault.MAINTENANCE_503", Fault.MAINTENANCE_503, jobwatch.ServiceUnavailable),
    Row(
        "Fault.RATE_LIMITED_429",
        Fault.RATE_LIMITED_429,
        expected=jobwatch.RateLimited,
        gets=1,
        timeout=DEADLINE,
        note=PAST_DEADLINE,
    ),
    *_permanent("Fault.INVALID_JSON", Fault.INVALID_JSON, jobwatch.MalformedResponse),
    *_permanent("Fault.WRONG_SHAPE", Fault.WRONG_SHAPE, jobwatch.MalformedResponse),
    *_permanent("Fault.HUGE_BODY", Fault.HUGE_BODY, jobwatch.MalformedResponse),
    *_transient("FakeResponse.router_502()", FakeResponse.router_502(), jobwatch.BadGateway),
    *_transient("FakeResponse.bare_502()", FakeResponse.bare_502(), jobwatch.BadGateway),
    *_transient(
        "FakeResponse.maintenance_503()",
        FakeResponse.maintenance_503(),
        jobwatch.ServiceUnavailable,
    ),
    Row(
        "FakeResponse.rate_limited()",
        FakeResponse.rate_limited(),
        expected=jobwatch.RateLimited,
        gets=1,
        timeout=DEADLINE,
        note=PAST_DEADLINE,
    ),
    *_transient(
        "FakeResponse.rate_limited(0)", FakeResponse.rate_limited(0), jobwatch.RateLimited
    ),
    *_permanent("FakeResponse.error(400)", FakeResponse.error(400), jobwatch.BadRequest),
    *_permanent("FakeResponse.error(401)", FakeResponse.error(401), jobwatch.Unauthorized),
    *_permanent("FakeResponse.error(403)", FakeResponse.error(403), jobwatch.Forbidden),
    *_permanent("FakeResponse.error(404)", FakeResponse.error(404), jobwatch.NotFound),
    *_permanent("FakeResponse.error(409)", FakeResponse.error(409), jobwatch.Conflict),
    *_permanent("FakeResponse.error(422)", FakeResponse.error(422), jobwatch.UnprocessableEntity),
    *_transient("FakeResponse.error(500)", FakeResponse.error(500), jobwatch.InternalServerError),
    *_transient("FakeResponse.error(503)", FakeResponse.error(503), jobwatch.ServiceUnavailable),
    *_transient("FakeResponse.error(504)", FakeResponse.error(504), jobwatch.ApiError),
    *_random(Fault.RESET, jobwatch.TransportError, transient=True),
    *_random(Fault.RESET_MID_BODY, jobwatch.TransportError, transient=True),
    *_random(Fault.SHORT_BODY, jobwatch.TransportError, transient=True),
    *_random(Fault.STALL, jobwatch.TransportError, transient=True),
    *_random(Fault.DRIP, jobwatch.TransportError, transient=True),
    *_random(Fault.SERVER_ERROR, jobwatch.InternalServerError, transient=True),
    *_random(Fault.ROUTER_502, jobwatch.BadGateway, transient=True),
    *_random(Fault.MAINTENANCE_503, jobwatch.ServiceUnavailable, transient=True),
    # Retry-After: 1 at every GET: the first 429 already asks to wait past the deadline.
    *(
        attrs.evolve(row, timeout=DEADLINE, note=PAST_DEADLINE)
        for row in _random(Fault.RATE_LIMITED_429, jobwatch.RateLimited, transient=False)
    ),
    *_random(Fault.INVALID_JSON, jobwatch.MalformedResponse, transient=False),
    *_random(Fault.WRONG_SHAPE, jobwatch.MalformedResponse, transient=False),
    *_random(Fault.HUGE_BODY, jobwatch.MalformedResponse, transient=False),
]


# -- the matrix -------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("no_server_errors_logged")


@pytest.fixture
async def cc() -> AsyncIterator[FakeCloudController]:
    async with FakeCloudController(token=TOKEN) as fake:
        yield fake


def _client(cc: FakeCloudController) -> jobwatch.Client:
    return jobwatch.Client(
        cc.url, token=TOKEN, poll=POLL, retry=RETRY, request_timeout=REQUEST_TIMEOUT
    )


def _add_faulty_job(cc: FakeCloudController, row: Row) -> str:
    if row.probability is not None:
        assert isinstance(row.item, Fault)
        return cc.add_job(faults={row.item: row.probability})
    guid = cc.add_job()
    cc.inject(guid, *[row.item] * row.times)
    return guid


Call = Callable[[jobwatch.Client, FakeCloudController, Row, str], Awaitable[jobwatch.Outcome]]


async def _get_job(
    cf: jobwatch.Client, cc: FakeCloudController, row: Row, guid: str
) -> jobwatch.Outcome:
    try:
        return jobwatch.Outcome(guid, await cf.get_job(guid, timeout=row.timeout))
    except jobwatch.JobwatchError as exc:
        return jobwatch.Outcome(guid, None, exc)


async def _wait_for_job(
    cf: jobwatch.Client, cc: FakeCloudController, row: Row, guid: str
) -> jobwatch.Outcome:
    try:
        return jobwatch.Outcome(guid, await cf.wait_for_job(guid, timeout=row.timeout))
    except jobwatch.JobwatchError as exc:
        return jobwatch.Outcome(guid, None, exc)


async def _wait_for_jobs(
    cf: jobwatch.Client, cc: FakeCloudController, row: Row, guid: str
) -> jobwatch.Outcome:
    healthy = cc.add_job(states=("PROCESSING", "COMPLETE"))
    outcomes = await cf.wait_for_jobs([healthy, guid], timeout=row.timeout)
    assert list(outcomes) == [healthy, guid]
    other = outcomes[healthy]
    assert other.job is not None
    if row.pauses_client:
        # The 429's pause holds every request of the client, past this short deadline.
        assert isinstance(other.error, jobwatch.JobTimeout)
        assert other.job.state == "PROCESSING"
    else:
        # One job's fault never touches the others.
        assert other.ok, other.error
        assert other.job.state == "COMPLETE"
    return outcomes[guid]


METHODS: dict[str, Call] = {
    "get_job": _get_job,
    "wait_for_job": _wait_for_job,
    "wait_for_jobs": _wait_for_jobs,
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
async def test_fault_matrix(cc: FakeCloudController, row: Row, method: str) -> None:
    """Each fault, through each way to wait, ends as the table says after the right GETs."""
    guid = _add_faulty_job(cc, row)
    started = time.monotonic()
    async with _client(cc) as cf:
        outcome = await METHODS[method](cf, cc, row, guid)
        assert cf.stats.waiting == 0
    elapsed = time.monotonic() - started

    if row.expected is RETRIED:
        assert outcome.error is None, f"{row.label}: {outcome.error!r}"
        assert outcome.job is not None
        assert outcome.job.guid == guid
        assert outcome.job.state == ("PROCESSING" if method == "get_job" else "COMPLETE")
        if row.probability is None:
            answers = 1 if method == "get_job" else 2  # PROCESSING, then COMPLETE
            assert cc.polls(guid) == row.times + answers
    else:
        error = outcome.error
        assert type(error) is row.expected, f"{row.label}: {error!r}"
        assert cc.polls(guid) == row.gets
        if isinstance(error, jobwatch.ApiError):
            assert error.status in (getattr(row.item, "status", None), 500, 502, 503, 429)
            assert error.request_id
        if isinstance(error, jobwatch.TransportError):
            assert error.attempts == ATTEMPTS
        assert TOKEN not in str(error)
        if row.note in (AT_ONCE, PAST_DEADLINE) and method != "wait_for_jobs":
            assert elapsed < 0.25
    assert elapsed < row.timeout + 0.2


def test_table_covers_every_fault_and_every_canned_response() -> None:
    """No fault mode of the fake is left out, injected or at random."""
    injected = {row.item for row in TABLE if row.probability is None}
    at_random = {row.item for row in TABLE if row.probability == 1.0}
    assert set(Fault) <= injected
    assert at_random == set(Fault)
    labels = {row.label for row in TABLE}
    for canned in ("router_502()", "bare_502()", "maintenance_503()", "rate_limited()"):
        assert f"FakeResponse.{canned}" in labels
    for status in (400, 401, 403, 404, 409, 422, 500, 503, 504):
        assert f"FakeResponse.error({status})" in labels
    assert len({row.id for row in TABLE}) == len(TABLE)


async def test_huge_body_is_refused_quickly_with_bounded_memory(
    cc: FakeCloudController,
) -> None:
    """A 50 MiB answer is a MalformedResponse at once; jobwatch never holds more than 1 MiB."""
    guid = cc.add_job()
    cc.inject(guid, Fault.HUGE_BODY)
    async with _client(cc) as cf:
        tracemalloc.start()
        try:
            started = time.monotonic()
            with pytest.raises(jobwatch.MalformedResponse, match="more than") as caught:
                await cf.get_job(guid, timeout=5)
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert cf.stats.by_status == {200: 1}  # refused, but an answer: counted
    assert caught.value.status == 200
    assert elapsed < 0.5
    assert peak < 4 * 1024 * 1024
    assert cc.huge_body_size == 50 * 1024 * 1024


# -- the README's copy of the table ---------------------------------------------------------


def _cell(row: Row) -> str:
    if row.expected is RETRIED:
        text = "retried to success"
    else:
        text = f"`{row.expected.__name__}`"
        text += " at once" if row.gets == 1 else f" after {row.gets} GETs"
    if row.note == PAST_DEADLINE:
        text += f" (its Retry-After: 1 ends past the {row.timeout:g} s deadline)"
    elif row.note and row.note != AT_ONCE:
        text += f" ({row.note})"
    return text


def failure_table() -> list[str]:
    """TABLE as the Markdown table of README "Failure semantics", one line per fault."""
    lines = [
        "| Fault (as `FakeCloudController` serves it) | Injected once "
        f"| Injected n times in a row (`attempts={ATTEMPTS}`) | At random (p per GET) |",
        "|---|---|---|---|",
    ]
    for label in dict.fromkeys(row.label for row in TABLE):
        rows = [row for row in TABLE if row.label == label]
        once = [_cell(r) for r in rows if r.probability is None and r.times == 1]
        again = [f"x{r.times}: {_cell(r)}" for r in rows if r.probability is None and r.times > 1]
        random = [f"{r.probability:g}: {_cell(r)}" for r in rows if r.probability is not None]
        cells = [" ".join(once), "; ".join(again), "; ".join(random)]
        lines.append(f"| `{label}` | " + " | ".join(cell or "-" for cell in cells) + " |")
    return lines


def test_readme_failure_semantics_is_this_table() -> None:
    """README "Failure semantics" carries the table above, line for line."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    section = text.split("## Failure semantics", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table == failure_table(), "\n" + "\n".join(failure_table())


# -- what the fake serves in place of a job -------------------------------------------------


async def test_error_bodies_the_fake_serves_conform_to_the_schema(
    cc: FakeCloudController,
) -> None:
    """Every JSON error of the table (and the fake's own 401/404) has the controller's shape."""
    envelope, bare = schema_validator("errors"), schema_validator("error")
    guid = cc.add_job()
    answered = (
        Fault.SERVER_ERROR,
        Fault.ROUTER_502,
        Fault.MAINTENANCE_503,
        Fault.RATE_LIMITED_429,
    )
    served = [
        row.item
        for row in TABLE
        if row.probability is None
        and row.times == 1
        and (isinstance(row.item, FakeResponse) or row.item in answered)
    ]
    cc.inject(guid, *served)
    checked = 0
    async with aiohttp.ClientSession() as http:
        for item in served:
            async with http.get(cc.job_url(guid)) as response:
                status, text = response.status, await response.text()
            assert status >= 400
            if not text.startswith("{"):
                continue  # the router's and nginx's plain text
            body = json.loads(text)
            (bare if item == FakeResponse.bare_502() else envelope).validate(body)
            assert body.get("errors") or set(body) == {"code", "title", "detail"}, body
            checked += 1
        for headers in ({}, {"Authorization": "bearer wrong"}):
            async with http.get(cc.job_url("no-such-job"), headers=headers) as response:
                envelope.validate(await response.json())
            checked += 1
    assert checked == 14 + 2  # the JSON errors of the table, then the fake's own two
