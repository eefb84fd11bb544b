"""Issue 12's reproductions on the peer side: a peer message the node cannot act on must come
back as a 400 from `/_peer` and leave the node as it was, never raise inside `Node.handle`.

Each test posts one line to the shell's `/_peer` endpoint (peer_endpoint.py) in front of a real
`Node`, the way the daemon does. Before the fix, every one of these lines decoded and made the
node raise (or, for the term, left it unable to send a message its peers accept)."""

from __future__ import annotations

import random

from miyamoto.io.peer_endpoint import PeerEndpoint
from miyamoto.logic import codec
from miyamoto.logic.actions import Action, SendPeerMessage
from miyamoto.logic.config import NodeConfig
from miyamoto.logic.events import Event, TimerExpired
from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.messages import Envelope, HeartbeatAck, PeerMessage
from miyamoto.logic.node import Node
from miyamoto.logic.replica_messages import (
    Finished,
    QueryResult,
    QueueStats,
    QueueStatsQuery,
    StoreAck,
    StoreCopy,
    TaskCopy,
)

from .cluster_driver import T0_MS, Cluster

A, B = "10.0.0.1:7000", "10.0.0.2:7000"
URL = "http://receiver:9000/work"
CONFIG = NodeConfig(replicas=2, replica_delay_ms=5_000, claim_lease_ms=3_000)


def envelope(
    message: PeerMessage, *, sender: str = B, term: int = 1, cluster_id: int = 1
) -> Envelope:
    return Envelope(
        sender=sender, incarnation=1, cluster_id=cluster_id, term=term, epoch=1, message=message
    )


def post(feed: list[Event], message: PeerMessage, **stamp: int) -> HttpResponse:
    """POST `message` (encoded as our own codec would) to a `/_peer` that collects what it feeds."""
    endpoint = PeerEndpoint(feed.append, verifier=None)
    body = codec.encode(envelope(message, **stamp))  # type: ignore[arg-type]
    return endpoint.answer(HttpRequest(method="POST", target="/_peer", body=body))


def post_to(cluster: Cluster, name: str, message: PeerMessage) -> HttpResponse:
    fed: list[Event] = []
    response = post(fed, message)
    for event in fed:
        cluster.feed(name, event)
    return response


def enqueued(cluster: Cluster) -> str:
    reply = cluster.call(A, "POST", "/q", {"url": URL, "countdown": 60})
    assert reply.status == 200, reply.body
    task_id: str = reply.json()["id"]
    return task_id


def refused(response: HttpResponse, *words: str) -> None:
    assert response.status == 400, response.body
    body = response.json()
    assert body["status"] == "error"
    for word in words:
        assert word in body["error"], body["error"]


def test_a_finished_notice_with_a_free_text_state_is_refused_and_the_task_keeps_its_state() -> None:
    cluster = Cluster([A, B], CONFIG)
    task_id = enqueued(cluster)
    finished = Finished(
        queue="q", task_id=task_id, state="done!", attempts=1, executions=1,
        last_status=200, last_error=None, excerpt=None,
    )  # fmt: skip
    refused(post_to(cluster, A, finished), "state must be one of")
    assert cluster.holders("q", task_id) == {A: "scheduled", B: "scheduled"}


def test_a_finished_notice_cannot_carry_a_state_that_is_not_final() -> None:
    cluster = Cluster([A, B], CONFIG)
    task_id = enqueued(cluster)
    finished = Finished(
        queue="q", task_id=task_id, state="delivering", attempts=1, executions=1,
        last_status=None, last_error=None, excerpt=None,
    )  # fmt: skip
    refused(post_to(cluster, A, finished), "state must be one of")
    assert cluster.holders("q", task_id)[A] == "scheduled"


def test_a_store_ack_with_a_free_text_state_is_refused_and_the_enqueue_still_completes() -> None:
    cluster = Cluster([A, B], CONFIG)
    rid = cluster.request(A, "POST", "/q", {"url": URL, "countdown": 60})
    (to, sent), *_ = cluster.inbox
    assert to == B and isinstance(sent.message, StoreCopy)
    copy = sent.message.copy
    ack = StoreAck(
        ref=sent.message.ref, queue="q", task_id=copy.id, stored=False, state="gone?", holders=()
    )
    refused(post_to(cluster, A, ack), "state must be one of")
    cluster.settle()  # the real answer still completes the enqueue
    assert cluster.responses[rid].status == 200


def test_a_query_result_that_is_not_task_json_is_refused_and_the_lookup_still_answers() -> None:
    cluster = Cluster([A, B], CONFIG)
    task_id = enqueued(cluster)
    rid = cluster.request(A, "GET", f"/q/{task_id}")
    for task_json in ("{not json", '{"state": "weird"}', "[]", '{"id": 1}'):
        refused(post_to(cluster, A, QueryResult(ref=rid, task_json=task_json)), "task_json")
    cluster.settle()
    assert cluster.responses[rid].status == 200
    assert cluster.responses[rid].json()["state"] == "scheduled"


