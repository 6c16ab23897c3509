"""Hostile answers get typed errors, bounded messages; bad input is refused before any request."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

import jobwatch
from jobwatch import ErrorDetail, Job, JobState
from jobwatch._errors import api_error, parse_error_body
from jobwatch._refs import ApiBase
from jobwatch._transport import _job_from
from jobwatch.testing import FakeCloudController, FakeResponse

from .helpers import TOKEN

API = ApiBase.parse("https://api.example.org")
GUID = "b19ae525-cbd3-4155-b156-dc0c2a431b4c"
URL = f"https://api.example.org/v3/jobs/{GUID}"
#: What a message may hold: about 1 KB of server text, and jobwatch's own words around it.
MESSAGE_LIMIT = 1300

#: Too deep for any JSON decoder that recurses (CPython's raises RecursionError).
TOO_DEEP = "[" * 100_000
#: As deep, and under the 64 KiB of an error body jobwatch reads (the rest is dropped).
TOO_DEEP_ERROR = "[" * 60_000
#: Decodable, but a repr or str() of it near the recursion limit would not be.
DEEP = json.loads("[" * 500 + "]" * 500)
HUGE = 100_000

# Test mode: clients keep the default policies and sleep through no backoff.
pytestmark = pytest.mark.usefixtures("testing_mode")


def _bounded(error: BaseException) -> None:
    assert len(str(error)) <= MESSAGE_LIMIT, len(str(error))
    assert len(repr(error)) <= MESSAGE_LIMIT + 100, len(repr(error))


def _body(**fields: Any) -> bytes:
    return json.dumps({"guid": GUID, "state": "PROCESSING", **fields}).encode()


def _envelope(*errors: dict[str, Any]) -> bytes:
    return json.dumps({"errors": list(errors)}).encode()


# -- the two decoders: orjson (the `fast` extra) and the stdlib answer alike ---------------

#: Bodies where the decoders differ on their own (orjson refuses, json accepts or says
#: why), and ordinary ones: with the fallback, a poll's result is the same either way.
DECODER_CASES = {
    "a job": _body(),
    "too deep": TOO_DEEP.encode(),
    "not JSON": b"<html>502 Bad Gateway</html>",
    "cut off": _body()[:-7],
    "empty": b"",
    "NaN in a field": b'{"guid": "%s", "state": "PROCESSING", "operation": NaN}' % GUID.encode(),
    "UTF-16": json.dumps({"guid": GUID, "state": "COMPLETE"}).encode("utf-16"),
    "a byte-order mark": b"\xef\xbb\xbf" + _body(),
    "a lone surrogate": _body(operation="\ud800"),
    "invalid UTF-8": _body()[:-2] + b'\xff"}',
    "an array": b"[1, 2]",
    "another job": _body(guid="not-this-one"),
}


def _decoded(body: bytes) -> tuple[str, object]:
    try:
        return "job", _job_from(body, URL)
    except jobwatch.MalformedResponse as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("body", DECODER_CASES.values(), ids=DECODER_CASES.keys())
def test_orjson_and_the_stdlib_decode_a_poll_alike(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same Job, or the same MalformedResponse and message, with orjson or without."""
    from jobwatch import _transport

    assert _transport.fast_loads is not None  # the dev extra installs orjson
    fast = _decoded(body)
    monkeypatch.setattr(_transport, "fast_loads", None)
    assert _decoded(body) == fast


# -- a 200 that is not a job: always MalformedResponse ------------------------------------


def test_json_nested_too_deep_in_a_200_is_malformed() -> None:
    """`[` * 100,000 makes json.loads raise RecursionError: the caller sees MalformedResponse."""
    with pytest.raises(jobwatch.MalformedResponse, match="nested too deep") as caught:
        _job_from(TOO_DEEP.encode(), URL)
    assert caught.value.status == 200
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    _bounded(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00garbage",
        b"\xc3\x28",
        b'{"guid": "\xff\xfe", "state": "COMPLETE"}',
        b"\x00\x00\x00\x00",
        b'{"guid": "x", "state": "COMPLETE", "n": ' + b"9" * 5000 + b"}",
        b"1e999999",
        b"NaN",
        b"",
    ],
    ids=["bom", "bad-utf8", "bad-utf8-in-string", "nul", "huge-int", "inf", "nan", "empty"],
)
def test_undecodable_200_bodies_are_malformed(body: bytes) -> None:
    """Bad UTF-8, digits past Python's int limit, bare numbers: MalformedResponse, nothing else."""
    with pytest.raises(jobwatch.MalformedResponse):
        _job_from(body, URL)


