"""`JobPoll`, the per-guid state machine, driven directly: answers in, schedule out.

No event loop, no HTTP: each test feeds answers and failures with explicit
`now` values and checks the time it says to poll next (or None: the loop is
over) and what its waiters were told.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import pytest

from jobwatch import Job, JobState, JobwatchError, PollPolicy, RetryPolicy
from jobwatch._errors import (
    MalformedResponse,
    ServiceUnavailable,
    TransportError,
    api_error,
)
from jobwatch._gate import RetryRules
from jobwatch._models import structure_job
from jobwatch._poller import JobPoll

from . import helpers

INF = float("inf")
API = "https://api.example.org"
GUID = "c9a4e3a2-5b1d-4f0e-9a57-2f4d1c8e7b60"
URL = f"{API}/v3/jobs/{GUID}"
CREATED = "2024-05-01T12:00:00Z"

#: No jitter, doubling: every interval is a power of two, every sum exact.
EXACT = PollPolicy(
    initial=1,
    multiplier=2,
    maximum=4,
    polling_initial=5,
    polling_multiplier=2,
    polling_maximum=20,
    jitter=0,
)


def job_body(
    state: str, updated_at: str = CREATED, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The job's body in `state`, as the controller serves it."""
    return helpers.job_body(
        GUID,
        state,
        url=URL,
        created_at=CREATED,
        updated_at=updated_at,
        operation="service_instance.create",
        errors=errors,
    )


def job(state: str, updated_at: str = CREATED, errors: list[dict[str, Any]] | None = None) -> Job:
    """The `Job` the transport would hand over for that body (the library's own structuring)."""
    return structure_job(job_body(state, updated_at, errors))


class Recorder:
    """A `Waiter` that records what the poll loop tells it."""

    def __init__(self, *, until_terminal: bool = True, deadline: float = INF) -> None:
        self.deadline = deadline
        self.until_terminal = until_terminal
        self.updates: list[Job] = []
        self.finished: list[tuple[Job | None, JobwatchError | None]] = []

    def update(self, job: Job) -> None:
        self.updates.append(job)

    def finish(self, job: Job | None, error: JobwatchError | None) -> None:
        self.finished.append((job, error))


def poll_with(*waiters: Recorder) -> JobPoll:
    poll = JobPoll(GUID)
    for waiter in waiters:
        poll.add(waiter)
    return poll


def answer_repeatedly(
    poll: JobPoll, answer: Job, start: float, n: int, policy: PollPolicy, rng: random.Random
) -> list[float]:
    """Feed `answer` `n` times, each at the time the previous one said; return those times."""
    times: list[float] = []
    now = start
    for _ in range(n):
        at = poll.succeeded(answer, now, policy, rng)
        assert at is not None
        times.append(at)
        now = at
    return times


# --- the schedule of a job still going ---------------------------------------------------


def test_processing_intervals_start_at_initial_and_grow_to_maximum() -> None:
    """A PROCESSING job: initial, x multiplier each poll, capped at maximum (no jitter)."""
    poll = poll_with(Recorder())
    times = answer_repeatedly(poll, job("PROCESSING"), 100.0, 5, EXACT, random.Random(0))
    assert times == [101.0, 103.0, 107.0, 111.0, 115.0]


def test_jittered_intervals_stay_in_their_band_and_replay_from_the_seed() -> None:
    """Each interval is base * U(1 - jitter, 1 + jitter), drawn from the rng it is given."""
    policy = PollPolicy(initial=2, multiplier=1.5, maximum=6, jitter=0.25)
    poll = poll_with(Recorder())
    times = answer_repeatedly(poll, job("PROCESSING"), 0.0, 8, policy, random.Random(42))
    bases = [2.0, 3.0, 4.5, 6.0, 6.0, 6.0, 6.0, 6.0]
    replay = random.Random(42)
    previous = 0.0
    for step, (base, at) in enumerate(zip(bases, times, strict=True)):
        assert base * 0.75 <= at - previous <= base * 1.25
        assert at == previous + policy.interval(JobState.PROCESSING, step, replay)
        previous = at
    # Jitter really applies: the five capped intervals are not all 6 s.
    capped = [b - a for a, b in itertools.pairwise(times[2:])]
    assert len(set(capped)) == 5
    other = answer_repeatedly(
        poll_with(Recorder()), job("PROCESSING"), 0.0, 8, policy, random.Random(43)
    )
    assert other != times


