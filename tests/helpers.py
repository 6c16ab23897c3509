"""What the test modules share but fixtures: the token, fast policies, schema and HTTP helpers.

The fixtures themselves (`cc`, `http`, ...) are in conftest.py.

Most tests need no schedule of their own: the `testing_mode` fixture
(`jobwatch.testing.set_testing()`) and `FakeCloudController.client()` give a
client with the default policies that sleeps through none of them. The fast
policies are for the tests that measure spacing, backoff, pacing or
cancellation mid-wait: milliseconds, never seconds.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from multidict import CIMultiDictProxy

import jobwatch
from jobwatch.testing import FakeCloudController

#: The token the `cc` fixture's fake accepts (and `cc.client()` sends); a fake a test
#: starts itself takes it too, unless the test is about another token.
TOKEN = "test-token"
#: The header that carries TOKEN, as the `http` fixture's session sends it.
AUTH = {"Authorization": f"bearer {TOKEN}"}

FAST_POLL = jobwatch.PollPolicy(
    initial=0.01, maximum=0.05, polling_initial=0.02, polling_maximum=0.1, jitter=0.1
)
FAST_RETRY = jobwatch.RetryPolicy(initial=0.005, maximum=0.02, attempts=4)


def fast_client(cc: FakeCloudController, **kwargs: Any) -> jobwatch.Client:
    """`cc.client()`, its URL and token, with millisecond schedules (any keyword overrides)."""
    kwargs.setdefault("poll", FAST_POLL)
    kwargs.setdefault("retry", FAST_RETRY)
    return cc.client(**kwargs)


async def get(
    http: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    """GET `url`; return status, the body (JSON-decoded when possible) and headers."""
    async with http.get(url, **kwargs) as response:
        text = await response.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return response.status, body, response.headers


#: A timestamp as the controller writes it: whole seconds, UTC, `Z`.
CC_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def schema_path() -> Path:
    """The vendored Cloud Controller schema (tests/data), or the file $JOBWATCH_SCHEMA names."""
    env = os.environ.get("JOBWATCH_SCHEMA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "data" / "cc-v3-job.schema.json"


def schema_validator(
    definition: str, *, date_time: re.Pattern[str] = CC_TIMESTAMP
) -> jsonschema.Draft202012Validator:
    """One definition of the schema; a `date-time` must match `date_time` and be a real date."""
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    schema["$ref"] = f"#/$defs/{definition}"
    jsonschema.Draft202012Validator.check_schema(schema)
    checker = jsonschema.FormatChecker()

    # jsonschema checks date-time only with an optional extra installed: check it here.
    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if isinstance(value, str):
            if not date_time.match(value):
                raise ValueError(value)
            datetime.strptime(value[:19].upper(), "%Y-%m-%dT%H:%M:%S")  # a real date
        return True

    return jsonschema.Draft202012Validator(schema, format_checker=checker)


def job_body(
    guid: str,
    state: str,
    *,
    url: str,
    created_at: str,
    updated_at: str,
    operation: str,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A body shaped like the Cloud Controller's `GET /v3/jobs/{guid}` (the schema's `job`)."""
    return {
        "guid": guid,
        "created_at": created_at,
        "updated_at": updated_at,
        "operation": operation,
        "state": state,
        "errors": errors or [],
        "warnings": [],
        "links": {"self": {"href": url}},
    }
