"""The fault matrix: every fault of the fake x every way to call, against one table of results.

A status check (`get_job`) gives up after `RetryPolicy.attempts`; a wait
(`wait_for_job`, `wait_for_jobs`) rides a transient fault out, however many
times it comes, once the client has had an answer from the API. A client that
has never had one (a wrong URL, a host behind the router that is not the API)
gives up after `attempts` in a wait too.
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import attrs
import pytest

import jobwatch
from jobwatch._gate import CLOSE_AFTER
from jobwatch.testing import FakeCloudController, FakeResponse, Fault

from .helpers import TOKEN, schema_validator

#: Consecutive failed attempts before a status check gives up, in every row below.
ATTEMPTS = 3
RETRY = jobwatch.RetryPolicy(initial=0.002, maximum=0.005, attempts=ATTEMPTS)
POLL = jobwatch.PollPolicy(initial=0.01, maximum=0.05, polling_initial=0.02, polling_maximum=0.1)
#: Short, so a STALL or a DRIP costs a tenth of a second per attempt.
REQUEST_TIMEOUT = 0.1
#: aiohttp resends an idempotent GET once by itself when the connection is reset
#: before any response byte, so one attempt of jobwatch's consumes two RESETs.
RESET_RESENDS = 2
#: How many times in a row a wait meets a fault it rides out: three times what
#: makes a status check give up (STALL and DRIP, a tenth of a second each: one more).
RIDDEN = 3 * ATTEMPTS

#: Shorter than the Retry-After: 1 of the fake's 429s.
DEADLINE = 0.3
#: A wait under a fault without end: JobTimeout at this deadline.
ENDLESS_DEADLINE = 0.1
#: The deadline is kept to within this, on a busy two-core CI machine.
SLACK = 0.3
RETRIED = None  #: the `expected` of a row that ends in success

GET_JOB = ("get_job",)
WAITS = ("wait_for_job", "wait_for_jobs")
EVERY_CALL = GET_JOB + WAITS


@attrs.frozen
class LegacyRateLimit:
    """An older controller's 429, its epoch `ahead` seconds past the fake's clock when served."""

    ahead: int

    def response(self, cc: FakeCloudController) -> FakeResponse:
        return FakeResponse.rate_limited_legacy(int(cc.server_time()) + self.ahead)


Item = FakeResponse | Fault | LegacyRateLimit


@attrs.frozen
class Row:
    """One cell group of the table: a fault, how it is injected, which calls, what they get."""

    label: str
    item: Item
    times: int = 1  #: injected in front of the job's answers this many times
    probability: float | None = None  #: or: served at random with this probability
    expected: type[jobwatch.JobwatchError] | None = RETRIED
    gets: int | None = None  #: GETs the server sees before the error (None: chance decides)
    calls: tuple[str, ...] = EVERY_CALL
    transient: bool = True  #: what the error's `.transient` says
    fresh: bool = False  #: the client has never had an answer from the API
    timeout: float = 5.0
    holds_others: bool = False  #: a 429 whose pause outlasts the deadline holds every job
    takes: tuple[float, float] | None = None  #: seconds a success takes (a server-imposed wait)
    note: str = ""

    @property
    def how(self) -> str:
        if self.probability is not None:
            return f"p={self.probability:g}"
        return "once" if self.times == 1 else f"x{self.times}"

    @property
    def id(self) -> str:
        name = re.sub(r"[^A-Za-z0-9]+", "_", self.label).strip("_")
        how = self.how.replace("=", "")
        return f"{name}-{how}" + ("-fresh" if self.fresh else "")

    @property
    def attempts(self) -> int:
        """The failed attempts jobwatch sees from the injected faults (a RESET is resent once)."""
        return self.times // RESET_RESENDS if self.item is Fault.RESET else self.times


def _exhausting(item: Item) -> int:
    """GETs the server sees until `ATTEMPTS` attempts have failed."""
    return RESET_RESENDS * ATTEMPTS if item is Fault.RESET else ATTEMPTS


def _ridden(item: Item) -> int:
    slow = item in (Fault.STALL, Fault.DRIP)
    attempts = ATTEMPTS + 1 if slow else RIDDEN
    return RESET_RESENDS * attempts if item is Fault.RESET else attempts


AT_ONCE = "raised at once, never retried"
PAST_DEADLINE = "Retry-After ends past the deadline: raised at once"
ENDLESS = "the fault never ends: the wait rides it to its deadline"
RESENT = "aiohttp resends the GET by itself: jobwatch never sees it"


def _transient(
    label: str, item: Item, error: type[jobwatch.JobwatchError], note: str = ""
) -> list[Row]:
    """get_job: one short of giving up is cured, then the typed error; a wait rides it out."""
    n = _exhausting(item)
    rows = [Row(label, item, note=RESENT)] if item is Fault.RESET else []
    if item not in (Fault.STALL, Fault.DRIP):  # a tenth of a second per attempt: skip one
        rows.append(Row(label, item, times=n - 1, calls=GET_JOB))
    rows += [
        Row(label, item, times=n, expected=error, gets=n, calls=GET_JOB),
        Row(label, item, times=_ridden(item), calls=WAITS, note=note),
    ]
    return rows


def _permanent(label: str, item: Item, error: type[jobwatch.JobwatchError]) -> list[Row]:
    return [Row(label, item, expected=error, gets=1, transient=False, note=AT_ONCE)]


def _past_deadline(label: str, item: Item) -> Row:
    """A 429 whose wait ends after the 0.3 s deadline: RateLimited at once, every call."""
    return Row(
        label,
        item,
        expected=jobwatch.RateLimited,
        gets=1,
        timeout=DEADLINE,
        holds_others=True,
        note=PAST_DEADLINE,
    )


def _random(fault: Fault, error: type[jobwatch.JobwatchError], *, transient: bool) -> list[Row]:
    """p = 0.2 is ridden out; at p = 1 no GET gets through: get_job gives up, a wait times out."""
    label = f"Fault.{fault.name}"
    if not transient:
        return [
            Row(
                label,
                fault,
                probability=1.0,
                expected=error,
                gets=1,
                transient=False,
                note=AT_ONCE,
            )
        ]
    return [
        Row(label, fault, probability=0.2),
        Row(
            label,
            fault,
            probability=1.0,
            expected=error,
            gets=_exhausting(fault),
            calls=GET_JOB,
        ),
        Row(
            label,
            fault,
            probability=1.0,
            expected=jobwatch.JobTimeout,
            calls=WAITS,
            timeout=ENDLESS_DEADLINE,
            note=ENDLESS,
        ),
    ]


def _never_answered(label: str, item: Item, error: type[jobwatch.JobwatchError]) -> list[Row]:
    """A fresh client whose first GETs all fail: every call gives up after `attempts`."""
    n = _exhausting(item)
    return [
        Row(label, item, times=n - 1, fresh=True),
        Row(label, item, times=n, expected=error, gets=n, fresh=True),
    ]


RATE_LIMITER_ANSWERS = "the controller's rate limiter answered: the URL is right"

#: THE table. The tests below and the README's "Failure semantics" are generated from it.
TABLE: list[Row] = [
    # No answer, or a body cut off.
    *_transient("Fault.RESET", Fault.RESET, jobwatch.TransportError),
    *_transient("Fault.RESET_MID_BODY", Fault.RESET_MID_BODY, jobwatch.TransportError),
    *_transient("Fault.SHORT_BODY", Fault.SHORT_BODY, jobwatch.TransportError),
    *_transient("Fault.STALL", Fault.STALL, jobwatch.TransportError),
    *_transient("Fault.DRIP", Fault.DRIP, jobwatch.TransportError),
    # The controller, gorouter, nginx.
    *_transient("Fault.SERVER_ERROR", Fault.SERVER_ERROR, jobwatch.InternalServerError),
    *_transient("Fault.ROUTER_502", Fault.ROUTER_502, jobwatch.BadGateway),
    *_transient("Fault.ROUTER_404", Fault.ROUTER_404, jobwatch.ApiError),
    *_transient("Fault.ROUTER_503", Fault.ROUTER_503, jobwatch.ServiceUnavailable),
    *_transient("Fault.MAINTENANCE_503", Fault.MAINTENANCE_503, jobwatch.ServiceUnavailable),
    _past_deadline("Fault.RATE_LIMITED_429", Fault.RATE_LIMITED_429),
    *_permanent("Fault.INVALID_JSON", Fault.INVALID_JSON, jobwatch.MalformedResponse),
    *_permanent("Fault.WRONG_SHAPE", Fault.WRONG_SHAPE, jobwatch.MalformedResponse),
    *_permanent("Fault.HUGE_BODY", Fault.HUGE_BODY, jobwatch.MalformedResponse),
    # Every real answer the fake can give in place of a job.
    *_transient("FakeResponse.router_404()", FakeResponse.router_404(), jobwatch.ApiError),
    *_transient("FakeResponse.router_502()", FakeResponse.router_502(), jobwatch.BadGateway),
    *_transient(
        "FakeResponse.router_503()", FakeResponse.router_503(), jobwatch.ServiceUnavailable
    ),
    *_transient(
        "FakeResponse.router_503_connection_limit()",
        FakeResponse.router_503_connection_limit(),
        jobwatch.ServiceUnavailable,
    ),
    *_transient("FakeResponse.bare_502()", FakeResponse.bare_502(), jobwatch.BadGateway),
    *_transient(
        "FakeResponse.maintenance_503()",
        FakeResponse.maintenance_503(),
        jobwatch.ServiceUnavailable,
    ),
    *_transient(
        "FakeResponse.db_unavailable_503()",
        FakeResponse.db_unavailable_503(),
        jobwatch.ServiceUnavailable,
    ),
    *_transient(
        "FakeResponse.uaa_unavailable_502()",
        FakeResponse.uaa_unavailable_502(),
        jobwatch.BadGateway,
    ),
    *(
        row
        for status in (408, 504, 520, 521, 522, 523, 524)
        for row in _transient(
            f"FakeResponse.gateway_error({status})",
            FakeResponse.gateway_error(status),
            jobwatch.ApiError,
        )
    ),
    _past_deadline("FakeResponse.rate_limited()", FakeResponse.rate_limited()),
    *_transient(
        "FakeResponse.rate_limited(0)",
        FakeResponse.rate_limited(0),
        jobwatch.RateLimited,
    ),
    Row(
        "FakeResponse.rate_limited_legacy(now + 1)",
        LegacyRateLimit(1),
        takes=(0.9, 3.5),
        note="its epoch, read against the answer's Date, asks for 1-2 s, not an hour",
    ),
    _past_deadline("FakeResponse.rate_limited_legacy(now + 600)", LegacyRateLimit(600)),
    *_permanent("FakeResponse.error(400)", FakeResponse.error(400), jobwatch.BadRequest),
    *_permanent("FakeResponse.error(401)", FakeResponse.error(401), jobwatch.Unauthorized),
    *_permanent("FakeResponse.error(403)", FakeResponse.error(403), jobwatch.Forbidden),
    *_permanent("FakeResponse.error(404)", FakeResponse.error(404), jobwatch.NotFound),
    *_permanent("FakeResponse.error(409)", FakeResponse.error(409), jobwatch.Conflict),
    *_permanent("FakeResponse.error(422)", FakeResponse.error(422), jobwatch.UnprocessableEntity),
    *_transient("FakeResponse.error(500)", FakeResponse.error(500), jobwatch.InternalServerError),
    *_permanent("FakeResponse.error(501)", FakeResponse.error(501), jobwatch.ApiError),
    *_transient("FakeResponse.error(503)", FakeResponse.error(503), jobwatch.ServiceUnavailable),
    *_transient("FakeResponse.error(504)", FakeResponse.error(504), jobwatch.ApiError),
    *_permanent("FakeResponse.error(505)", FakeResponse.error(505), jobwatch.ApiError),
    # At random, with a probability per GET.
    *_random(Fault.RESET, jobwatch.TransportError, transient=True),
    *_random(Fault.RESET_MID_BODY, jobwatch.TransportError, transient=True),
    *_random(Fault.SHORT_BODY, jobwatch.TransportError, transient=True),
    *_random(Fault.STALL, jobwatch.TransportError, transient=True),
    *_random(Fault.DRIP, jobwatch.TransportError, transient=True),
    *_random(Fault.SERVER_ERROR, jobwatch.InternalServerError, transient=True),
    *_random(Fault.ROUTER_502, jobwatch.BadGateway, transient=True),
    *_random(Fault.ROUTER_404, jobwatch.ApiError, transient=True),
    *_random(Fault.ROUTER_503, jobwatch.ServiceUnavailable, transient=True),
    *_random(Fault.MAINTENANCE_503, jobwatch.ServiceUnavailable, transient=True),
    # Retry-After: 1 at every GET: the first 429 already asks to wait past the deadline.
    *(
        attrs.evolve(row, transient=True, timeout=DEADLINE, holds_others=True, note=PAST_DEADLINE)
        for row in _random(Fault.RATE_LIMITED_429, jobwatch.RateLimited, transient=False)
    ),
    *_random(Fault.INVALID_JSON, jobwatch.MalformedResponse, transient=False),
    *_random(Fault.WRONG_SHAPE, jobwatch.MalformedResponse, transient=False),
    *_random(Fault.HUGE_BODY, jobwatch.MalformedResponse, transient=False),
    # A client that has never had an answer: a wrong URL must stay a quick error.
    *_never_answered("Fault.RESET", Fault.RESET, jobwatch.TransportError),
    *_never_answered("Fault.ROUTER_404", Fault.ROUTER_404, jobwatch.ApiError),
    *_never_answered("Fault.ROUTER_502", Fault.ROUTER_502, jobwatch.BadGateway),
    *_never_answered("Fault.ROUTER_503", Fault.ROUTER_503, jobwatch.ServiceUnavailable),
    *_never_answered("Fault.MAINTENANCE_503", Fault.MAINTENANCE_503, jobwatch.ServiceUnavailable),
    *_never_answered(
        "FakeResponse.gateway_error(522)", FakeResponse.gateway_error(522), jobwatch.ApiError
    ),
    *(
        attrs.evolve(row, fresh=True)
        for row in _transient(
            "FakeResponse.rate_limited(0)",
            FakeResponse.rate_limited(0),
            jobwatch.RateLimited,
            note=RATE_LIMITER_ANSWERS,
        )
    ),
]

#: Every (row, call) the matrix runs.
CASES = [(row, call) for row in TABLE for call in row.calls]


# -- what a fault looks like on the wire ------------------------------------------------------

#: The answers the fake serves for its HTTP faults (the router's name the fake's own route).
_FAULT_ANSWERS: dict[Fault, FakeResponse] = {
    Fault.SERVER_ERROR: FakeResponse.error(500),
    Fault.ROUTER_502: FakeResponse.router_502(),
    Fault.ROUTER_404: FakeResponse.router_404(),
    Fault.ROUTER_503: FakeResponse.router_503(),
    Fault.MAINTENANCE_503: FakeResponse.maintenance_503(),
    Fault.RATE_LIMITED_429: FakeResponse.rate_limited(1),
}


def _answer(item: Item) -> FakeResponse | None:
    """The HTTP answer behind an item (None for the faults of the connection or of a 200)."""
    if isinstance(item, LegacyRateLimit):
        return FakeResponse.rate_limited_legacy(0)
    if isinstance(item, Fault):
        return _FAULT_ANSWERS.get(item)
    return item


def _closes_the_gate(item: Item) -> bool:
    """Whether failures of the only job waited on close the outage gate.

    A 429 is the controller's own answer, not a failure of the API; the
    controller's JSON 500 is more often about that job than about the API.
    """
    answer = _answer(item)
    if answer is None:
        return True
    controllers_500 = answer.status == 500 and answer.content_type.startswith("application/json")
    return answer.status != 429 and not controllers_500


# -- the matrix -------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("no_server_errors_logged")


def _client(cc: FakeCloudController, *, slow: bool = True) -> jobwatch.Client:
    """`slow`: the short request timeout the stalling faults need; others get a roomy one,
    so a loaded machine's 100 ms pause is never taken for a fault (an extra GET)."""
    timeout = REQUEST_TIMEOUT if slow else 5.0
    return jobwatch.Client(cc.url, token=TOKEN, poll=POLL, retry=RETRY, request_timeout=timeout)


