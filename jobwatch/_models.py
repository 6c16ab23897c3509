"""Typed values for Cloud Controller jobs, and the one converter that builds them."""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import cattrs

if TYPE_CHECKING:
    pass


class JobState(enum.StrEnum):
    """The states the Cloud Controller documents; others are kept as plain strings."""

    PROCESSING = "PROCESSING"
    POLLING = "POLLING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset({JobState.COMPLETE, JobState.FAILED})


@attrs.frozen
class ErrorDetail:
    """One entry of a job's or a response's `errors` list."""

    code: int | None = None
    title: str = ""
    detail: str = ""

    def __str__(self) -> str:
        code = f" ({self.code})" if self.code is not None else ""
        return f"{self.title or 'error'}{code} {self.detail}".rstrip()


@attrs.frozen
class JobWarning:
    """One entry of a job's `warnings` list."""

    detail: str = ""


@attrs.frozen
class Link:
    """A link of a job: `self`, or the resource the job works on."""

    href: str
    method: str | None = None


@attrs.frozen
class Job:
    """A V3 job as the Cloud Controller served it.

    `state` is a `JobState` when the controller sends a documented state and the
    raw string otherwise, so `job.state == "COMPLETE"` holds either way and an
    unknown future state never crashes.
    """

    guid: str
    state: JobState | str
    operation: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    errors: tuple[ErrorDetail, ...] = ()
    warnings: tuple[JobWarning, ...] = ()
    # Compared, but left out of the hash: a dict cannot be hashed.
    links: Mapping[str, Link] = attrs.field(factory=dict, hash=False)

    @property
    def is_terminal(self) -> bool:
        """True for COMPLETE and FAILED; unknown states are not terminal."""
        return self.state in TERMINAL_STATES

    @property
    def is_known_state(self) -> bool:
        """False for a state this version of jobwatch does not know."""
        return isinstance(self.state, JobState)


#: How much of a bad value a message shows: the body may be hostile.
_SHOWN_CHARS = 60


def _show(value: Any) -> str:
    """A JSON value for an error message: scalars quoted and cut short, containers by type."""
    if isinstance(value, list | dict):
        # Never repr'd: one nested a thousand deep would raise RecursionError.
        return type(value).__name__
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return repr(value[:_SHOWN_CHARS]) + "…"
    text = repr(value)  # None, a bool or a number (JSON ints stop at 4300 digits)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


_STATES: dict[str, JobState] = {state.value: state for state in JobState}


def _parse_state(value: Any, _: object) -> JobState | str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"state must be a non-empty string, not {_show(value)}")
    known = _STATES.get(value)
    return known if known is not None else sys.intern(value)


#: Timestamps already parsed: every poll of a job repeats its `created_at`, jobs
#: made in the same second share it, and `updated_at` changes only with the job.
#: Shared (datetimes are immutable), so waiting jobs also hold fewer objects.
_DATETIMES: dict[str, datetime] = {}
_DATETIMES_KEPT = 4096


def _parse_datetime(value: Any, _: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be a string, not {_show(value)}")
    parsed = _DATETIMES.get(value)
    if parsed is None:
        parsed = _DATETIMES[value] = _new_datetime(value)
        if len(_DATETIMES) > _DATETIMES_KEPT:
            _DATETIMES.clear()  # bounded: a cache, never a record of every stamp seen
    return parsed


def _new_datetime(value: str) -> datetime:
    # RFC 3339 (the schema's date-time) allows a lower-case "t" and "z"; fromisoformat does not.
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        # Its own message quotes the whole string, however long.
        raise ValueError(f"timestamp is not ISO 8601: {_show(value)}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp has no time zone: {_show(value)}")
    return parsed


def _text(value: Any, _: object = None) -> str:
    if isinstance(value, str):  # the common case first: one test
        return value
    if value is None:
        return ""
    raise ValueError(f"expected a string, not {type(value).__name__}")


def _parse_error(value: Any) -> ErrorDetail:
    if not isinstance(value, dict | Mapping):  # dict first: what json gives, and no ABC check
        raise ValueError(f"an error must be an object, not {type(value).__name__}")
    code = value.get("code")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        raise ValueError(f"error code must be an integer, not {_show(code)}")
    return ErrorDetail(code, _text(value.get("title")), _text(value.get("detail")))


def _parse_errors(value: Any, _: object) -> tuple[ErrorDetail, ...]:
    # A FAILED job may carry `errors: null` (a known controller bug).
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("errors must be a list")
    return tuple(_parse_error(item) for item in value)


def _parse_warnings(value: Any, _: object) -> tuple[JobWarning, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("warnings must be a list")
    out = []
    for item in value:
        if not isinstance(item, dict | Mapping):
            raise ValueError("a warning must be an object")
        out.append(JobWarning(_text(item.get("detail"))))
    return tuple(out)


def _parse_links(value: Any, _: object) -> Mapping[str, Link]:
    if value is None:
        return {}
    if not isinstance(value, dict | Mapping):
        raise ValueError("links must be an object")
    links = {}
    for name, link in value.items():
        if not isinstance(link, dict | Mapping) or not isinstance(link.get("href"), str):
            raise ValueError(f"link {_show(name)} must be an object with an href")
        method = link.get("method")
        links[name] = Link(link["href"], method if isinstance(method, str) else None)
    return links


def _build_converter() -> cattrs.Converter:
    # Explicit hooks keep structuring at a few microseconds a job and make the
    # open enum (unknown states) and null lists deliberate, not accidents.
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(JobState | str, _parse_state)
    conv.register_structure_hook(datetime | None, _parse_datetime)
    for generic, hook in (
        (tuple[ErrorDetail, ...], _parse_errors),
        (tuple[JobWarning, ...], _parse_warnings),
        (Mapping[str, Link], _parse_links),
    ):
        conv.register_structure_hook_func(_is(generic), hook)
    conv.register_structure_hook(str, _text)
    conv.register_unstructure_hook(JobState, lambda state: state.value)
    conv.register_unstructure_hook(datetime, _format_datetime)
    return conv


def _is(generic: object) -> Callable[[Any], bool]:
    return lambda candidate: bool(candidate == generic)


def _format_datetime(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_converter = _build_converter()
#: The generated function itself: no dispatch on the type per job.
_structure_job = _converter.get_structure_hook(Job)


class BodyShapeError(ValueError):
    """Raised by `structure_job` for a body that is not a job; the transport maps it."""


def structure_job(body: Any) -> Job:
    """Build a `Job` from a decoded JSON body.

    Raises:
        BodyShapeError: the body is not a job object (no guid, no state, wrong types).
    """
    if not isinstance(body, dict):
        raise BodyShapeError(f"expected a JSON object, got {type(body).__name__}")
    guid = body.get("guid")
    if not isinstance(guid, str) or not guid:
        raise BodyShapeError("the job has no guid")
    if "state" not in body:
        raise BodyShapeError("the job has no state")
    try:
        job: Job = _structure_job(body, Job)
    except Exception as exc:  # cattrs raises ClassValidationError groups
        raise BodyShapeError(_describe(exc)) from None
    return job


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    note = getattr(exc, "__notes__", None)
    where = f" ({note[0]})" if note else ""
    return f"{exc}{where}"


def unstructure_job(job: Job) -> dict[str, Any]:
    """Turn a `Job` back into a Cloud-Controller-shaped dict (for JSON output and tests)."""
    body: dict[str, Any] = _converter.unstructure(job)
    body["links"] = {
        name: {"href": link.href, **({"method": link.method} if link.method else {})}
        for name, link in job.links.items()
    }
    return body
