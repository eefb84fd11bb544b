"""`POST /_peer` in the shell: check the MAC, split the batch, decode it, feed the envelopes.

This is the receiving side of `peer_links.py`: a batch is the encoded envelopes joined by
b"\\n". With cluster keys, the batch's auth header is checked (`peer_auth.PeerVerifier`) before
any byte is decoded; a refused batch gets 401 and changes nothing. A batch is all or nothing:
every line is decoded (and so validated, see codec.py) before the first envelope is fed, so a
bad line gets 400 and the node sees none of the batch. The node then gets decoded envelopes
only, one `PeerMessageReceived` each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..logic import codec
from ..logic.events import Event, PeerMessageReceived
from ..logic.http import HttpRequest, HttpResponse, error_response, json_response
from ..logic.messages import Envelope
from .peer_auth import PeerVerifier, Refused
from .peer_links import PEER_PATH

BATCH_MESSAGES_MAX: Final = 50_000
"""Messages in one batch (a sender's whole queue for us fits: `PeerLinkSettings`)."""


def is_peer_request(request: HttpRequest) -> bool:
    """Whether the shell answers `request` here instead of the node."""
    return request.target.partition("?")[0] == PEER_PATH


@dataclass(slots=True, kw_only=True)
class PeerEndpointStats:
    """What reached `/_peer` since this process started; for `GET /_cluster`. Only grow."""

    batches: int = 0
    """Batches fed to the node (authenticated when the node has keys)."""
    messages: int = 0
    """Envelopes fed to the node."""
    batches_malformed: int = 0
    """Batches refused with 400: a line the codec refused, a sender other than the signer, too
    many messages, or not a POST."""


class PeerEndpoint:
    """Answers `POST /_peer`; `feed` hands one event to the node (`NodeRuntime.feed`)."""

    def __init__(self, feed: Callable[[Event], None], *, verifier: PeerVerifier | None) -> None:
        self._feed = feed
        self._verifier = verifier
        self.stats = PeerEndpointStats()

    def answer(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            self.stats.batches_malformed += 1
            response = error_response(405, f"{PEER_PATH} takes POST only")
            return HttpResponse(
                status=405, headers=(*response.headers, ("Allow", "POST")), body=response.body
            )
        signer: str | None = None
        if self._verifier is not None:
            verdict = self._verifier.verify(request.headers, request.body)
            if isinstance(verdict, Refused):
                return error_response(401, f"peer batch refused: {verdict.reason}")
            signer = verdict.sender
        envelopes, problem = self._decode(request.body, signer)
        if problem is not None:
            self.stats.batches_malformed += 1
            return error_response(400, problem)
        self.stats.batches += 1
        self.stats.messages += len(envelopes)
        for envelope in envelopes:
            self._feed(PeerMessageReceived(envelope=envelope))
        return json_response(200, {"status": "ok", "accepted": len(envelopes)})

    def stats_json(self) -> dict[str, object]:
        """The counters for `GET /_cluster` (with the MAC check's, when the node has keys)."""
        body: dict[str, object] = {
            "batches": self.stats.batches,
            "messages": self.stats.messages,
            "batches_malformed": self.stats.batches_malformed,
            "authenticated": self._verifier is not None,
        }
        if self._verifier is not None:
            body["auth"] = self._verifier.stats.as_dict()
        return body

    def _decode(self, body: bytes, signer: str | None) -> tuple[list[Envelope], str | None]:
        lines = [line for line in body.split(b"\n") if line]
        if len(lines) > BATCH_MESSAGES_MAX:
            return [], f"{len(lines)} messages in one batch; the limit is {BATCH_MESSAGES_MAX}"
        envelopes: list[Envelope] = []
        for number, line in enumerate(lines, start=1):
            try:
                envelope = codec.decode(line)
            except codec.PeerProtocolError as error:
                return [], f"message {number} of {len(lines)} refused, so the whole batch: {error}"
            if signer is not None and envelope.sender != signer:
                return [], (
                    f"message {number} claims sender {envelope.sender}, "
                    f"but the batch is signed by {signer}"
                )
            envelopes.append(envelope)
        return envelopes, None
