"""Peer authentication: the MAC and replay checks, key files and rotation, and nodes on 127.0.0.1
that refuse unsigned or foreign-keyed batches (a forged `Finished` changes nothing; nodes with
different keys never join each other)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from functools import partial

import pytest
import trio

from miyamoto.io.node import main as daemon_main
from miyamoto.io.node import serve_node, unauthenticated_warning
from miyamoto.io.peer_auth import (
    AUTH_HEADER,
    ClusterKeyError,
    ClusterKeys,
    PeerSigner,
    PeerVerifier,
    Refused,
    Verified,
    load_keys,
    parse_keys,
)
from miyamoto.io.peer_endpoint import PeerEndpoint
from miyamoto.io.peer_links import PEER_CONTENT_TYPE
from miyamoto.logic import codec
from miyamoto.logic.messages import Envelope
from miyamoto.logic.node import NodeConfig
from miyamoto.logic.replica_messages import Finished

from .io_raw_http import RawMessage, exchange, request_bytes

OLD_KEY = "0" * 64
NEW_KEY = "1" * 64
A, B = "127.0.0.1:7001", "127.0.0.1:7002"
T_MS = 1_700_000_000_000
TEST_TIMEOUT_S = 20


def keys(*texts: str) -> ClusterKeys:
    return parse_keys("\n".join(texts), source="test")


def pair(
    sign_with: ClusterKeys, verify_with: ClusterKeys, clock: Callable[[], int] = lambda: T_MS
) -> tuple[PeerSigner, PeerVerifier]:
    signer = PeerSigner(sign_with, self_id=A, boot=5, clock_ms=clock)
    return signer, PeerVerifier(verify_with, self_id=B, clock_ms=clock)


# -- the check ------------------------------------------------------------------------------------


def test_a_signed_batch_verifies_once_and_its_replay_is_refused() -> None:
    signer, verifier = pair(keys(OLD_KEY), keys(OLD_KEY))
    header = signer.header(B, b"body")
    assert verifier.verify([header], b"body") == Verified(sender=A)
    replay = verifier.verify([header], b"body")
    assert isinstance(replay, Refused) and "replay" in replay.reason
    assert verifier.verify([signer.header(B, b"next")], b"next") == Verified(sender=A)
    assert (verifier.stats.accepted, verifier.stats.replayed) == (2, 1)


def test_a_changed_body_a_missing_header_or_another_key_is_refused_and_counted() -> None:
    signer, verifier = pair(keys(OLD_KEY), keys(OLD_KEY))
    assert isinstance(verifier.verify([signer.header(B, b"body")], b"bodY"), Refused)
    assert isinstance(verifier.verify([], b"body"), Refused)
    assert isinstance(verifier.verify([(AUTH_HEADER, "v1 nonsense")], b""), Refused)
    stranger, _ = pair(keys(NEW_KEY), keys(NEW_KEY))
    assert isinstance(verifier.verify([stranger.header(B, b"x")], b"x"), Refused)
    stats = verifier.stats.as_dict()
    counts = (stats["bad_mac"], stats["missing"], stats["malformed"], stats["refused"])
    assert counts == (2, 1, 1, 4)


def test_a_batch_signed_for_another_node_is_refused() -> None:
    signer, verifier = pair(keys(OLD_KEY), keys(OLD_KEY))
    verdict = verifier.verify([signer.header("127.0.0.1:9999", b"x")], b"x")
    assert isinstance(verdict, Refused) and "not for this node" in verdict.reason


def test_a_batch_signed_outside_the_window_is_refused() -> None:
    now = [T_MS]
    signer, verifier = pair(keys(OLD_KEY), keys(OLD_KEY), clock=lambda: now[0])
    header = signer.header(B, b"x")
    now[0] += 61_000
    verdict = verifier.verify([header], b"x")
    assert isinstance(verdict, Refused) and "window" in verdict.reason


def test_during_a_rotation_both_keys_verify_and_the_first_signs() -> None:
    rotating = keys(NEW_KEY, OLD_KEY)
    new_signer, verifier = pair(rotating, rotating)
    old_signer = PeerSigner(keys(OLD_KEY), self_id="127.0.0.1:7003", boot=6, clock_ms=lambda: T_MS)
    assert isinstance(verifier.verify([new_signer.header(B, b"a")], b"a"), Verified)
    assert isinstance(verifier.verify([old_signer.header(B, b"b")], b"b"), Verified)
    _, new_only = pair(keys(NEW_KEY), keys(NEW_KEY))
    assert isinstance(new_only.verify([new_signer.header(B, b"c")], b"c"), Verified)


def test_key_files_and_the_variable(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "keys"  # type: ignore[operator]
    path.write_text(f"# rotated 2026-12\n{NEW_KEY}\n\n{OLD_KEY}\n")
    assert load_keys(str(path), {}) == ClusterKeys(keys=(NEW_KEY.encode(), OLD_KEY.encode()))
    from_env = load_keys(None, {"MIYAMOTO_CLUSTER_KEY": f"{NEW_KEY},{OLD_KEY}"})
    assert from_env is not None and len(from_env.keys) == 2
    assert load_keys(None, {}) is None
    assert OLD_KEY not in repr(from_env)
    for text, error in (
        ("", "no key"),
        ("short", "has 5 characters"),
        ("é" * 40, "characters other than"),
        ("\n".join(["k" * 40] * 9), "limit of 8"),
    ):
        with pytest.raises(ClusterKeyError, match=error):
            parse_keys(text, source="f")


def test_the_daemon_refuses_a_bad_key_file_before_it_starts(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys"  # type: ignore[operator]
    path.write_text("secret\n")
    status = daemon_main(["127.0.0.1", "127.0.0.1", "--port", "0", "--cluster-key-file", str(path)])
    assert status == 2
    error = capsys.readouterr().err
    assert "key 1 has 6 characters" in error and "secret" not in error


def test_a_node_on_a_non_loopback_address_without_a_key_warns_of_the_risk() -> None:
    assert unauthenticated_warning("127.0.0.1") is None
    assert unauthenticated_warning("::1") is None
    assert unauthenticated_warning("localhost") is None
    warning = unauthenticated_warning("0.0.0.0")
    assert warning is not None and "act as a peer" in warning and "--cluster-key-file" in warning


# -- real nodes on 127.0.0.1 ----------------------------------------------------------------------


async def get_json(port: int, target: str) -> dict[str, object]:
    request = request_bytes("GET", target, headers=(("Connection", "close"),))
    (reply,) = await exchange(port, request)
    body: dict[str, object] = reply.json()
    return body


async def post(port: int, target: str, body: bytes, *headers: tuple[str, str]) -> RawMessage:
    all_headers = (("Connection", "close"), *headers)
    (reply,) = await exchange(port, request_bytes("POST", target, body, all_headers))
    return reply


async def test_an_unsigned_forged_finished_gets_401_and_the_task_stays_scheduled() -> None:
    endpoints: list[PeerEndpoint] = []
    with trio.fail_after(TEST_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            config = NodeConfig(node_id="127.0.0.1:0")
            port = await nursery.start(
                partial(
                    serve_node,
                    config,
                    rng=random.Random(1),
                    cluster_keys=keys(OLD_KEY),
                    on_peer_endpoint=endpoints.append,
                )
            )
            task = json.dumps({"url": "http://127.0.0.1:9/x", "countdown": 600}).encode()
            enqueued = await post(port, "/q", task, ("Content-Type", "application/json"))
            task_id = enqueued.json()["id"]
            forged = Envelope(
                sender="127.0.0.1:1", incarnation=1, cluster_id=0, term=1, epoch=1,
                message=Finished(
                    queue="q", task_id=task_id, state="succeeded", attempts=1, executions=1,
                    last_status=200, last_error=None, excerpt=None,
                ),
            )  # fmt: skip
            line = codec.encode(forged)
            unsigned = await post(port, "/_peer", line, ("Content-Type", PEER_CONTENT_TYPE))
            wrong_key = PeerSigner(
                keys(NEW_KEY), self_id="127.0.0.1:1", boot=1, clock_ms=lambda: trio_wall_ms()
            ).header(f"127.0.0.1:{port}", line)
            foreign = await post(port, "/_peer", line, wrong_key)
            state = (await get_json(port, f"/q/{task_id}"))["state"]
            nursery.cancel_scope.cancel()
    assert (unsigned.status, foreign.status) == (401, 401)
    assert unsigned.json()["status"] == "error" and AUTH_HEADER in unsigned.json()["error"]
    assert "does not match" in foreign.json()["error"]
    assert state == "scheduled"
    auth = endpoints[0].stats_json()["auth"]
    assert isinstance(auth, dict) and (auth["missing"], auth["bad_mac"]) == (1, 1)


def trio_wall_ms() -> int:
    from miyamoto.io.runtime import wall_clock_ms

    return wall_clock_ms()


async def cluster_of_two(first: ClusterKeys, second: ClusterKeys) -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
    """Start a node with `first`, a second with `second` joining through it; after 3 s, both
    nodes' /_cluster and the first node's /_peer counters."""
    endpoints: list[PeerEndpoint] = []
    async with trio.open_nursery() as nursery:
        seed_port = await nursery.start(
            partial(
                serve_node,
                NodeConfig(node_id="127.0.0.1:0"),
                cluster_keys=first,
                on_peer_endpoint=endpoints.append,
            )
        )
        seed = f"127.0.0.1:{seed_port}"
        joiner_port = await nursery.start(
            partial(
                serve_node,
                NodeConfig(node_id="127.0.0.1:0", seed_id=seed),
                cluster_keys=second,
            )
        )
        await trio.sleep(3.0)
        seed_view = await get_json(seed_port, "/_cluster")
        joiner_view = await get_json(joiner_port, "/_cluster")
        nursery.cancel_scope.cancel()
    return seed_view, joiner_view, endpoints[0].stats_json()


async def test_nodes_with_different_keys_never_join_and_the_same_key_joins() -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        seed, joiner, counters = await cluster_of_two(keys(OLD_KEY), keys(NEW_KEY))
    assert [m["node"] for m in seed["members"]] == [seed["node"]]  # type: ignore[index]
    assert joiner["role"] == "joining"
    auth = counters["auth"]
    assert isinstance(auth, dict) and auth["bad_mac"] >= 1 and auth["accepted"] == 0
    with trio.fail_after(TEST_TIMEOUT_S):
        # Rotation, step one: the joiner already accepts the new key but still signs with the old.
        seed, joiner, counters = await cluster_of_two(keys(OLD_KEY), keys(OLD_KEY, NEW_KEY))
    members = sorted(m["node"] for m in seed["members"])  # type: ignore[attr-defined]
    assert members == sorted([seed["node"], joiner["node"]])
    assert joiner["role"] == "follower"
