"""Property tests: any body, any status, any schema-valid job, through the real client."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobwatch
from jobwatch._errors import is_transient_status, parse_error_body
from jobwatch._models import structure_job, unstructure_job
from jobwatch.testing import FakeCloudController, FakeResponse

from .helpers import TOKEN, schema_validator

#: Modest: every example is a real GET over loopback (a few ms each).
SETTINGS = settings(max_examples=60, deadline=None, database=None)
KNOWN_STATES = ("PROCESSING", "POLLING", "COMPLETE", "FAILED")

# Test mode: the client's retries (default policies) sleep through no backoff.
pytestmark = pytest.mark.usefixtures("testing_mode")

#: The exception a status must raise, written out here rather than read from jobwatch.
STATUS_ERRORS: dict[int, type[jobwatch.ApiError]] = {
    400: jobwatch.BadRequest,
    401: jobwatch.Unauthorized,
    403: jobwatch.Forbidden,
    404: jobwatch.NotFound,
    409: jobwatch.Conflict,
    422: jobwatch.UnprocessableEntity,
    429: jobwatch.RateLimited,
    500: jobwatch.InternalServerError,
    502: jobwatch.BadGateway,
    503: jobwatch.ServiceUnavailable,
}
NO_BODY = frozenset({204, 304})  #: HTTP drops the body of these


# -- one server, one client, one event loop per test --------------------------------------


@attrs.define
class Served:
    """A fake controller and a client on a loop of the test's own, shared by all examples."""

    runner: asyncio.Runner
    cc: FakeCloudController
    cf: jobwatch.Client

    def fetch(
        self, response: FakeResponse | Callable[[str], FakeResponse]
    ) -> tuple[jobwatch.Job | jobwatch.JobwatchError, int]:
        """Serve `response` to one `get_job`; return what it gave and the GETs it cost.

        A callable gets the guid asked for, to build a body of that job.
        """
        guid = self.cc.add_job(states=("PROCESSING",))
        self.cc.inject(guid, response(guid) if callable(response) else response)
        result = self.runner.run(_get(self.cf, guid))
        # Nothing of the call is left behind: no poll loop, no request in flight.
        assert self.cf.stats.waiting == 0
        assert self.cf.stats.in_flight == 0
        return result, self.cc.polls(guid)


async def _get(cf: jobwatch.Client, guid: str) -> jobwatch.Job | jobwatch.JobwatchError:
    # Anything but a Job or a JobwatchError propagates and fails the property.
    try:
        return await cf.get_job(guid, timeout=5)
    except jobwatch.JobwatchError as exc:
        return exc


async def _start() -> tuple[FakeCloudController, jobwatch.Client]:
    cc = FakeCloudController(token=TOKEN)
    await cc.start()
    return cc, cc.client()


async def _stop(cc: FakeCloudController, cf: jobwatch.Client) -> set[asyncio.Task[Any]]:
    await cf.aclose()
    await cc.aclose()
    await asyncio.sleep(0)
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


@contextmanager
def served() -> Iterator[Served]:
    """Start the fake and a client on a fresh loop; afterwards prove nothing is left running."""
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        cc, cf = runner.run(_start())
        try:
            yield Served(runner, cc, cf)
        finally:
            leftover = runner.run(_stop(cc, cf))
        assert not leftover, leftover


# -- strategies, by hand ------------------------------------------------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[str, datetime]:
    """An RFC 3339 date-time as the schema allows it, and the instant it stands for."""
    moment = draw(moments).astimezone(draw(st.just(UTC) | offsets))
    if draw(st.booleans()):
        moment = moment.replace(microsecond=0)
    text = moment.isoformat(timespec="seconds" if not moment.microsecond else "microseconds")
    if moment.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text[: -len("+00:00")] + "Z"
    if draw(st.booleans()):  # RFC 3339 lets T and Z be lower case
        text = text.lower()
    return text, moment


