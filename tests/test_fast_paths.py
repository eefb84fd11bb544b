"""Shortcuts taken for speed give exactly what the plain way gives.

Each fast path (form splitting, form encoding, remembered URL parses) is checked against the
standard-library call or the fresh computation it stands in for.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miyamoto.logic import urls
from miyamoto.logic.enqueue_parse import _form_encode, _form_pairs
from miyamoto.logic.errors import ClientError
from miyamoto.logic.limits import Limits

FORM_TEXT = st.text(alphabet=st.sampled_from("ab=&%+2F0é \u2028x;"), max_size=40)


def _parse_qsl_or_error(text: str, fields_max: int) -> object:
    try:
        return parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="strict",
            max_num_fields=fields_max,
        )  # fmt: skip
    except ValueError as error:
        return type(error)


def _form_pairs_or_error(text: str, fields_max: int) -> object:
    try:
        return _form_pairs(text, fields_max)
    except ValueError as error:
        return type(error)


@given(FORM_TEXT, st.integers(min_value=0, max_value=6))
def test_form_pairs_are_parse_qsl(text: str, fields_max: int) -> None:
    expected = _parse_qsl_or_error(text, fields_max)
    got = _form_pairs_or_error(text, fields_max)
    if isinstance(expected, type):
        assert isinstance(got, type) and issubclass(got, ValueError)
        assert issubclass(got, UnicodeDecodeError) == issubclass(expected, UnicodeDecodeError)
    else:
        assert got == expected


@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=5))
def test_form_encode_is_urlencode(pairs: list[tuple[str, str]]) -> None:
    try:
        expected = urlencode(pairs)
    except UnicodeEncodeError:  # lone surrogates: refused before encoding, in the parser
        return
    assert _form_encode(pairs) == expected


@pytest.fixture(autouse=True)
def _forget_urls() -> None:
    urls._parsed_urls.clear()


def test_a_remembered_url_is_the_same_parse_and_shares_its_string() -> None:
    limits = Limits()
    first = urls.parse_webhook_url("HTTP://Example.com:80/a?b", limits)
    again = urls.parse_webhook_url("HTTP://Example.com:80/a?b", limits)
    assert again == first and again.url is first.url
    urls._parsed_urls.clear()
    assert urls.parse_webhook_url("HTTP://Example.com:80/a?b", limits) == first


def test_a_remembered_url_still_meets_a_smaller_length_limit() -> None:
    url = "http://example.com/" + "a" * 20  # 39 characters
    urls.parse_webhook_url(url, Limits())
    with pytest.raises(ClientError, match="39 characters; the limit is 30"):
        urls.parse_webhook_url(url, Limits(url_chars_max=30))
    with pytest.raises(ClientError, match=r"^task\.url is 39"):
        urls.parse_webhook_url(url, Limits(url_chars_max=30), field="task.url")


def test_a_remembered_url_whose_canonical_form_is_longer_is_still_refused() -> None:
    url = "http://example.com/" + "\u00e9" * 5  # 24 characters, 49 once percent-encoded
    urls.parse_webhook_url(url, Limits())
    with pytest.raises(ClientError, match="49 characters; the limit is 30"):
        urls.parse_webhook_url(url, Limits(url_chars_max=30))


def test_refusals_are_not_remembered_and_memory_is_bounded() -> None:
    limits = Limits()
    with pytest.raises(ClientError):
        urls.parse_webhook_url("ftp://example.com/", limits)
    assert not urls._parsed_urls
    for i in range(urls.PARSED_URLS_MAX * 3):
        urls.parse_webhook_url(f"http://example.com/{i}", limits)
    assert len(urls._parsed_urls) <= urls.PARSED_URLS_MAX
