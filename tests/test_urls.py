"""Webhook URLs: what a task may be sent to, and the exact request line and Host it gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic.errors import ClientError
from miyamoto.logic.limits import Limits
from miyamoto.logic.urls import WebhookUrl, parse_webhook_url, with_query

LIMITS = Limits()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://localhost:9099/worker",
            WebhookUrl(
                scheme="http", host="localhost", port=9099, target="/worker",
                host_header="localhost:9099",
            ),
        ),
        (
            "HTTPS://Example.COM",
            WebhookUrl(
                scheme="https", host="example.com", port=443, target="/",
                host_header="example.com",
            ),
        ),
        (
            "http://example.com:80/a/b?x=1&y=%20#frag",
            WebhookUrl(
                scheme="http", host="example.com", port=80, target="/a/b?x=1&y=%20",
                host_header="example.com",
            ),
        ),
        (
            "https://example.com:8443?q",
            WebhookUrl(
                scheme="https", host="example.com", port=8443, target="/?q",
                host_header="example.com:8443",
            ),
        ),
        (
            "http://[::1]:8080/x",
            WebhookUrl(
                scheme="http", host="::1", port=8080, target="/x", host_header="[::1]:8080"
            ),
        ),
        (
            "http://[2001:DB8::1]/",
            WebhookUrl(
                scheme="http", host="2001:db8::1", port=80, target="/",
                host_header="[2001:db8::1]",
            ),
        ),
        (
            "http://127.0.0.1:1/users/@me",
            WebhookUrl(
                scheme="http", host="127.0.0.1", port=1, target="/users/@me",
                host_header="127.0.0.1:1",
            ),
        ),
        (
            "http://h/caf\u00e9",
            WebhookUrl(scheme="http", host="h", port=80, target="/caf%C3%A9", host_header="h"),
        ),
    ],
)  # fmt: skip
def test_parses_into_request_line_and_host_header(url: str, expected: WebhookUrl) -> None:
    assert parse_webhook_url(url, LIMITS) == expected


def test_canonical_url_drops_default_port_and_fragment() -> None:
    assert parse_webhook_url("HTTP://A.example:80/p?q#f", LIMITS).url == "http://a.example/p?q"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/", "scheme must be http or https"),
        ("javascript:alert(1)", "absolute"),
        ("/relative/path", "absolute"),
        ("example.com/path", "absolute"),
        ("http:///path", "no host"),
        ("http://?x=1", "no host"),
        ("http://:80/", "no host"),
        ("http://user:pass@example.com/", "user:password@"),
        ("http://token@example.com/", "user:password@"),
        ("http://example.com:0/", "bad port"),
        ("http://example.com:65536/", "bad port"),
        ("http://example.com:http/", "bad port"),
        ("http://example.com:/", "bad port"),
        ("http://example.com:+80/", "bad port"),
        ("http://a:1:2/", "bad port"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/a b", "whitespace"),
        (" http://example.com/", "whitespace"),
        ("http://example.com/\t", "whitespace"),
        ("http://example.com/\r\nX: y", "whitespace"),
        ("http://example.com/\x00", "control"),
        ("http://example.com/\u2028", "whitespace"),
        ("http://ex\u00e4mple.com/", "ASCII"),
        ("http://exa$mple.com/", "bad host"),
        ("http://[::1/", "unclosed"),
        ("http://[not-v6]/", "bad IPv6"),
        ("http://[fe80::1%25eth0]/", "bad IPv6"),
        ("http://[::1]x/", "junk"),
        ("http://example.com/\ud800", "surrogate"),
    ],
)
def test_refuses_with_a_reason(url: str, words: str) -> None:
    with pytest.raises(ClientError) as caught:
        parse_webhook_url(url, LIMITS)
    assert caught.value.status == 400
    assert words in caught.value.message


def test_length_limit_is_stated() -> None:
    limits = Limits(url_chars_max=30)
    parse_webhook_url("http://example.com/" + "a" * 11, limits)  # exactly 30
    with pytest.raises(ClientError) as caught:
        parse_webhook_url("http://example.com/" + "a" * 12, limits)
    assert caught.value.status == 400
    assert "31 characters; the limit is 30" in caught.value.message


def test_length_limit_applies_after_percent_encoding() -> None:
    limits = Limits(url_chars_max=30)
    with pytest.raises(ClientError, match="the limit is 30"):
        parse_webhook_url("http://example.com/" + "\u00e9" * 5, limits)  # 24 chars, 49 encoded


def test_with_query_appends_in_order_with_repeats() -> None:
    base = parse_webhook_url("http://h/p", LIMITS)
    pairs = [("a", "1"), ("b", "x y"), ("a", "&=")]
    assert with_query(base, pairs, LIMITS).target == "/p?a=1&b=x+y&a=%26%3D"
    existing = parse_webhook_url("http://h/p?z=0", LIMITS)
    assert with_query(existing, [("a", "1")], LIMITS).url == "http://h/p?z=0&a=1"
    empty_query = parse_webhook_url("http://h/p?", LIMITS)
    assert with_query(empty_query, [("a", "1")], LIMITS).target == "/p?a=1"
    assert with_query(base, [], LIMITS) == base


def test_with_query_states_the_url_limit() -> None:
    limits = Limits(url_chars_max=20)
    base = parse_webhook_url("http://h/p", limits)
    with pytest.raises(ClientError, match="query string is 25 characters; the limit is 20"):
        with_query(base, [("abcdefghijklm", "")], limits)


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_and_canonical_form_is_stable(text: str) -> None:
    for url in (text, "http://" + text, "https://h/" + text):
        try:
            parsed = parse_webhook_url(url, LIMITS)
        except ClientError as error:
            assert error.status == 400
            continue
        assert parsed.target.startswith("/")
        assert parsed.target.isascii() and parsed.target.isprintable() and " " not in parsed.target
        assert "#" not in parsed.url and "@" not in parsed.host_header
        assert parse_webhook_url(parsed.url, LIMITS) == parsed