def _words(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


guids = st.uuids().map(str) | st.text(min_size=1, max_size=40)
states = st.sampled_from(KNOWN_STATES) | st.text(min_size=1, max_size=15)
JOB_KEYS = (
    "guid",
    "created_at",
    "updated_at",
    "operation",
    "state",
    "errors",
    "warnings",
    "links",
)
extras: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.text(max_size=10).filter(lambda key: key not in JOB_KEYS), json_values, max_size=2
)


@st.composite
def error_objects(draw: st.DrawFn) -> tuple[dict[str, Any], jobwatch.ErrorDetail]:
    body = dict(draw(extras.filter(lambda d: not {"code", "title", "detail"} & set(d))))
    code = draw(st.none() | st.integers(min_value=0, max_value=2**31))
    title = draw(st.none() | _words())
    detail = draw(st.none() | _words(80))
    for key, value in (("code", code), ("title", title), ("detail", detail)):
        if value is not None:
            body[key] = value
    return body, jobwatch.ErrorDetail(code, title or "", detail or "")


@st.composite
def schema_jobs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A body valid under `job_as_served`, and the field values a Job must carry for it."""
    body: dict[str, Any] = dict(draw(extras))
    guid, state = draw(guids), draw(states)
    body["guid"], body["state"] = guid, state
    want: dict[str, Any] = {"guid": guid, "state": state, "operation": ""}
    want.update(created_at=None, updated_at=None, errors=(), warnings=(), links={})
    if draw(st.booleans()):
        body["operation"] = want["operation"] = draw(_words())
    for key in ("created_at", "updated_at"):
        if draw(st.booleans()):
            body[key], want[key] = draw(timestamps())
    if draw(st.booleans()):
        pairs = draw(st.lists(error_objects(), max_size=3) | st.none())
        body["errors"] = None if pairs is None else [pair[0] for pair in pairs]
        want["errors"] = () if pairs is None else tuple(pair[1] for pair in pairs)
    if draw(st.booleans()):
        details = draw(st.lists(st.none() | _words(), max_size=3) | st.none())
        body["warnings"] = (
            None
            if details is None
            else [{} if d is None else {"detail": d, **draw(extras)} for d in details]
        )
        want["warnings"] = tuple(jobwatch.JobWarning(d or "") for d in details or ())
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(["self", "app", "space"]) | _words(12), max_size=3))
        links: dict[str, Any] = {}
        for name in names:
            link: dict[str, Any] = {"href": draw(_words(60))}
            method = draw(st.none() | st.sampled_from(["GET", "DELETE"]))
            if method is not None:
                link["method"] = method
            links[name] = link
        body["links"] = links
        want["links"] = {
            name: jobwatch.Link(link["href"], link.get("method")) for name, link in links.items()
        }
    return body, want


@st.composite
def jobish_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies near a job's shape: job keys with plausible or arbitrary values."""
    body, _ = draw(schema_jobs())
    for key in draw(st.lists(st.sampled_from(JOB_KEYS), max_size=3)):
        if draw(st.booleans()):
            body[key] = draw(json_values)
        else:
            body.pop(key, None)
    return body


any_json_body = json_values | jobish_bodies()


@st.composite
def error_bodies(draw: st.DrawFn) -> tuple[bytes, tuple[jobwatch.ErrorDetail, ...] | None]:
    """Any body an error status may come with; with the details it must yield, when known."""
    kind = draw(st.sampled_from(["envelope", "bare", "json", "text", "bytes", "empty"]))
    if kind == "envelope":
        pairs = draw(st.lists(error_objects(), min_size=1, max_size=3))
        body = {"errors": [pair[0] for pair in pairs]}
        return json.dumps(body).encode(), tuple(pair[1] for pair in pairs)
    if kind == "bare":
        obj, detail = draw(error_objects())
        obj.setdefault("title", detail.title or "CF-Bare")
        return json.dumps(obj).encode(), (attrs.evolve(detail, title=obj["title"]),)
    if kind == "json":
        return json.dumps(draw(json_values)).encode(), None
    if kind == "text":
        return draw(_words(200)).encode(), None
    if kind == "bytes":
        return draw(st.binary(max_size=200)), None
    return b"", ()


