"""The Origin check: same-origin by default, plus an allowlist; what counts as the same."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.auth.origin import OriginPolicy

DEFAULT = OriginPolicy()


def test_a_handshake_without_origin_is_not_a_browser_and_is_let_through() -> None:
    assert DEFAULT.refusal(None, "hub.example.com") is None
    assert DEFAULT.refusal(None, None) is None


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("http://hub.example.com", "hub.example.com"),
        ("https://hub.example.com", "hub.example.com"),
        # Default ports, written or not, on either side.
        ("http://hub.example.com:80", "hub.example.com"),
        ("http://hub.example.com", "hub.example.com:80"),
        ("https://hub.example.com:443", "hub.example.com"),
        ("https://hub.example.com", "hub.example.com:443"),
        # Host names are case-insensitive.
        ("HTTP://Hub.Example.COM:8000", "hub.example.com:8000"),
        ("http://hub.example.com:8000", "HUB.example.com:8000"),
        # IPv6 literals.
        ("http://[::1]:8000", "[::1]:8000"),
        ("http://[::1]", "[::1]"),
        ("https://[2001:DB8::1]", "[2001:db8::1]:443"),
    ],
)
def test_the_hubs_own_origin_is_allowed(origin: str, host: str) -> None:
    assert DEFAULT.refusal(origin, host) is None


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.example.com", "hub.example.com"),
        ("http://127.0.0.1:8001", "127.0.0.1:8000"),  # another port is another origin
        ("http://127.0.0.1", "127.0.0.1:8000"),
        ("http://localhost:8000", "127.0.0.1:8000"),
        ("https://hub.example.com", "hub.example.com:80"),  # https's default is 443
        ("http://hub.example.com.evil.com", "hub.example.com"),
        ("http://evilhub.example.com", "hub.example.com"),
        ("http://[::2]:8000", "[::1]:8000"),
        ("http://hub.example.com", None),  # no Host: nothing to be the same as
    ],
)
def test_a_foreign_origin_is_refused_with_the_normalised_origin_in_the_reason(
    origin: str, host: str | None
) -> None:
    refusal = DEFAULT.refusal(origin, host)
    assert refusal is not None
    assert refusal.endswith("is not allowed")
    assert refusal.startswith("Origin http")


@pytest.mark.parametrize(
    "origin",
    [
        "null",  # sandboxed iframes, file:// pages, some redirects
        "",
        "   ",
        "hub.example.com",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "ftp://hub.example.com",
        "http://",
        "http://hub.example.com:99999",
        "http://hub.example.com:port",
        "http://user@hub.example.com",
        "http://hub.example.com/path",
        "http://hub.example.com/?q=1",
        "http://hub.example.com/#f",
        "http://[::1",
        "\x00\x01",
    ],
)
def test_something_that_is_not_an_origin_is_refused(origin: str) -> None:
    refusal = DEFAULT.refusal(origin, "hub.example.com")
    assert refusal is not None
    assert refusal.endswith("is not an origin")


def test_an_over_long_origin_is_cut_in_the_reason() -> None:
    refusal = DEFAULT.refusal("x" * 10_000, "hub")
    assert refusal is not None
    assert len(refusal) < 200


def test_allowlisted_origins_are_allowed_and_compared_normalised() -> None:
    policy = OriginPolicy.parse("https://app.example.com, http://localhost:3000 ,")
    assert policy.allowed == ("https://app.example.com", "http://localhost:3000")
    for origin in [
        "https://app.example.com",
        "https://APP.example.com",
        "https://app.example.com:443",
        "http://localhost:3000",
    ]:
        assert policy.refusal(origin, "hub.example.com") is None, origin
    for origin in [
        "http://app.example.com",  # the scheme is part of the origin
        "https://app.example.com:8443",
        "https://evil.app.example.com",
        "https://app.example.com.evil.com",
        "http://localhost:3001",
        "null",
    ]:
        assert policy.refusal(origin, "hub.example.com") is not None, origin
    # The hub's own origin stays allowed next to the list.
    assert policy.refusal("https://hub.example.com", "hub.example.com") is None


def test_a_star_allows_any_origin_even_null() -> None:
    policy = OriginPolicy.parse("*")
    for origin in ["https://anything.example", "null", "garbage", ""]:
        assert policy.refusal(origin, "hub.example.com") is None


@pytest.mark.parametrize("bad", ["app.example.com", "https://app.example.com/path", "null"])
def test_an_allowlist_entry_that_is_not_an_origin_is_refused_at_configuration(bad: str) -> None:
    with pytest.raises(ValueError, match="is not scheme://host"):
        OriginPolicy((bad,))


_HOST = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.none() | st.text(max_size=60))
def test_any_origin_and_host_header_get_an_answer_never_an_exception(
    origin: str, host: str | None
) -> None:
    refusal = DEFAULT.refusal(origin, host)
    assert refusal is None or isinstance(refusal, str)


@settings(max_examples=200, deadline=None)
@given(_HOST, st.integers(min_value=1, max_value=65535), st.sampled_from(["http", "https"]))
def test_an_origin_is_allowed_exactly_when_it_names_the_host_header(
    host: str, port: int, scheme: str
) -> None:
    origin = f"{scheme}://{host}:{port}"
    assert DEFAULT.refusal(origin, f"{host}:{port}") is None
    assert DEFAULT.refusal(origin, f"{host}:{port % 65535 + 1}") is not None
    assert DEFAULT.refusal(origin, f"x{host}:{port}") is not None