def test_queue_stats_with_a_task_that_is_not_task_json_are_refused() -> None:
    cluster = Cluster([A, B], CONFIG)
    rid = cluster.request(A, "GET", "/q?state=scheduled")
    stats = QueueStats(
        ref=rid, counts=(("scheduled", 1),), oldest_eta_ms=None, attempts_last_minute=0,
        paused=False, rate_millis_per_s=None, tasks=('{"eta": "soon"}',),
    )  # fmt: skip
    refused(post_to(cluster, A, stats), "tasks[0]")
    cluster.settle()
    assert cluster.responses[rid].status == 200


def test_a_queue_stats_query_with_a_free_text_state_is_refused() -> None:
    cluster = Cluster([A, B], CONFIG)
    enqueued(cluster)
    query = QueueStatsQuery(ref=1, queue="q", state="everything", limit=10)
    refused(post_to(cluster, A, query), "state must be one of")
    assert not cluster.inbox  # and nothing was answered


def test_a_task_copy_with_a_url_a_client_could_not_enqueue_is_refused_and_never_stored() -> None:
    cluster = Cluster([A, B], CONFIG)
    for url, words in (
        ("javascript:alert(1)", "url must be absolute"),
        ("http://user:pw@receiver/x", "credentials"),
        ("HTTP://Receiver:80/x", "canonical"),
    ):
        copy = TaskCopy(
            queue="q", id="t1", method="POST", url=url, headers=(), body=b"",
            eta_ms=T0_MS, created_ms=T0_MS, holders=((B, 0), (A, 1)),
        )  # fmt: skip
        refused(post_to(cluster, A, StoreCopy(ref=1, copy=copy)), words)
    cluster.advance(60_000)  # the copy would be due now: nothing to deliver, nothing raised
    assert cluster.holders("q", "t1") == {}
    assert cluster.deliveries == []


def test_a_task_copy_with_a_header_a_client_could_not_set_is_refused() -> None:
    cluster = Cluster([A, B], CONFIG)
    copy = TaskCopy(
        queue="q", id="t1", method="POST", url=URL, headers=(("x-task-id", "forged"),),
        body=b"", eta_ms=T0_MS, created_ms=T0_MS, holders=((B, 0), (A, 1)),
    )  # fmt: skip
    refused(post_to(cluster, A, StoreCopy(ref=1, copy=copy)), "may not be set")
    assert cluster.holders("q", "t1") == {}


def test_a_batch_with_one_bad_line_feeds_nothing() -> None:
    fed: list[Event] = []
    endpoint = PeerEndpoint(fed.append, verifier=None)
    good = codec.encode(envelope(HeartbeatAck(epoch_term=1, epoch=1)))
    body = good + b"\n" + b'{"v": 1}' + b"\n" + good
    response = endpoint.answer(HttpRequest(method="POST", target="/_peer", body=body))
    refused(response, "message 2 of 3")
    assert fed == []
    assert endpoint.stats.batches_malformed == 1


def test_a_term_of_2_to_the_64_minus_1_is_not_adopted_and_the_node_keeps_talking() -> None:
    node = Node(NodeConfig(node_id=A, seed_id=A), random.Random(1), T0_MS)
    assert node.membership.view().term == 1
    for message in (
        HeartbeatAck(epoch_term=2**64 - 1, epoch=1),
        HeartbeatAck(epoch_term=1, epoch=1),
    ):
        fed: list[Event] = []
        response = post(fed, message, term=2**64 - 1)
        assert response.status == 200  # well-formed: the membership judges terms
        for event in fed:
            node.handle(event, T0_MS)
    view = node.membership.view()
    assert view.term == 1 and view.role.value == "leader"
    assert view.stats.dropped_out_of_range == 2
    # Time passes: whatever the node sends, every peer can decode.
    sent: list[Action] = []
    for step in range(1, 20):
        sent += node.handle(TimerExpired(), T0_MS + step * 1_000)
    for action in sent:
        if isinstance(action, SendPeerMessage):
            codec.decode(codec.encode(action.envelope))


def test_a_term_a_little_ahead_is_still_adopted() -> None:
    node = Node(NodeConfig(node_id=A, seed_id=A), random.Random(1), T0_MS)
    fed: list[Event] = []
    cluster_id = node.membership.view().cluster_id
    post(fed, HeartbeatAck(epoch_term=1, epoch=1), term=1 + 2**20, cluster_id=cluster_id)
    for event in fed:
        node.handle(event, T0_MS)
    assert node.membership.view().term == 1 + 2**20
