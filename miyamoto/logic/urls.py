"""Webhook URLs: parsed strictly once at enqueue, so delivery never meets a URL it cannot send to.

We split the URL ourselves instead of using `urllib.parse.urlsplit`, which silently strips
whitespace and tabs/newlines and accepts `user:pass@` (credentials would leak into logs and
task listings). The canonical form (`WebhookUrl.url`) is what a task stores; parsing it again
gives the same `WebhookUrl`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode

from .errors import ClientError
from .limits import Limits

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_.-]{1,253}")
_PORT = re.compile(r"[0-9]{1,5}")
# Every printable ASCII character is kept as is in the request target (h11 accepts them);
# anything beyond ASCII is percent-encoded as UTF-8.
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookUrl:
    scheme: str
    """"http" or "https"."""
    host: str
    """Lower-case host name or IP address; an IPv6 address without brackets."""
    port: int
    target: str
    """Path and query, as sent in the request line; at least "/". Never a fragment."""
    host_header: str
    """host[:port] as sent in the Host header: the port only when not the scheme's default."""
    _url: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once, so every task enqueued with this (cached) URL shares one string object.
        object.__setattr__(self, "_url", f"{self.scheme}://{self.host_header}{self.target}")

    @property
    def url(self) -> str:
        """The canonical URL: lower-case scheme and host, no default port, no fragment."""
        return self._url


PARSED_URLS_MAX = 256
"""Distinct URLs whose parse is remembered: about 3 MB at worst, with URLs at the length limit."""

_parsed_urls: dict[str, WebhookUrl] = {}
"""Canonical parses of recently seen valid URLs, by the text given.

Most tasks of a node go to a few webhooks, and each URL is parsed at enqueue and again for
every delivery attempt. Remembering the parse made the node's work for an enqueue a fifth
faster, and lets the tasks of one webhook share one URL string (80 bytes less per pending
task). A parse is a pure function of the text and `url_chars_max`, and only the length checks
depend on the latter, so they are made again on every hit; refusals are never remembered."""


def parse_webhook_url(url: str, limits: Limits, *, field: str = "url") -> WebhookUrl:
    """Parse and validate an absolute http(s) URL; raise ClientError(400) saying what is wrong.

    `field` is what the client called the url (`task.url` in a form), for the error messages.
    """
    try:
        parsed = _parsed_urls.get(url)
        if parsed is not None:
            # The same checks, in the same order, as _parse makes on the lengths.
            _check_length(url, limits)
            _check_length(parsed.url, limits)
            return parsed
        parsed = _parse(url, limits)
    except ClientError as error:
        if field == "url":
            raise
        raise ClientError(error.status, field + error.message.removeprefix("url")) from None
    if len(_parsed_urls) >= PARSED_URLS_MAX:
        _parsed_urls.clear()  # bounded; cheaper than LRU bookkeeping on every hit
    _parsed_urls[url] = parsed
    return parsed


def _parse(url: str, limits: Limits) -> WebhookUrl:
    _check_length(url, limits)
    for char in url:
        code = ord(char)
        if code <= 0x20 or 0x7F <= code <= 0x9F or char.isspace():
            raise ClientError(400, "url must not contain whitespace or control characters")
        if 0xD800 <= code <= 0xDFFF:  # only JSON escapes can make these; UTF-8 cannot carry them
            raise ClientError(400, "url is not valid Unicode (a lone surrogate)")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ClientError(400, "url must be absolute: http://host/path or https://host/path")
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ClientError(400, f"url scheme must be http or https, not {scheme[:20]!r}")
    rest = rest.partition("#")[0]  # the fragment is never sent to a server
    split = len(rest)
    for delimiter in "/?":
        index = rest.find(delimiter)
        if index != -1:
            split = min(split, index)
    authority, target = rest[:split], rest[split:]
    if "@" in authority:
        raise ClientError(400, "url must not contain user:password@ (credentials leak into logs)")
    host, port = _parse_authority(authority, _DEFAULT_PORTS[scheme])
    if not target.startswith("/"):
        target = "/" + target
    target = quote(target, safe=_TARGET_SAFE)
    shown_host = f"[{host}]" if ":" in host else host
    host_header = shown_host if port == _DEFAULT_PORTS[scheme] else f"{shown_host}:{port}"
    parsed = WebhookUrl(scheme=scheme, host=host, port=port, target=target, host_header=host_header)
    _check_length(parsed.url, limits)  # percent-encoding can make it longer
    return parsed


def with_query(url: WebhookUrl, pairs: Iterable[tuple[str, str]], limits: Limits) -> WebhookUrl:
    """`url` with form-encoded `pairs` appended to its query string (after any query it has)."""
    encoded = urlencode(list(pairs))
    if not encoded:
        return url
    target = url.target
    separator = "" if target.endswith(("?", "&")) else "&" if "?" in target else "?"
    extended = replace(url, target=target + separator + encoded)
    _check_length(extended.url, limits, " with the params in its query string")
    return extended


def _check_length(url: str, limits: Limits, what: str = "") -> None:
    if len(url) > limits.url_chars_max:
        raise ClientError(
            400,
            f"url{what} is {len(url)} characters; the limit is {limits.url_chars_max}",
        )


def _parse_authority(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        address, bracket, port_part = authority[1:].partition("]")
        if not bracket:
            raise ClientError(400, f"url has an unclosed IPv6 bracket: {authority[:60]!r}")
        try:
            if "%" in address:  # a zone id only means something on the sender's machine
                raise ValueError(address)
            host = str(ipaddress.IPv6Address(address))
        except ValueError:
            raise ClientError(400, f"url has a bad IPv6 address: {address[:60]!r}") from None
        if port_part and not port_part.startswith(":"):
            raise ClientError(400, f"url has junk after the IPv6 address: {authority[:60]!r}")
        port_text: str | None = port_part[1:] if port_part else None
    else:
        host, colon, port_after = authority.partition(":")
        port_text = port_after if colon else None
        if not host:
            raise ClientError(400, "url has no host")
        if not host.isascii():
            raise ClientError(400, f"url host must be ASCII (use the xn-- form): {host[:60]!r}")
        host = host.lower()
        if not _HOST_NAME.fullmatch(host):
            raise ClientError(400, f"url has a bad host: {host[:60]!r}")
    if port_text is None:
        return host, default_port
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ClientError(400, f"url has a bad port (1 to 65535): {port_text[:60]!r}")
    return host, int(port_text)