def _add_faulty_job(cc: FakeCloudController, row: Row) -> str:
    if row.probability is not None:
        assert isinstance(row.item, Fault)
        return cc.add_job(faults={row.item: row.probability})
    guid = cc.add_job()
    item = row.item.response(cc) if isinstance(row.item, LegacyRateLimit) else row.item
    cc.inject(guid, *[item] * row.times)
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
    if row.fresh:  # a healthy job beside it would be an answer
        return (await cf.wait_for_jobs([guid], timeout=row.timeout))[guid]
    healthy = cc.add_job(states=("PROCESSING", "COMPLETE"))
    outcomes = await cf.wait_for_jobs([healthy, guid], timeout=row.timeout)
    assert list(outcomes) == [healthy, guid]
    other = outcomes[healthy]
    assert other.job is not None
    if row.holds_others:
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


@pytest.mark.parametrize(("row", "method"), CASES, ids=[f"{r.id}-{m}" for r, m in CASES])
async def test_fault_matrix(cc: FakeCloudController, row: Row, method: str) -> None:
    """Each fault, through each way to call, ends as the table says after the right GETs."""
    guid = _add_faulty_job(cc, row)
    async with _client(cc, slow=row.item in (Fault.STALL, Fault.DRIP)) as cf:
        if not row.fresh:
            warm = cc.add_job(states=("COMPLETE",))
            assert (await cf.get_job(warm)).state == "COMPLETE"  # the client has an answer
        started = time.monotonic()
        outcome = await METHODS[method](cf, cc, row, guid)
        elapsed = time.monotonic() - started
        stats = cf.stats
        assert stats.waiting == 0

    if row.expected is RETRIED:
        assert outcome.error is None, f"{row.label}: {outcome.error!r}"
        assert outcome.job is not None
        assert outcome.job.guid == guid
        assert outcome.job.state == ("PROCESSING" if method == "get_job" else "COMPLETE")
        if row.probability is None:
            answers = 1 if method == "get_job" else 2  # PROCESSING, then COMPLETE
            assert cc.polls(guid) == row.times + answers
        if row.takes is not None:
            assert row.takes[0] <= elapsed <= row.takes[1], elapsed
        if method in WAITS and row.probability is None and row.attempts > CLOSE_AFTER:
            # The only job left failing, again and again: the client waited behind one probe.
            assert stats.outages == _closes_the_gate(row.item), stats
        assert stats.unavailable_since is None
    elif row.expected is jobwatch.JobTimeout:
        error = outcome.error
        assert type(error) is jobwatch.JobTimeout, f"{row.label}: {error!r}"
        assert error.job is None  # the job never got through
        assert cc.polls(guid) >= 1
        assert row.timeout - 0.01 <= elapsed, elapsed
    else:
        error = outcome.error
        assert type(error) is row.expected, f"{row.label}: {error!r}"
        assert cc.polls(guid) == row.gets
        assert error.transient is row.transient
        answer = _answer(row.item)
        if isinstance(error, jobwatch.ApiError):
            assert answer is not None
            assert error.status == answer.status
            assert error.router_error == answer.headers.get("X-Cf-Routererror")
            assert error.request_id
        if isinstance(error, jobwatch.MalformedResponse):
            assert error.status == 200
        if isinstance(error, jobwatch.TransportError):
            assert error.attempts == ATTEMPTS
        if row.note == PAST_DEADLINE:
            assert isinstance(error, jobwatch.RateLimited)
            assert error.retry_after is not None
            assert error.retry_after > row.timeout
        assert TOKEN not in str(error)
        if row.gets == 1 and not row.holds_others:
            assert elapsed < 0.5
    assert elapsed < row.timeout + SLACK


