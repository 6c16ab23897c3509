"""The public surface: `__all__` sorted and complete, the names DESIGN.md promises."""

from __future__ import annotations

import inspect
import types

import jobwatch

PROMISED = {
    "Client",
    "PollPolicy",
    "RetryPolicy",
    "Job",
    "JobState",
    "ErrorDetail",
    "JobWarning",
    "Link",
    "Outcome",
    "get_job",
    "get_jobs",
    "wait_for_job",
    "wait_for_jobs",
    "JobwatchError",
    "InvalidJobReference",
    "ConfigError",
    "TransportError",
    "MalformedResponse",
    "ApiError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "UnprocessableEntity",
    "RateLimited",
    "InternalServerError",
    "BadGateway",
    "ServiceUnavailable",
    "JobFailed",
    "JobTimeout",
}


def test_all_is_sorted() -> None:
    """`__all__` is kept in plain sorted order."""
    assert jobwatch.__all__ == sorted(jobwatch.__all__)


def test_all_is_complete() -> None:
    """Every public name the package defines is exported, and every export exists."""
    public = {
        name
        for name, value in vars(jobwatch).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public.discard("annotations")
    assert public | {"__version__"} == set(jobwatch.__all__)
    assert all(hasattr(jobwatch, name) for name in jobwatch.__all__)


def test_design_names_are_exported() -> None:
    """The names DESIGN.md marks as the contract are all there."""
    assert set(jobwatch.__all__) >= PROMISED


def test_every_error_descends_from_the_root() -> None:
    """One root: catching JobwatchError catches every error jobwatch raises."""
    errors = [
        value
        for value in vars(jobwatch).values()
        if inspect.isclass(value) and issubclass(value, Exception)
    ]
    assert len(errors) >= 19
    assert all(issubclass(cls, jobwatch.JobwatchError) for cls in errors)


def test_contract_signatures() -> None:
    """Client and the module functions take the arguments DESIGN.md names."""
    client = inspect.signature(jobwatch.Client)
    for name in ("token", "session", "max_in_flight", "poll", "retry"):
        assert client.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert client.parameters["max_in_flight"].default == 32
    for function in (jobwatch.get_job, jobwatch.wait_for_job, jobwatch.get_jobs):
        assert "client" in inspect.signature(function).parameters
    assert "on_update" in inspect.signature(jobwatch.Client.wait_for_job).parameters


def test_version_is_a_string() -> None:
    """`__version__` comes from the installed metadata."""
    assert isinstance(jobwatch.__version__, str)
    assert jobwatch.__version__[0].isdigit()
