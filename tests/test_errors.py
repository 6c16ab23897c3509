"""The exception tree: classes per status, the three error body shapes, pickling."""

from __future__ import annotations

import pickle

import pytest

import jobwatch
from jobwatch import ErrorDetail, Job, JobState
from jobwatch._errors import STATUS_ERRORS, api_error, parse_error_body

URL = "https://api.example.org/v3/jobs/abc"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, jobwatch.BadRequest),
        (401, jobwatch.Unauthorized),
        (403, jobwatch.Forbidden),
        (404, jobwatch.NotFound),
        (409, jobwatch.Conflict),
        (422, jobwatch.UnprocessableEntity),
        (429, jobwatch.RateLimited),
        (500, jobwatch.InternalServerError),
        (502, jobwatch.BadGateway),
        (503, jobwatch.ServiceUnavailable),
        (418, jobwatch.ApiError),
        (504, jobwatch.ApiError),
    ],
)
def test_each_status_maps_to_its_class(status: int, cls: type[jobwatch.ApiError]) -> None:
    """Every documented status has its class; others are a plain ApiError."""
    envelope = (
        b'{"errors":[{"code":10010,"title":"CF-ResourceNotFound","detail":"Job not found"}]}'
    )
    error = api_error(status, envelope, request_id=None, url=URL)
    assert type(error) is cls
    assert error.status == status


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        *[(408, True), (429, True), (500, True), (501, False), (502, True), (503, True)],
        *[(504, True), (505, False), (507, True), (520, True), (524, True), (599, True)],
        *[(400, False), (401, False), (403, False), (409, False), (422, False), (418, False)],
    ],
)
def test_which_statuses_are_transient(status: int, transient: bool) -> None:
    """408, 429 and every 5xx but 501 and 505 are worth another attempt (DESIGN section 3)."""
    assert api_error(status, b"", request_id=None, url=URL).transient is transient


def test_the_routers_404_is_not_the_jobs() -> None:
    """gorouter's unknown_route (the API VMs are gone) is transient, and never NotFound."""
    text = b"404 Not Found: Requested route ('api.example.org') does not exist.\n"
    routed = api_error(404, text, request_id=None, url=URL, router_error="unknown_route")
    assert type(routed) is jobwatch.ApiError
    assert routed.transient
    assert routed.router_error == "unknown_route"
    assert "unknown_route" in str(routed)
    # Not the controller's envelope (a load balancer's page): the API is not there either.
    assert api_error(404, b"<html>nope</html>", request_id=None, url=URL).transient
    envelope = (
        b'{"errors":[{"code":10010,"title":"CF-ResourceNotFound","detail":"Job not found"}]}'
    )
    job_gone = api_error(404, envelope, request_id=None, url=URL)
    assert type(job_gone) is jobwatch.NotFound
    assert not job_gone.transient


def test_message_names_status_error_and_request_id() -> None:
    """The message says what happened, where, and how to find it in the logs."""
    body = b'{"errors":[{"code":10010,"title":"CF-ResourceNotFound","detail":"Job not found"}]}'
    error = api_error(404, body, request_id="5e1c-rid", url=URL)
    assert str(error) == (
        "404 NotFound for GET /v3/jobs/abc: CF-ResourceNotFound (10010) Job not found"
        " [request id 5e1c-rid]"
    )


def test_envelope_served_as_text_plain_is_parsed() -> None:
    """The rate limiter's JSON arrives as text/plain; the content type is not trusted."""
    body = (
        '{"errors":[{"code":10013,"title":"CF-RateLimitExceeded","detail":"Rate Limit Exceeded"}]}'
    )
    assert parse_error_body(body) == (
        ErrorDetail(10013, "CF-RateLimitExceeded", "Rate Limit Exceeded"),
    )


def test_bare_error_object_is_parsed() -> None:
    """A 502 may carry one bare {code, title, detail} object."""
    body = '{"code":10001,"title":"CF-BadGateway","detail":"upstream"}'
    assert parse_error_body(body) == (ErrorDetail(10001, "CF-BadGateway", "upstream"),)


@pytest.mark.parametrize(
    "body",
    [
        "502 Bad Gateway: Registered endpoint failed to handle the request.",
        "<html><body><h1>API down for maintenance</h1></body></html>",
        "[1, 2]",
        '{"unrelated": true}',
        "",
    ],
)
def test_plain_text_yields_no_details_but_an_excerpt(body: str) -> None:
    """Router and maintenance pages give no details, and the message keeps an excerpt."""
    error = api_error(502, body.encode(), request_id=None, url=URL)
    assert error.errors == ()
    assert error.body == " ".join(body.split())[:200]


def test_long_bodies_are_cut_to_an_excerpt() -> None:
    """A huge error page never ends up whole in a message."""
    error = api_error(503, b"x" * 10_000, request_id=None, url=URL)
    assert len(error.body) <= 200
    assert len(str(error)) < 400


ALL = [
    jobwatch.InvalidJobReference("a/b", "bad"),
    jobwatch.ConfigError("no login"),
    jobwatch.TransportError("reset", url=URL, attempts=3, transient=False),
    jobwatch.MalformedResponse("not JSON", status=200, body="{", url=URL),
    api_error(429, b"{}", request_id="r", url=URL, retry_after=2.5),
    api_error(404, b'{"errors":[{"code":1,"title":"T","detail":"D"}]}', request_id="r", url=URL),
    jobwatch.JobFailed(Job("g", JobState.FAILED, errors=(ErrorDetail(1, "CF-X", "boom"),))),
    jobwatch.JobTimeout("g", 5.0, Job("g", JobState.POLLING)),
    jobwatch.ClientClosed("the wait"),
    jobwatch.ClientClosed(),
]


@pytest.mark.parametrize("error", ALL, ids=lambda e: type(e).__name__)
def test_every_exception_pickles_with_its_context(error: jobwatch.JobwatchError) -> None:
    """Errors cross process boundaries (multiprocessing, celery) with all attributes."""
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert vars(again) == vars(error)


def test_client_closed_says_whether_the_call_came_after_or_was_cut_short() -> None:
    """One class, one wording each: a call on a closed client, or one cut by the closing."""
    assert str(jobwatch.ClientClosed()) == "this jobwatch client is closed; make a new one"
    cut = jobwatch.ClientClosed("a token refresh")
    assert str(cut) == "the jobwatch client was closed during a token refresh"
    assert cut.during == "a token refresh"


def test_stdlib_bases_let_callers_catch_familiar_types() -> None:
    """JobTimeout is a TimeoutError; InvalidJobReference is a ValueError."""
    assert isinstance(jobwatch.JobTimeout("g", 1.0), TimeoutError)
    assert isinstance(jobwatch.InvalidJobReference("x", "y"), ValueError)
    assert all(issubclass(cls, jobwatch.ApiError) for cls in STATUS_ERRORS.values())


def test_job_failed_message_with_and_without_details() -> None:
    """A FAILED job with empty errors still says it failed, and why not more."""
    bare = jobwatch.JobFailed(Job("g", JobState.FAILED, operation="app.delete"))
    assert str(bare) == "job g (app.delete) FAILED: the controller gave no error details"
    assert bare.errors == ()