# -- the schema ---------------------------------------------------------------------------

#: Any RFC 3339 timestamp (what jobwatch reads), not only the controller's own `...:04Z`.
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)


# -- the properties -----------------------------------------------------------------------


def test_any_json_body_gives_a_job_or_a_malformed_response() -> None:
    """Whatever JSON a 200 carries, the caller gets a Job or MalformedResponse, nothing else."""
    with served() as server:

        @SETTINGS
        @given(body=any_json_body)
        def check(body: Any) -> None:
            def respond(guid: str) -> FakeResponse:
                if isinstance(body, dict) and "guid" in body:
                    body["guid"] = guid  # the job asked for, or it is another job's body
                return FakeResponse(200, json.dumps(body).encode())

            result, gets = server.fetch(respond)
            assert isinstance(result, jobwatch.Job | jobwatch.MalformedResponse), result
            assert gets == 1
            if isinstance(result, jobwatch.Job):
                assert result.guid == body["guid"]
                assert result.state == body["state"]
            else:
                assert result.status == 200

        check()


def test_every_schema_valid_job_gives_a_job_with_its_fields() -> None:
    """A body valid under job_as_served is a Job carrying exactly what the body said."""
    validator = schema_validator("job_as_served", date_time=RFC3339)
    with served() as server:

        @SETTINGS
        @given(pair=schema_jobs())
        def check(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
            body, want = pair
            validator.validate(body)

            def respond(guid: str) -> FakeResponse:
                body["guid"] = want["guid"] = guid  # the body of the job asked for
                return FakeResponse(200, json.dumps(body).encode())

            result, _ = server.fetch(respond)
            assert isinstance(result, jobwatch.Job), result
            got = {key: getattr(result, key) for key in want}
            assert got == want
            assert result.is_known_state == (body["state"] in KNOWN_STATES)
            assert result.is_terminal == (body["state"] in ("COMPLETE", "FAILED"))

        check()


def test_any_status_with_any_body_is_its_error_a_retry_or_a_job() -> None:
    """Errors map to their class; transient ones are retried; a 200 is a Job or malformed."""
    with served() as server:

        @SETTINGS
        @given(status=st.integers(min_value=200, max_value=599), pair=error_bodies())
        def check(
            status: int, pair: tuple[bytes, tuple[jobwatch.ErrorDetail, ...] | None]
        ) -> None:
            body, details = pair
            # A 429 without Retry-After pauses the client for a second: ask for none.
            headers = {"Retry-After": "0"} if status == 429 else {}
            result, gets = server.fetch(FakeResponse(status, body, headers=headers))
            if status == 200:
                assert isinstance(result, jobwatch.Job | jobwatch.MalformedResponse), result
                assert gets == 1
            elif is_transient_status(status) or (
                status == 404 and not parse_error_body(body.decode("utf-8", "replace"))
            ):  # the router's 404 (not the controller's envelope) is transient too
                assert isinstance(result, jobwatch.Job), result
                assert result.state == "PROCESSING"
                assert gets == 2
            else:
                assert type(result) is STATUS_ERRORS.get(status, jobwatch.ApiError), result
                assert isinstance(result, jobwatch.ApiError)
                assert result.status == status
                assert result.request_id
                assert gets == 1
                if details is not None and status not in NO_BODY:
                    assert result.errors == details
                assert TOKEN not in str(result)

        check()


@settings(max_examples=200, deadline=None, database=None)
@given(body=schema_jobs().map(lambda pair: pair[0]) | jobish_bodies())
def test_job_survives_structure_unstructure_structure(body: dict[str, Any]) -> None:
    """A Job turned back into a body and read again is the same Job, links and state type too."""
    try:
        job = structure_job(body)
    except ValueError:
        return  # not a job: the other properties cover what the caller gets
    plain = unstructure_job(job)
    again = structure_job(json.loads(json.dumps(plain)))
    assert again == job
    assert again.links == job.links  # links are left out of Job equality
    assert type(again.state) is type(job.state)
    assert unstructure_job(again) == plain