def test_table_covers_every_fault_and_every_canned_response() -> None:
    """No fault mode of the fake is left out, for a status check and for a wait."""
    for calls in (GET_JOB, WAITS):
        rows = [row for row in TABLE if set(calls) <= set(row.calls) and not row.fresh]
        assert {row.item for row in rows if row.probability is None} >= set(Fault)
        assert {row.item for row in rows if row.probability == 1.0} == set(Fault)
    labels = {row.label for row in TABLE}
    canned = (
        "router_404()",
        "router_502()",
        "router_503()",
        "router_503_connection_limit()",
        "bare_502()",
        "maintenance_503()",
        "db_unavailable_503()",
        "uaa_unavailable_502()",
        "rate_limited()",
        "rate_limited(0)",
        "rate_limited_legacy(now + 1)",
        "rate_limited_legacy(now + 600)",
        *(f"gateway_error({status})" for status in (408, 504, 520, 521, 522, 523, 524)),
        *(f"error({status})" for status in (400, 401, 403, 404, 409, 422, 500, 501, 503, 504)),
        "error(505)",
    )
    for name in canned:
        assert f"FakeResponse.{name}" in labels, name
    assert len({(row.id, call) for row, call in CASES}) == len(CASES)


def test_every_transient_fault_bounds_a_status_check_and_not_a_wait() -> None:
    """Each transient fault: get_job gives up after `attempts`, a wait rides out more of it.

    Except on a client that has never had an answer: there a wait gives up too.
    """
    groups = dict.fromkeys((row.label, row.fresh) for row in TABLE if row.transient)
    checked = 0
    for label, fresh in groups:
        rows = [r for r in TABLE if (r.label, r.fresh) == (label, fresh) and r.probability is None]
        if len(rows) == 1:
            continue  # a 429 whose wait is the server's: raised or waited out at once
        given_up = [r.attempts for r in rows if "get_job" in r.calls and r.expected]
        assert given_up == [ATTEMPTS], label
        waits = [r for r in rows if set(WAITS) <= set(r.calls)]
        if fresh and all(r.note != RATE_LIMITER_ANSWERS for r in rows):
            assert [r.attempts for r in waits if r.expected] == [ATTEMPTS], label
        else:
            assert not [r for r in waits if r.expected], label
            assert max(r.attempts for r in waits) > ATTEMPTS, label
        checked += 1
    assert checked >= 30
    assert sum(fresh for _, fresh in groups) >= 5