@pytest.mark.parametrize(
    "fields",
    [
        {"state": DEEP},
        {"links": {"self": {"href": DEEP}}},
        {"links": {"self": DEEP}},
        {"links": {"x" * HUGE: {"href": 1}}},
        {"errors": DEEP},
        {"errors": [{"title": DEEP, "detail": {"a": DEEP}}]},
        {"errors": [{"code": DEEP}]},
        {"warnings": [{"detail": DEEP}]},
        {"created_at": DEEP},
        {"created_at": "x" * HUGE},
        {"updated_at": "2016-10-19T20:25:04" + "0" * HUGE},
        {"operation": DEEP},
        {"state": ["x" * HUGE]},
        {"state": "x" * HUGE, "errors": "x" * HUGE},
    ],
    ids=lambda fields: "+".join(fields),
)
def test_hostile_values_inside_a_job_are_malformed_with_a_short_message(
    fields: dict[str, Any],
) -> None:
    """Deep or huge values in any field: MalformedResponse, never quoting them whole."""
    with pytest.raises(jobwatch.MalformedResponse) as caught:
        _job_from(_body(**fields), URL)
    _bounded(caught.value)
    assert len(caught.value.message) < 1000


def test_a_200_about_another_job_is_malformed() -> None:
    """The body's guid must be the one asked for (case aside: MySQL's collation)."""
    for other in ("another-job", GUID + "x", GUID[:-1]):
        body = json.dumps({"guid": other, "state": "COMPLETE"}).encode()
        with pytest.raises(jobwatch.MalformedResponse, match="another job"):
            _job_from(body, URL)
    same = json.dumps({"guid": GUID.upper(), "state": "COMPLETE"}).encode()
    assert _job_from(same, URL).guid == GUID.upper()


def test_self_link_with_another_guid_is_fine() -> None:
    """The OpenAPI example's `self` href names another guid than `guid`: only `guid` counts."""
    body = _body(links={"self": {"href": "https://api.example.org/v3/jobs/b19ae525-other"}})
    assert _job_from(body, URL).guid == GUID


# -- error bodies: no details, the status's class still raised ----------------------------


@pytest.mark.parametrize(
    "text",
    [
        TOO_DEEP_ERROR,
        '{"errors": ' + TOO_DEEP_ERROR,
        '{"errors": [' + "{" * 50_000,
    ],
    ids=["list", "in-envelope", "objects"],
)
def test_error_body_nested_too_deep_has_no_details(text: str) -> None:
    """A decoder failure in an error body just means no parsed details."""
    assert parse_error_body(text) == ()
    error = api_error(500, text.encode(), request_id="r", url=URL)
    assert type(error) is jobwatch.InternalServerError
    assert error.errors == ()
    _bounded(error)


def test_non_text_fields_of_an_error_entry_are_dropped() -> None:
    """A title or detail that is a list or an object is no title or detail (nor a crash)."""
    body = json.dumps({"errors": [{"code": DEEP, "title": DEEP, "detail": {"x": DEEP}}]})
    assert parse_error_body(body) == (ErrorDetail(None, "", ""),)
    assert parse_error_body('{"errors":[{"title":"CF-X","detail":42}]}') == (
        ErrorDetail(None, "CF-X", "42"),
    )


# -- messages quote at most about 1 KB of server text -------------------------------------


def test_a_huge_error_detail_is_kept_but_not_quoted_whole() -> None:
    """A 60,000-character detail stays on `errors`; the message quotes its start."""
    detail = "d" * 60_000
    body = _envelope({"code": 10010, "title": "CF-ResourceNotFound", "detail": detail})
    error = api_error(404, body, request_id="rid", url=URL)
    assert type(error) is jobwatch.NotFound
    assert error.errors[0].detail == detail
    assert "CF-ResourceNotFound (10010) ddd" in str(error)
    assert "…" in str(error)
    _bounded(error)


def test_thousands_of_error_entries_are_counted_not_quoted() -> None:
    """5,000 entries: the message names a few and says how many more there are."""
    body = _envelope(
        *[{"code": i, "title": "CF-X" * 50, "detail": "y" * 200} for i in range(5000)]
    )
    error = api_error(422, body, request_id="r", url=URL)
    assert len(error.errors) == 5000
    assert "and 4997 more" in str(error)
    _bounded(error)


