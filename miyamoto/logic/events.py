"""What happens to a node: the inputs of `Node.handle(event, now_ms)`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from .http import Headers, HttpRequest
from .messages import Envelope
from .queue_config import QueuesConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRequestReceived:
    """A complete HTTP request arrived on the API; answer with `SendApiResponse(request_id)`."""

    request_id: int
    request: HttpRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryResponded:
    """The webhook answered (any status). `body_excerpt` is at most the bytes the action asked."""

    delivery_id: int
    status: int
    headers: Headers = ()
    body_excerpt: bytes = b""


class DeliveryError(enum.Enum):
    TIMEOUT = "timeout"
    """No complete answer within the delivery deadline."""
    REFUSED = "refused"
    RESET = "reset"
    """The connection broke before a complete answer."""
    DNS = "dns"
    PROTOCOL = "protocol"
    """The receiver answered with something that is not HTTP/1.1."""
    TLS = "tls"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryFailed:
    """The webhook could not be asked, or did not answer."""

    delivery_id: int
    error: DeliveryError
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerExpired:
    """The deadline from `next_deadline_ms()` has come."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMessageReceived:
    """A message from another node, already decoded (and so checked) by the codec."""

    envelope: Envelope


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuesReconfigured:
    """The queues file was reloaded (SIGHUP) and checked: every queue takes its new settings at
    once, and queues made from now on get them."""

    config: QueuesConfig


Event: TypeAlias = (
    ApiRequestReceived
    | DeliveryResponded
    | DeliveryFailed
    | TimerExpired
    | PeerMessageReceived
    | QueuesReconfigured
)