# -- the outage gate, one wait alone ----------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "closes"),
    [
        (FakeResponse.router_404(), True),
        (FakeResponse.db_unavailable_503(), True),
        (FakeResponse.error(500), False),  # the controller's own 500: about that job
    ],
    ids=["router_404", "db_unavailable_503", "error_500"],
)
async def test_the_only_job_waited_on_closes_the_gate_unless_the_controller_says_500(
    cc: FakeCloudController, item: FakeResponse, closes: bool
) -> None:
    """Three failures of the one job waited on close the gate: probes, then it reopens."""
    guid = cc.add_job()
    cc.inject(guid, *[item] * RIDDEN)
    async with _client(cc) as cf:
        await cf.get_job(cc.add_job(states=("COMPLETE",)))
        seen = []

        def look(job: jobwatch.Job) -> None:
            seen.append(cf.stats.unavailable_since)

        job = await cf.wait_for_job(guid, timeout=5, on_update=look)
        stats = cf.stats
    assert job.state == "COMPLETE"
    assert stats.outages == int(closes)
    assert (stats.outage_seconds > 0) is closes
    assert seen == [None, None]  # each answer found the gate open again
    assert cc.polls(guid) == RIDDEN + 2


@pytest.mark.parametrize(
    "item",
    [
        FakeResponse.error(500),
        FakeResponse.db_unavailable_503(),
        FakeResponse.uaa_unavailable_502(),
    ],
    ids=["error_500", "db_unavailable_503", "uaa_unavailable_502"],
)
async def test_the_controllers_own_5xx_is_an_answer_a_fresh_wait_rides_it_out(
    cc: FakeCloudController, item: FakeResponse
) -> None:
    """The controller's JSON envelope proves the URL right: not the never-answered bound."""
    guid = cc.add_job()
    cc.inject(guid, *[item] * RIDDEN)
    async with _client(cc) as cf:
        job = await cf.wait_for_job(guid, timeout=5)
    assert job.state == "COMPLETE"
    assert cc.polls(guid) == RIDDEN + 2