def test_long_header_values_are_cut_in_the_message() -> None:
    """A request id or router error of kilobytes is server text too."""
    error = api_error(404, b"x", request_id="r" * 8000, url=URL, router_error="e" * 8000)
    _bounded(error)


def test_job_failed_message_is_bounded_for_a_hostile_job() -> None:
    """A FAILED job with huge errors, operation and many entries still makes a short message."""
    errors = (ErrorDetail(10001, "T" * HUGE, "D" * HUGE),) * 5000
    job = Job(GUID, JobState.FAILED, operation="o" * HUGE, errors=errors)
    error = jobwatch.JobFailed(job)
    assert error.errors == errors
    assert GUID in str(error)
    assert "and 4997 more" in str(error)
    _bounded(error)


def test_job_timeout_message_is_bounded_for_a_huge_state() -> None:
    """An unknown state of 100 KB is cut in the timeout message."""
    error = jobwatch.JobTimeout(GUID, 5.0, Job(GUID, "S" * HUGE))
    _bounded(error)


@pytest.mark.parametrize(
    "error",
    [
        jobwatch.MalformedResponse("m" * HUGE, status=200, body="b" * HUGE, url=URL),
        jobwatch.TransportError("t" * HUGE, url=URL, attempts=3),
        jobwatch.InvalidJobReference("r" * HUGE, "too long"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_long_messages_and_references_are_cut(error: jobwatch.JobwatchError) -> None:
    """Whatever text an error is built with, its str() and repr() stay short, and it pickles."""
    _bounded(error)
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error)
    assert vars(again) == vars(error)


def test_malformed_response_keeps_only_the_excerpt() -> None:
    """A 1 MB body is not held in `args` either, only its excerpt."""
    error = jobwatch.MalformedResponse("bad", status=200, body="b" * 1_000_000, url=URL)
    assert max(len(str(arg)) for arg in error.args) < 300


# -- bad input refused before any request -------------------------------------------------


def test_guids_up_to_255_characters_are_accepted() -> None:
    """255 characters is the longest guid."""
    assert API.resolve("a" * 255)[0] == "a" * 255


@pytest.mark.parametrize("reference", ["a" * 256, "a" * HUGE, API.jobs_prefix + "a" * HUGE])
def test_longer_guids_are_refused_with_a_short_message(reference: str) -> None:
    """Over 255 characters is no guid; the error does not echo 100 KB back."""
    with pytest.raises(jobwatch.InvalidJobReference, match="at most 255 characters") as caught:
        API.resolve(reference)
    assert caught.value.reference == reference
    assert len(str(caught.value)) < 400
    assert len(repr(caught.value)) < 500


def test_non_string_reference_is_shown_short() -> None:
    """A huge non-string reference is not repr'd whole into the error."""
    with pytest.raises(jobwatch.InvalidJobReference) as caught:
        API.resolve(b"x" * HUGE)  # type: ignore[arg-type]
    assert len(caught.value.reference) < 100


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.org/v3",
        "https://api.example.org/v3/",
        "https://api.example.org/cf",
        "https://api.example.org/cf/",
        "https://api.example.org//",
        "https://api.example.org/v3/jobs/",
    ],
)
def test_api_url_with_a_path_is_refused_saying_what_to_give(url: str) -> None:
    """`…/v3` would make every job URL `/v3/v3/jobs/…`: refused, naming the root to give."""
    with pytest.raises(jobwatch.ConfigError, match=r"give https://api\.example\.org instead"):
        ApiBase.parse(url)


@pytest.mark.parametrize("url", ["https://api.example.org:0", "http://127.0.0.1:0/"])
def test_api_url_with_port_zero_is_refused(url: str) -> None:
    """Port 0 reaches no server."""
    with pytest.raises(jobwatch.ConfigError, match="port 0") as caught:
        ApiBase.parse(url)
    assert url.split(":0")[0] in str(caught.value)


def test_api_url_root_with_or_without_slash_is_the_same() -> None:
    """An empty path and `/` are the root."""
    assert ApiBase.parse("https://api.example.org/") == API
    assert ApiBase.parse("https://api.example.org:8443").url == "https://api.example.org:8443"


def test_client_refuses_an_api_url_with_a_path() -> None:
    """The check happens when the client is made, before any session or request."""
    with pytest.raises(jobwatch.ConfigError, match="without a path"):
        jobwatch.Client("https://api.example.org/v3", token=TOKEN)


