"""What a scripted job does, and the body a GET of it is served.

`_build_script` turns the arguments of `add_job` (states by poll count, or a
timeline) into a `_Script`, shared by every job of one call; a `_Job` is one
job's progress through it. `_job_body` is the state a GET sees and its body
in the controller's shape, rendered again only when the state changes.
"""

from __future__ import annotations

import bisect
import enum
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

import attrs

from .._models import TERMINAL_STATES  # the library's own: one set of terminal states
from ._faults import Fault, FaultTable, _fault_table
from ._responses import _dumps

_JOBS_PREFIX = "/v3/jobs/"
# The methods `accept` answers with 202, and the operation each names by default.
_ACCEPTING_METHODS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _plural(resource: str) -> str:
    return resource if resource.endswith("s") else resource + "s"


@attrs.frozen
class _Script:
    """What a job will do; shared by all jobs of one `add_jobs` call."""

    operation: str
    states: tuple[str, ...]
    offsets: tuple[float, ...]  # empty: scripted by poll count
    terminal_offset: float | None
    failed_errors: list[dict[str, object]] | None
    warnings: list[dict[str, str]]
    resource_path: str | None
    resource: str | None
    faults: FaultTable | None  # None: the server-wide table


@attrs.define(slots=True)
class _Job:
    guid: str
    script: _Script
    created_sec: int
    polls: int = 0
    served: int = 0
    first_poll: float | None = None
    started: float | None = None  # a timeline's origin: the 202 that created it, or the first GET
    finished: float | None = None
    body_state: str | None = None
    body: bytes = b""
    updated_sec: int = 0
    resource_guid: str = ""


def _build_script(
    states: Sequence[str],
    operation: str,
    errors: Sequence[Mapping[str, object]] | Literal[_Unset.UNSET] | None,
    warnings: Sequence[str],
    timeline: Sequence[tuple[float, str]] | None,
    resource: str | None,
    faults: Mapping[Fault, float] | None,
    base_faults: FaultTable,
) -> _Script:
    """The script of `add_job`'s arguments; `base_faults` is the server-wide fault table."""
    offsets: tuple[float, ...] = ()
    terminal_offset = None
    if timeline is not None:
        entries = sorted(timeline, key=lambda entry: entry[0])
        if not entries:
            raise ValueError("timeline must not be empty")
        offsets = tuple(float(offset) for offset, _ in entries)
        states = tuple(state for _, state in entries)
        terminal_offset = next((off for off, st in entries if st in TERMINAL_STATES), None)
    if not states or not all(isinstance(s, str) and s for s in states):
        raise ValueError("states must be a non-empty sequence of non-empty strings")
    failed_errors: list[dict[str, object]] | None
    if errors is _UNSET:
        verb = operation.rpartition(".")[2] or operation
        failed_errors = [
            {
                "code": 10009,
                "title": "CF-UnableToPerform",
                "detail": f"{verb} could not be completed: Service broker error: "
                "The service broker returned an invalid response",
            }
        ]
    elif errors is None:
        failed_errors = None
    else:
        failed_errors = [dict(error) for error in errors]
    return _Script(
        operation=operation,
        states=tuple(states),
        offsets=offsets,
        terminal_offset=terminal_offset,
        failed_errors=failed_errors,
        warnings=[{"detail": detail} for detail in warnings],
        resource_path=None if resource is None else f"/v3/{_plural(resource)}/",
        resource=resource,
        faults=None if not faults else _fault_table(base_faults, faults),
    )


def _created_sec(created_at: datetime | str | None, server_now: float) -> int:
    """`add_job`'s `created_at` in epoch seconds; None is `server_now`'s second."""
    if created_at is None:
        return int(server_now)
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return int(created_at.timestamp())


def _accepted_route(method: str, path: str) -> tuple[str, str]:
    """The resource of `accept`'s `method path`, and the operation it names by default."""
    segments = path.split("/")
    if method not in _ACCEPTING_METHODS:
        raise ValueError(f"{method} is not answered 202: use {', '.join(_ACCEPTING_METHODS)}")
    if len(segments) < 3 or segments[:2] != ["", "v3"] or not segments[2] or "?" in path:
        raise ValueError(f"expected a /v3/... resource path, got {path!r}")
    if segments[2] == "jobs":
        raise ValueError("/v3/jobs/ is the fake's own: accept a resource's path")
    resource = segments[2][:-1] if segments[2].endswith("s") else segments[2]
    return resource, f"{resource}.{_ACCEPTING_METHODS[method]}"


def _finished_at(job: _Job) -> float | None:
    """`time.monotonic()` when `job` turned terminal on the server, or None if not yet."""
    script = job.script
    if not script.offsets:
        return job.finished
    if job.started is None or script.terminal_offset is None:
        return None
    finished = job.started + script.terminal_offset
    return finished if finished <= time.monotonic() else None


def _job_body(
    job: _Job, now: float, url: str, wall_offset: float, clock_skew: float, *, advance: bool
) -> bytes:
    """The body of `job` at `now`; `advance` counts the GET in a poll-count script.

    `url` is the API's base URL, `wall_offset` + `clock_skew` turn `now`
    (`time.monotonic()`) into the server's clock.
    """
    script = job.script
    if script.offsets:
        first = now if job.started is None else job.started
        index = max(bisect.bisect_right(script.offsets, now - first) - 1, 0)
        state = script.states[index]
        changed = first + script.offsets[index]
    else:
        served = job.served
        state = script.states[min(served, len(script.states) - 1)]
        if advance:
            job.served = served + 1
            if job.finished is None and state in TERMINAL_STATES:
                job.finished = now
        changed = now
    if state != job.body_state:
        job.body = _render(job, state, changed, url, wall_offset, clock_skew)
    return job.body


def _render(
    job: _Job, state: str, changed: float, url: str, wall_offset: float, clock_skew: float
) -> bytes:
    """The body of `job` in `state`, entered at `changed`; its `updated_at` moves on."""
    script = job.script
    if job.body_state is None:
        updated = job.created_sec
    else:
        # Second resolution like the controller, but a change must show in updated_at.
        updated = max(int(changed + wall_offset + clock_skew), job.updated_sec + 1)
    job.body_state = state
    job.updated_sec = updated
    links: dict[str, dict[str, str]] = {"self": {"href": f"{url}{_JOBS_PREFIX}{job.guid}"}}
    if script.resource is not None:
        if not job.resource_guid:
            job.resource_guid = str(uuid.uuid4())
        links[script.resource] = {"href": f"{url}{script.resource_path}{job.resource_guid}"}
    return _dumps(
        {
            "guid": job.guid,
            "created_at": _iso(job.created_sec),
            "updated_at": _iso(updated),
            "operation": script.operation,
            "state": state,
            "errors": script.failed_errors if state == "FAILED" else [],
            "warnings": script.warnings,
            "links": links,
        }
    )