def test_polling_state_uses_the_polling_schedule() -> None:
    """A POLLING job (broker work): polling_initial, x polling_multiplier, to polling_maximum."""
    poll = poll_with(Recorder())
    times = answer_repeatedly(poll, job("POLLING"), 0.0, 4, EXACT, random.Random(0))
    assert times == [5.0, 15.0, 35.0, 55.0]


def test_a_state_change_restarts_the_schedule_of_the_new_state() -> None:
    """Entering another state starts that state's schedule from its first interval."""
    poll = poll_with(Recorder())
    rng = random.Random(0)
    assert answer_repeatedly(poll, job("PROCESSING"), 0.0, 3, EXACT, rng) == [1.0, 3.0, 7.0]
    polling = job("POLLING", "2024-05-01T12:00:07Z")
    assert answer_repeatedly(poll, polling, 7.0, 2, EXACT, rng) == [12.0, 22.0]
    back = job("PROCESSING", "2024-05-01T12:00:22Z")
    assert poll.succeeded(back, 22.0, EXACT, rng) == 23.0


def test_an_unknown_state_polls_like_processing_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A state jobwatch does not know: one warning when entered, then the PROCESSING schedule."""
    poll = poll_with(Recorder())
    with caplog.at_level(logging.WARNING, logger="jobwatch"):
        times = answer_repeatedly(poll, job("CANCELING"), 0.0, 3, EXACT, random.Random(0))
    assert times == [1.0, 3.0, 7.0]
    warnings = [r for r in caplog.records if r.name == "jobwatch"]
    assert len(warnings) == 1
    assert "CANCELING" in warnings[0].getMessage()


# --- the end of the loop, and what waiters are told ---------------------------------------


@pytest.mark.parametrize("state", ["COMPLETE", "FAILED"])
def test_a_terminal_answer_ends_the_loop_and_finishes_every_waiter(state: str) -> None:
    """COMPLETE or FAILED: None (no next poll), each waiter updated then finished, no error.

    A FAILED job is not an error of the loop: turning it into `JobFailed` is each waiter's.
    """
    first, second = Recorder(), Recorder()
    poll = poll_with(first, second)
    running = job("PROCESSING")
    assert poll.succeeded(running, 0.0, EXACT, random.Random(0)) == 1.0
    errors = [{"code": 10008, "title": "CF-UnprocessableEntity", "detail": "broker said no"}]
    ended = job(state, "2024-05-01T12:00:01Z", errors if state == "FAILED" else None)
    assert poll.succeeded(ended, 1.0, EXACT, random.Random(0)) is None
    for waiter in (first, second):
        assert waiter.updates == [running, ended]
        assert waiter.finished == [(ended, None)]
    assert poll.waiters == []
    assert poll.last is ended


def test_waiters_are_updated_on_a_change_of_state_or_updated_at_only() -> None:
    """The first answer, a new `updated_at`, a new state: an update each; a repeat: none."""
    waiter = Recorder()
    poll = poll_with(waiter)
    rng = random.Random(0)
    answers = [
        job("PROCESSING"),
        job("PROCESSING"),  # the same job again
        job("PROCESSING", "2024-05-01T12:00:03Z"),  # the controller touched it
        job("PROCESSING", "2024-05-01T12:00:03Z"),
        job("POLLING", "2024-05-01T12:00:03Z"),  # a new state, same stamp
        job("POLLING", "2024-05-01T12:00:03Z"),
    ]
    now = 0.0
    for answer in answers:
        at = poll.succeeded(answer, now, EXACT, rng)
        assert at is not None
        now = at
    assert waiter.updates == [answers[0], answers[2], answers[4]]
    assert waiter.finished == []


def test_a_waiter_joining_a_running_loop_sees_the_last_job_at_once() -> None:
    """`add` hands a late waiter the job last seen; before any answer there is nothing to hand."""
    early = Recorder()
    poll = poll_with(early)
    assert early.updates == []
    running = job("PROCESSING")
    poll.succeeded(running, 0.0, EXACT, random.Random(0))
    late = Recorder()
    poll.add(late)
    assert late.updates == [running]
    assert early.updates == [running]


def test_a_status_check_is_satisfied_by_the_first_answer() -> None:
    """`until_terminal=False`: finished with the first answer; a wait on the job goes on."""
    check, wait = Recorder(until_terminal=False), Recorder()
    poll = poll_with(check, wait)
    running = job("PROCESSING")
    assert poll.succeeded(running, 0.0, EXACT, random.Random(0)) == 1.0
    assert check.finished == [(running, None)]
    assert wait.finished == []
    assert poll.waiters == [wait]


def test_a_loop_with_only_a_status_check_ends_with_its_answer() -> None:
    """Nobody waits for the end: the loop is over after the first answer."""
    check = Recorder(until_terminal=False)
    poll = poll_with(check)
    running = job("PROCESSING")
    assert poll.succeeded(running, 0.0, EXACT, random.Random(0)) is None
    assert check.finished == [(running, None)]


def test_remove_says_when_the_last_waiter_has_left() -> None:
    """`remove` is True once nobody is left; removing a stranger changes nothing."""
    first, second = Recorder(), Recorder()
    poll = poll_with(first, second)
    assert poll.remove(Recorder()) is False
    assert poll.remove(first) is False
    assert poll.remove(second) is True
    assert poll.waiters == []


# --- failures -------------------------------------------------------------------------------

NOT_FOUND = b'{"errors":[{"code":10010,"title":"CF-ResourceNotFound","detail":"Job not found"}]}'
SERVER_ERROR = b'{"errors":[{"code":10001,"title":"UnknownError","detail":"An unknown error"}]}'
ROUTER_404 = b"404 Not Found: Requested route ('api.example.org') does not exist.\n"


def _api(status: int, body: bytes = b"", router_error: str | None = None) -> JobwatchError:
    return api_error(status, body, request_id="req-1", url=URL, router_error=router_error)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        pytest.param(
            TransportError("the server closed the connection", url=URL), True, id="reset"
        ),
        pytest.param(TransportError("timed out waiting for the API", url=URL), True, id="timeout"),
        pytest.param(_api(408), True, id="408"),
        pytest.param(_api(429, b'{"errors":[{"title":"CF-RateLimitExceeded"}]}'), True, id="429"),
        pytest.param(_api(500, SERVER_ERROR), True, id="500-controller"),
        pytest.param(_api(502, b"502 Bad Gateway: Registered endpoint failed"), True, id="502"),
        pytest.param(_api(503), True, id="503"),
        pytest.param(_api(404, ROUTER_404, router_error="unknown_route"), True, id="404-router"),
        pytest.param(_api(404, b"<html>not found</html>"), True, id="404-not-the-envelope"),
        pytest.param(
            TransportError("certificate verify failed", url=URL, transient=False),
            False,
            id="bad-certificate",
        ),
        pytest.param(_api(404, NOT_FOUND), False, id="404-controller"),
        pytest.param(_api(401, b'{"errors":[{"title":"CF-InvalidAuthToken"}]}'), False, id="401"),
        pytest.param(_api(403, b'{"errors":[{"title":"CF-NotAuthorized"}]}'), False, id="403"),
        pytest.param(_api(501), False, id="501"),
        pytest.param(_api(505), False, id="505"),
        pytest.param(
            MalformedResponse("the body is not JSON", status=200, body="<html>", url=URL),
            False,
            id="malformed-200",
        ),
    ],
)
def test_a_transient_error_is_retried_and_any_other_ends_the_loop(
    error: JobwatchError, transient: bool
) -> None:
    """The error's own `transient` flag decides: retry after a backoff, or finish with it.

    Either way the waiters keep the last job seen.
    """
    waiter = Recorder()
    poll = poll_with(waiter)
    running = job("PROCESSING")
    poll.succeeded(running, 0.0, EXACT, random.Random(0))
    rules = RetryRules(RetryPolicy(initial=1, maximum=8, attempts=6))
    assert error.transient is transient
    at = poll.failed(error, 1.0, rules)
    if transient:
        assert at is not None
        assert 2.0 <= at <= 3.0  # backoff(1): initial, plus up to initial of jitter
        assert poll.failures == 1
        assert waiter.finished == []
    else:
        assert at is None
        assert waiter.finished == [(running, error)]
        assert poll.waiters == []


def test_the_backoff_grows_exponentially_to_its_maximum() -> None:
    """Failure n waits min(initial * 2**(n-1), maximum), plus up to `initial` of jitter."""
    poll = poll_with(Recorder())
    rules = RetryRules(RetryPolicy(initial=1, maximum=4, attempts=100))
    now = 0.0
    waits: list[float] = []
    for _ in range(6):
        at = poll.failed(TransportError("reset", url=URL), now, rules)
        assert at is not None
        waits.append(at - now)
        now = at
    for wait, base in zip(waits, [1, 2, 4, 4, 4, 4], strict=True):
        assert base <= wait <= base + 1
    assert poll.failures == 6


def test_status_checks_get_the_error_after_attempts_failures_and_waits_go_on() -> None:
    """After `attempts` consecutive failures a status check ends; a wait keeps trying.

    The error reports how many attempts were made; an answer resets the count.
    """
    check, wait = Recorder(until_terminal=False), Recorder()
    poll = poll_with(check, wait)
    rules = RetryRules(RetryPolicy(initial=1, maximum=4, attempts=3))
    errors = [TransportError("reset", url=URL) for _ in range(3)]
    now = 0.0
    for n, error in enumerate(errors, 1):
        at = poll.failed(error, now, rules)
        assert at is not None  # the wait is still there
        assert poll.failures == n
        assert check.finished == ([] if n < 3 else [(None, error)])
        now = at
    assert errors[2].attempts == 3
    assert wait.finished == []
    assert poll.waiters == [wait]
    running = job("PROCESSING")
    assert poll.succeeded(running, now, EXACT, random.Random(0)) == now + 1
    assert poll.failures == 0
    poll.failed(TransportError("reset", url=URL), now + 1, rules)
    assert poll.failures == 1


def test_bounded_failures_end_every_wait_after_attempts() -> None:
    """`bounded` (the API never answered): after `attempts` failures every waiter ends."""
    check, wait = Recorder(until_terminal=False), Recorder()
    poll = poll_with(check, wait)
    rules = RetryRules(RetryPolicy(initial=1, maximum=4, attempts=2))
    first = TransportError("connection refused", url=URL)
    assert poll.failed(first, 0.0, rules, bounded=True) is not None
    assert check.finished == wait.finished == []
    second = TransportError("connection refused", url=URL)
    assert poll.failed(second, 2.0, rules, bounded=True) is None
    assert check.finished == wait.finished == [(None, second)]
    assert second.attempts == 2


def test_a_server_wait_longer_than_the_backoff_replaces_it() -> None:
    """A `Retry-After` of 30 s on a 503 puts the next attempt 30 s on, not after the backoff."""
    poll = poll_with(Recorder())
    rules = RetryRules(RetryPolicy(initial=1, maximum=4, attempts=6))
    error = ServiceUnavailable(503, url=URL, retry_after=30.0)
    assert poll.failed(error, 10.0, rules) == 40.0


def test_a_server_wait_past_a_deadline_gives_that_waiter_the_error_now() -> None:
    """A wait whose deadline falls inside the server's wait gets the error at once.

    Waiters with a later deadline stay; one whose deadline is already gone is left
    to its own timer (which reports `JobTimeout`).
    """
    inside, later, gone, never = (
        Recorder(deadline=20.0),
        Recorder(deadline=50.0),
        Recorder(deadline=5.0),
        Recorder(),
    )
    poll = poll_with(inside, later, gone, never)
    rules = RetryRules(RetryPolicy(initial=1, maximum=4, attempts=6))
    error = ServiceUnavailable(503, url=URL, retry_after=30.0)
    assert poll.failed(error, 10.0, rules) == 40.0
    assert inside.finished == [(None, error)]
    assert later.finished == gone.finished == never.finished == []
    assert poll.waiters == [later, gone, never]


def test_a_server_wait_past_every_deadline_ends_the_loop() -> None:
    """When the server's wait outlasts every waiter's deadline, nobody is left: None."""
    waiter = Recorder(deadline=20.0)
    poll = poll_with(waiter)
    rules = RetryRules(RetryPolicy(initial=1, maximum=4, attempts=6))
    error = ServiceUnavailable(503, url=URL, retry_after=30.0)
    assert poll.failed(error, 10.0, rules) is None
    assert waiter.finished == [(None, error)]
