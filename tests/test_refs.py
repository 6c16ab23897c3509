"""Job references are checked before any request: guids, job URLs, the API URL."""

from __future__ import annotations

import pytest

from jobwatch import ConfigError, InvalidJobReference
from jobwatch._refs import ApiBase

API = ApiBase.parse("https://api.example.org/")


def test_guid_resolves_under_the_api() -> None:
    """A bare guid becomes the job URL of the client's API."""
    assert API.resolve("b19ae525-cbd3") == (
        "b19ae525-cbd3",
        "https://api.example.org/v3/jobs/b19ae525-cbd3",
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.org/v3/jobs/abc",
        "https://API.example.org:443/v3/jobs/abc",
    ],
)
def test_location_url_on_the_same_origin_is_accepted(url: str) -> None:
    """The Location header of a 202 is accepted as it is."""
    assert API.resolve(url) == ("abc", "https://api.example.org/v3/jobs/abc")


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/v3/jobs/abc",
        "http://api.example.org/v3/jobs/abc",
        "https://api.example.org:8443/v3/jobs/abc",
        "https://api.example.org.evil.com/v3/jobs/abc",
        "https://user:pw@api.example.org/v3/jobs/abc",
        "https://api.example.org/v3/apps/abc",
        "https://api.example.org/v3/jobs/abc?x=1",
        "https://api.example.org/v3/jobs/abc#frag",
        "https://api.example.org/v3/jobs/a/b",
        "https://api.example.org/v3/jobs/",
        "ftp://api.example.org/v3/jobs/abc",
        "https://api.example.org:notaport/v3/jobs/abc",
    ],
)
def test_foreign_or_odd_urls_are_refused(url: str) -> None:
    """The token must never go to another host, nor to something that is not a job."""
    with pytest.raises(InvalidJobReference):
        API.resolve(url)


@pytest.mark.parametrize(
    "guid", ["", ".", "..", "a/b", "../admin", "a b", " abc", "abc\n", "a?b", "a#b", "a%2F", "é"]
)
def test_bad_guids_are_refused(guid: str) -> None:
    """Only letters, digits, '-', '_' and '.' make a guid."""
    with pytest.raises(InvalidJobReference, match="invalid job reference"):
        API.resolve(guid)


def test_non_string_reference_is_refused() -> None:
    """A number or None is a clear InvalidJobReference, not a TypeError deep inside."""
    with pytest.raises(InvalidJobReference):
        API.resolve(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "api.example.org",
        "ftp://x",
        "https://",
        "https://x?y=1",
        "https://x:bad",
        "https://u:p@x",
        "https://x:0",
        "https://x/v3",
        5,
    ],
)
def test_bad_api_urls_are_config_errors(url: object) -> None:
    """An API URL that is not absolute http(s) is refused when the client is made."""
    with pytest.raises(ConfigError):
        ApiBase.parse(url)  # type: ignore[arg-type]


def test_plain_http_needs_loopback_or_opt_in() -> None:
    """Plain http would send the token in clear text: only loopback, or an explicit opt-in."""
    with pytest.raises(ConfigError, match="clear text"):
        ApiBase.parse("http://api.example.org")
    assert ApiBase.parse("http://api.example.org", allow_insecure_http=True)
    for host in ("127.0.0.1", "localhost", "[::1]", "127.8.9.10"):
        assert ApiBase.parse(f"http://{host}:8080")
