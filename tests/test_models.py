"""Models: structuring what the Cloud Controller sends, and what it is known to send."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobwatch import ErrorDetail, Job, JobState, JobWarning, Link, Outcome
from jobwatch._models import BodyShapeError, structure_job, unstructure_job

SPEC_EXAMPLE: dict[str, Any] = {
    "guid": "b19ae525-cbd3-4155-b156-dc0c2a431b4c",
    "created_at": "2016-10-19T20:25:04Z",
    "updated_at": "2016-11-08T16:41:26Z",
    "operation": "app.delete",
    "state": "FAILED",
    "errors": [
        {
            "code": 10008,
            "title": "CF-UnprocessableEntity",
            "detail": "something went wrong",
        }
    ],
    "warnings": [{"detail": "warning! warning!"}],
    "links": {
        "self": {"href": "https://api.example.org/v3/jobs/b19ae525-cbd3-4155-b156-dc0c2a431b4c"},
        "app": {"href": "https://api.example.org/v3/apps/7b34f1cf", "method": "GET"},
    },
}


def test_structures_the_api_spec_example() -> None:
    """The example of the V3 API docs becomes a fully typed Job."""
    job = structure_job(SPEC_EXAMPLE)
    assert job.guid == SPEC_EXAMPLE["guid"]
    assert job.state is JobState.FAILED
    assert job.created_at == datetime(2016, 10, 19, 20, 25, 4, tzinfo=UTC)
    assert job.errors == (ErrorDetail(10008, "CF-UnprocessableEntity", "something went wrong"),)
    assert job.warnings == (JobWarning("warning! warning!"),)
    assert job.links["app"] == Link("https://api.example.org/v3/apps/7b34f1cf", "GET")
    assert job.is_terminal


@pytest.mark.parametrize("state", ["PROCESSING", "POLLING"])
def test_running_states_are_not_terminal(state: str) -> None:
    """PROCESSING and POLLING jobs are still going."""
    assert not structure_job({"guid": "g", "state": state}).is_terminal


def test_unknown_state_is_kept_and_not_terminal() -> None:
    """A state from a future controller is kept as given and never crashes."""
    job = structure_job({"guid": "g", "state": "CANCELING"})
    assert job.state == "CANCELING"
    assert not job.is_terminal
    assert not job.is_known_state


@pytest.mark.parametrize("value", [None, []])
def test_null_or_empty_lists_become_empty_tuples(value: Any) -> None:
    """`errors: null` (a known controller bug) and missing fields are tolerated."""
    job = structure_job({"guid": "g", "state": "FAILED", "errors": value, "warnings": value})
    assert job.errors == ()
    assert job.warnings == ()
    assert job.links == {}


def test_unknown_keys_are_ignored() -> None:
    """Keys a future controller adds anywhere do not break structuring."""
    body = dict(SPEC_EXAMPLE, new_field={"x": 1})
    body["links"] = dict(body["links"], extra={"href": "https://x", "rel": "new"})
    body["errors"] = [dict(body["errors"][0], source="broker")]
    assert structure_job(body).links["extra"].href == "https://x"


@pytest.mark.parametrize(
    "body",
    [
        [],
        "job",
        None,
        {"state": "COMPLETE"},
        {"guid": "", "state": "COMPLETE"},
        {"guid": "g"},
        {"guid": "g", "state": ""},
        {"guid": "g", "state": 3},
        {"guid": "g", "state": "COMPLETE", "errors": "oops"},
        {"guid": "g", "state": "COMPLETE", "errors": [{"code": "x"}]},
        {"guid": "g", "state": "COMPLETE", "created_at": "yesterday"},
        {"guid": "g", "state": "COMPLETE", "created_at": "2016-10-19T20:25:04"},
        {"guid": "g", "state": "COMPLETE", "links": {"self": "https://x"}},
        {"guid": "g", "state": "COMPLETE", "operation": 5},
    ],
)
def test_bodies_that_are_not_jobs_are_refused(body: Any) -> None:
    """Anything but a job object raises BodyShapeError (the transport's MalformedResponse)."""
    with pytest.raises(BodyShapeError):
        structure_job(body)


def test_round_trip_is_lossless() -> None:
    """structure -> unstructure -> structure gives the same Job."""
    job = structure_job(SPEC_EXAMPLE)
    again = structure_job(unstructure_job(job))
    assert again == job
    assert again.links == job.links
    assert unstructure_job(job)["created_at"] == "2016-10-19T20:25:04Z"


def test_outcome_ok_only_without_error() -> None:
    """`Outcome.ok` is true exactly when there is no error."""
    job = Job("g", JobState.COMPLETE)
    assert Outcome("g", job).ok
    assert not Outcome("g", job, error=ValueError("x")).ok  # type: ignore[arg-type]


def test_job_state_compares_to_raw_string() -> None:
    """`job.state == "COMPLETE"` holds for the enum member."""
    assert Job("g", JobState.COMPLETE).state == "COMPLETE"
    assert str(JobState.POLLING) == "POLLING"


def test_jobs_with_different_links_differ_but_hash() -> None:
    """Links take part in equality; a Job still hashes."""
    a = Job("g", JobState.COMPLETE, links={"self": Link("https://a")})
    b = Job("g", JobState.COMPLETE, links={"self": Link("https://b")})
    assert a != b
    assert hash(a) == hash(b)