# -- over loopback HTTP ---------------------------------------------------------------------


def _json(status: int, body: bytes | str) -> FakeResponse:
    return FakeResponse(status, body, "application/json")


async def test_deep_json_200_over_http_is_malformed_at_once(cc: FakeCloudController) -> None:
    """A 200 nested too deep is permanent: one GET, MalformedResponse."""
    guid = cc.add_job()
    cc.inject(guid, _json(200, TOO_DEEP))
    async with cc.client() as cf:
        with pytest.raises(jobwatch.MalformedResponse, match="nested too deep"):
            await cf.get_job(guid, timeout=5)
    assert cc.polls(guid) == 1


async def test_deep_json_500_over_http_is_retried_then_its_class(cc: FakeCloudController) -> None:
    """A 500 whose body is nested too deep is still a (transient) InternalServerError."""
    async with cc.client() as cf:
        attempts = cf.retry_policy.attempts
        cured = cc.add_job(states=("COMPLETE",))
        cc.inject(cured, _json(500, TOO_DEEP_ERROR))
        broken = cc.add_job(states=("COMPLETE",))
        cc.inject(broken, *[_json(500, TOO_DEEP_ERROR)] * attempts)
        assert (await cf.get_job(cured, timeout=5)).state == "COMPLETE"
        with pytest.raises(jobwatch.InternalServerError) as caught:
            await cf.get_job(broken, timeout=5)
    assert caught.value.errors == ()
    assert cc.polls(cured) == 2
    assert cc.polls(broken) == attempts


async def test_another_jobs_answer_over_http_is_malformed(cc: FakeCloudController) -> None:
    """A 200 carrying another job (a confused proxy or cache) never passes for this one."""
    guid = cc.add_job()
    other = json.dumps({"guid": "some-other-job", "state": "COMPLETE"}).encode()
    cc.inject(guid, _json(200, other))
    async with cc.client() as cf:
        with pytest.raises(jobwatch.MalformedResponse, match="another job"):
            await cf.wait_for_job(guid, timeout=5)
    assert cc.polls(guid) == 1


async def test_huge_detail_in_a_404_over_http_is_not_found_with_a_short_message(
    cc: FakeCloudController,
) -> None:
    """A 60 KB detail: NotFound with the detail kept, and a message of about 1 KB at most."""
    guid = cc.add_job()
    detail = "n" * 60_000
    body = _envelope({"code": 10010, "title": "CF-ResourceNotFound", "detail": detail})
    cc.inject(guid, _json(404, body))
    async with cc.client() as cf:
        with pytest.raises(jobwatch.NotFound) as caught:
            await cf.get_job(guid, timeout=5)
    assert caught.value.errors[0].detail == detail
    _bounded(caught.value)
    assert TOKEN not in str(caught.value)


async def test_hostile_failed_job_over_http_gives_a_short_job_failed(
    cc: FakeCloudController,
) -> None:
    """A FAILED job with 5,000 long errors: JobFailed carries them all, quotes a few."""
    guid = cc.add_job()
    errors = [{"code": 10001, "title": "CF-X", "detail": "e" * 100} for _ in range(5000)]
    cc.inject(guid, _json(200, json.dumps({"guid": guid, "state": "FAILED", "errors": errors})))
    async with cc.client() as cf:
        with pytest.raises(jobwatch.JobFailed) as caught:
            await cf.wait_for_job(guid, timeout=5)
    assert len(caught.value.errors) == 5000
    _bounded(caught.value)


async def test_huge_guid_sends_no_request(cc: FakeCloudController) -> None:
    """A 100 KB guid (or job URL) is refused before the token goes anywhere."""
    async with cc.client() as cf:
        for reference in ("a" * HUGE, cc.job_url("a" * HUGE)):
            with pytest.raises(jobwatch.InvalidJobReference, match="at most 255"):
                await cf.get_job(reference, timeout=5)
            with pytest.raises(jobwatch.InvalidJobReference):
                await cf.wait_for_job(reference, timeout=5)
    assert cc.requests == []


def test_a_cf_config_nested_too_deep_is_a_config_error(tmp_path: Path) -> None:
    """A broken or hostile config.json is a ConfigError, never a RecursionError."""
    config = tmp_path / "config.json"
    config.write_text("[" * 100_000)
    with pytest.raises(jobwatch.ConfigError, match="nested too deep"):
        jobwatch.Client.from_cf_config(config)