# -- a 50 MiB answer ----------------------------------------------------------------------


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


# -- the docs' copy of the table (docs/failures.md) ------------------------------------------


def _cell(row: Row) -> str:
    if row.expected is RETRIED:
        text = "retried to success"
    elif row.expected is jobwatch.JobTimeout:
        text = f"`JobTimeout` at the {row.timeout:g} s deadline"
    else:
        text = f"`{row.expected.__name__}`"
        text += " at once" if row.gets == 1 else f" after {row.gets} GETs"
    if row.note == PAST_DEADLINE:
        text += f" (its wait ends past the {row.timeout:g} s deadline)"
    elif row.note and row.note not in (AT_ONCE, ENDLESS):
        text += f" ({row.note})"
    return f"{row.how}: {text}"


def failure_table() -> list[str]:
    """TABLE as the Markdown table of docs/failures.md, one line per fault."""
    lines = [
        "| Fault (as `FakeCloudController` serves it) | Kind "
        f"| `get_job` (a status check, `attempts={ATTEMPTS}`) "
        "| `wait_for_job`, `wait_for_jobs` |",
        "|---|---|---|---|",
    ]
    for label, fresh in dict.fromkeys((row.label, row.fresh) for row in TABLE):
        rows = [row for row in TABLE if (row.label, row.fresh) == (label, fresh)]
        name = f"`{label}`" + (", to a fresh client (no answer yet)" if fresh else "")
        kind = "transient" if rows[0].transient else "permanent"
        cells = [
            "; ".join(_cell(r) for r in rows if set(calls) <= set(r.calls)) or "-"
            for calls in (GET_JOB, WAITS)
        ]
        lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    return lines


