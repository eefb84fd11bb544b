"""Property: any sequence of well-formed but hostile peer messages, mixed with time passing, API
requests and webhook answers, fed to a real `Node` the way the shell feeds it, never makes
`Node.handle` raise, and the node's and its membership's invariants (asserted inside `handle`
after every event) hold throughout.

"Well-formed" means what the shell lets through: each message is encoded and decoded by the
codec (and so passes peer_rules.py) before it is fed. The values are drawn from small pools
(tests/peer_strategies.py) so that they hit the node's tasks, refs and members.

Example counts: `CI_EXAMPLES` in CI (about 10 s on one core); set MIYAMOTO_FUZZ_EXAMPLES for a
longer run.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miyamoto.logic import codec
from miyamoto.logic.actions import Action, SendPeerMessage, StartDelivery
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import (
    ApiRequestReceived,
    DeliveryError,
    DeliveryFailed,
    DeliveryResponded,
    Event,
    PeerMessageReceived,
    TimerExpired,
)
from miyamoto.logic.http import HttpRequest
from miyamoto.logic.messages import Envelope
from miyamoto.logic.node import Node

from .peer_strategies import NODE_IDS, QUEUES, T0_MS, TASK_IDS, hostile_envelopes

CI_EXAMPLES = 150
EXAMPLES = int(os.environ.get("MIYAMOTO_FUZZ_EXAMPLES", CI_EXAMPLES))


@dataclass(frozen=True)
class Advance:
    ms: int


@dataclass(frozen=True)
class Api:
    method: str
    target: str
    body: bytes = b""


@dataclass(frozen=True)
class Answer:
    status: int | None
    """None: the delivery failed (reset)."""


steps = st.lists(
    st.one_of(
        hostile_envelopes,
        hostile_envelopes,
        hostile_envelopes,
        st.builds(Advance, st.sampled_from([1, 50, 200, 1_000, 5_000, 61_000])),
        st.builds(
            Api,
            st.sampled_from(["GET", "DELETE"]),
            st.sampled_from([f"/{q}/{t}" for q in QUEUES for t in TASK_IDS] + ["/q?state=failed"]),
        ),
        st.builds(Answer, st.sampled_from([200, 500, 503, None])),
    ),
    max_size=40,
)


def enqueue(task_id: str, countdown_s: int) -> Api:
    body = {"url": "http://127.0.0.1:9/hook", "id": task_id, "countdown": countdown_s}
    return Api("POST", "/q", json.dumps(body).encode())


class Driver:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.now_ms = T0_MS
        self.request_ids = 0
        self.deliveries: list[StartDelivery] = []
        self.refused = 0

    def feed(self, event: Event) -> None:
        actions: list[Action] = self.node.handle(event, self.now_ms)
        # The node can always count its term and epoch one further (and so keep talking).
        view = self.node.membership.view()
        assert max(view.term, view.epoch) < codec.INT_MAX, view
        for action in actions:
            if isinstance(action, StartDelivery):
                self.deliveries.append(action)
            elif isinstance(action, SendPeerMessage):
                codec.decode(codec.encode(action.envelope))  # what it sends, its peers accept

    def step(self, step: Envelope | Advance | Api | Answer) -> None:
        match step:
            case Envelope():
                try:
                    decoded = codec.decode(codec.encode(step))  # the shell's path
                except codec.PeerProtocolError:
                    self.refused += 1  # `/_peer` answers 400; the node never sees it
                    return
                self.feed(PeerMessageReceived(envelope=decoded))
            case Advance(ms=ms):
                self.now_ms += ms
                self.feed(TimerExpired())
            case Api(method=method, target=target, body=body):
                self.request_ids += 1
                headers = (("content-type", "application/json"),) if body else ()
                request = HttpRequest(method=method, target=target, headers=headers, body=body)
                self.feed(ApiRequestReceived(request_id=self.request_ids, request=request))
            case Answer(status=status) if self.deliveries:
                start = self.deliveries.pop(0)
                if status is None:
                    self.feed(
                        DeliveryFailed(delivery_id=start.delivery_id, error=DeliveryError.RESET)
                    )
                else:
                    self.feed(DeliveryResponded(delivery_id=start.delivery_id, status=status))
            case Answer():
                pass


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(founder=st.booleans(), seed=st.integers(0, 2**32), script=steps)
def test_hostile_peer_messages_in_any_order_never_make_the_node_raise(
    founder: bool, seed: int, script: list[Envelope | Advance | Api | Answer]
) -> None:
    me = NODE_IDS[0]
    config = NodeConfig(node_id=me, seed_id=me if founder else NODE_IDS[1], replicas=2)
    driver = Driver(Node(config, random.Random(seed), T0_MS))
    for task_id, countdown_s in zip(TASK_IDS, (0, 5, 600), strict=True):
        driver.step(enqueue(task_id, countdown_s))
    for step in script:
        driver.step(step)
    driver.step(Advance(ms=10_000))  # and time passing after it all is handled as well
