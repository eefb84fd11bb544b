"""API tokens: who may call which API operation. Pure: the token list and the rule are data.

`--api-tokens-file` holds one token a line, `name token scopes` (scopes comma-separated). A
request names its token in `Authorization: Bearer <token>`. The scope an operation needs is a
function of its `Route` (`required_scope`); the shell checks it before the node sees the request.
Without a tokens file the API is open, as it always was.
"""

from __future__ import annotations

import enum
import hmac
import re
from dataclasses import dataclass
from typing import assert_never

from .http import HttpResponse, error_response
from .routes import Operation, Route


class Scope(enum.Enum):
    ENQUEUE = "enqueue"
    READ = "read"
    """Queue and task listings, cluster status."""
    ADMIN = "admin"
    """Delete (cancel), pause, resume, purge, rerun, destination holds."""


TOKENS_MAX = 1000
"""Tokens one file may hold: each request compares against all of them (constant time)."""
TOKEN_CHARS_MIN = 16
"""Shorter tokens could be guessed; `openssl rand -hex 32` makes a good one."""
TOKEN_CHARS_MAX = 256

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(rf"[\x21-\x7e]{{{TOKEN_CHARS_MIN},{TOKEN_CHARS_MAX}}}")
"""Printable ASCII without spaces: what an Authorization header carries unchanged."""


class TokensFileError(ValueError):
    """A tokens file we refuse to start with; the message names the line, never the token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    name: str
    """Who holds it; what logs and errors may show instead of the token."""
    secret: bytes
    scopes: frozenset[Scope]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiTokens:
    tokens: tuple[ApiToken, ...]

    def __post_init__(self) -> None:
        assert 1 <= len(self.tokens) <= TOKENS_MAX, len(self.tokens)

    def find(self, presented: bytes) -> ApiToken | None:
        """The token `presented` is, compared in constant time against every token (no early
        exit, so the time taken says nothing about which token, or how much of one, matched)."""
        found: ApiToken | None = None
        for token in self.tokens:
            if hmac.compare_digest(token.secret, presented):
                found = token
        return found


def parse_api_tokens(text: str) -> ApiTokens:
    """The tokens in a tokens file's text; TokensFileError saying which line is wrong."""
    tokens: list[ApiToken] = []
    names: set[str] = set()
    secrets: set[bytes] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise TokensFileError(f"line {number}: expected `name token scopes`")
        name, secret, scope_list = fields
        if not _NAME.fullmatch(name):
            raise TokensFileError(f"line {number}: a name is 1 to 64 of A-Z a-z 0-9 _ . -")
        if not _TOKEN.fullmatch(secret):
            raise TokensFileError(
                f"line {number} ({name}): a token is {TOKEN_CHARS_MIN} to {TOKEN_CHARS_MAX} "
                "printable ASCII characters"
            )
        scopes = set()
        for word in scope_list.split(","):
            try:
                scopes.add(Scope(word))
            except ValueError:
                known = ", ".join(s.value for s in Scope)
                raise TokensFileError(
                    f"line {number} ({name}): unknown scope {word[:20]!r}; scopes are {known}"
                ) from None
        if name in names:
            raise TokensFileError(f"line {number}: the name {name!r} is used twice")
        if secret.encode() in secrets:
            raise TokensFileError(f"line {number} ({name}): the same token is given twice")
        names.add(name)
        secrets.add(secret.encode())
        tokens.append(ApiToken(name=name, secret=secret.encode(), scopes=frozenset(scopes)))
        if len(tokens) > TOKENS_MAX:
            raise TokensFileError(f"more than {TOKENS_MAX} tokens; the limit is {TOKENS_MAX}")
    if not tokens:
        raise TokensFileError("no tokens in the file (without a tokens file the API is open)")
    return ApiTokens(tokens=tuple(tokens))


def required_scope(route: Route) -> Scope | None:
    """The scope a route needs; None when it is open to anyone."""
    match route.operation:
        case Operation.HEALTH:
            return None  # load balancers and supervisors probe it without credentials
        case Operation.ENQUEUE:
            return Scope.ENQUEUE
        case Operation.QUEUE_INFO | Operation.TASK_INFO | Operation.CLUSTER:
            return Scope.READ
        case Operation.QUEUES:
            return Scope.READ
        case (
            Operation.TASK_CANCEL
            | Operation.TASK_RERUN
            | Operation.QUEUE_COMMAND
            | Operation.DESTINATIONS
            | Operation.DESTINATION_LIFT
            | Operation.CLUSTER_LEAVE
        ):
            return Scope.ADMIN
        case _:
            assert_never(route.operation)


AUTHENTICATE_HEADER = ("www-authenticate", 'Bearer realm="miyamoto"')


def authorize(
    tokens: ApiTokens, authorization: str | None, route: Route | None
) -> HttpResponse | None:
    """None when a request with this Authorization header may go ahead; else the 401 or 403 to
    answer with. `route` None: a request with no route (the node answers 404 or 405), which any
    valid token may send, so that nobody without one learns which paths exist."""
    scope = None if route is None else required_scope(route)
    if route is not None and scope is None:
        return None
    token = _presented(tokens, authorization)
    if token is None:
        response = error_response(
            401, "this API needs a token: send `Authorization: Bearer <token>` with a known token"
        )
        return HttpResponse(
            status=401, headers=(*response.headers, AUTHENTICATE_HEADER), body=response.body
        )
    if scope is not None and scope not in token.scopes:
        return error_response(
            403, f"the token {token.name!r} lacks the {scope.value!r} scope this request needs"
        )
    return None


def _presented(tokens: ApiTokens, authorization: str | None) -> ApiToken | None:
    if authorization is None:
        return None
    kind, _, credentials = authorization.strip().partition(" ")
    if kind.lower() != "bearer":
        return None
    credentials = credentials.strip()
    if not credentials.isascii():
        return None
    return tokens.find(credentials.encode("ascii"))