def test_docs_failure_semantics_is_this_table() -> None:
    """docs/failures.md ("Every fault, tested") carries the table above, line for line."""
    page = Path(__file__).resolve().parents[1] / "docs" / "failures.md"
    text = page.read_text(encoding="utf-8")
    section = text.split("\n## Every fault, tested\n", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table == failure_table(), "\n" + "\n".join(failure_table())


# -- what the fake serves in place of a job -------------------------------------------------


async def test_error_bodies_the_fake_serves_conform_to_the_schema(
    cc: FakeCloudController,
) -> None:
    """Every JSON error of the table (and the fake's own 401/404) has the controller's shape."""
    envelope, bare = schema_validator("errors"), schema_validator("error")
    guid = cc.add_job()
    items = dict.fromkeys(row.item for row in TABLE if row.probability is None)
    served = [
        item.response(cc) if isinstance(item, LegacyRateLimit) else item
        for item in items
        if not isinstance(item, Fault) or item in _FAULT_ANSWERS
    ]
    cc.inject(guid, *served)
    checked = 0
    async with aiohttp.ClientSession() as http:
        for item in served:
            async with http.get(cc.job_url(guid)) as response:
                status, text = response.status, await response.text()
            assert status >= 400
            if not text.startswith("{"):
                continue  # the router's, nginx's and the load balancers' plain text or HTML
            body = json.loads(text)
            (bare if item == FakeResponse.bare_502() else envelope).validate(body)
            assert body.get("errors") or set(body) == {"code", "title", "detail"}, body
            checked += 1
        for headers in ({}, {"Authorization": "bearer wrong"}):
            async with http.get(cc.job_url("no-such-job"), headers=headers) as response:
                envelope.validate(await response.json())
            checked += 1
    assert checked == 20 + 2  # the JSON errors of the table, then the fake's own two
