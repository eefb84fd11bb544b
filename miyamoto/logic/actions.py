"""What a node asks its shell to do: the outputs of `Node.handle(event, now_ms)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .http import Headers, HttpResponse
from .messages import Envelope


@dataclass(frozen=True, slots=True, kw_only=True)
class SendApiResponse:
    request_id: int
    response: HttpResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundRequest:
    """A webhook request, complete: the shell connects to host:port and sends it as is.

    `headers` already hold Host, Content-Length and every X-Task-* header.
    """

    scheme: str
    host: str
    port: int
    method: str
    target: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StartDelivery:
    """Send `request`; report back with DeliveryResponded or DeliveryFailed for `delivery_id`.

    No complete answer within `timeout_ms` is a DeliveryFailed(TIMEOUT). Keep at most
    `excerpt_bytes_max` bytes of the response body. Redirects are not followed.
    """

    delivery_id: int
    request: OutboundRequest
    timeout_ms: int
    excerpt_bytes_max: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SendPeerMessage:
    """Send `envelope` to node `to` (encode it with `codec.encode`). Best effort: the protocols
    survive loss, duplication and reordering."""

    to: str
    envelope: Envelope


Action: TypeAlias = SendApiResponse | StartDelivery | SendPeerMessage
