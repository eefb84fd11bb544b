"""The security flags of the daemon: parsed, refused when wrong, and reaching the node."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from miyamoto.io.cli import parse_args
from miyamoto.io.node import main, node_config

BASE = ["127.0.0.1", "127.0.0.1"]


def test_destination_flags_reach_the_node_config() -> None:
    options = parse_args(
        [*BASE, "--deny-destinations", "10.0.0.0/8,fc00::/7", "--allow-destinations", "10.1.0.0/16"]
    )
    policy = node_config(options).destinations
    assert policy.refusal(ipaddress.ip_address("10.2.3.4"), 80) == "denied by --deny-destinations"
    assert policy.refusal(ipaddress.ip_address("10.1.3.4"), 80) is None
    assert policy.refusal(ipaddress.ip_address("fd00::1"), 80) is not None


def test_a_bad_network_is_refused_with_a_usage_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args([*BASE, "--deny-destinations", "10.0.0.1/8"])
    assert exit_.value.code == 2
    assert "--deny-destinations" in capsys.readouterr().err


def test_a_bad_tokens_file_stops_the_daemon_before_it_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("ci 0123456789abcdef0123 enqueue,write\n")
    assert main([*BASE, "--port", "0", "--api-tokens-file", str(tokens)]) == 2
    err = capsys.readouterr().err
    assert f"{tokens}: line 1 (ci): unknown scope 'write'" in err
    assert "0123456789abcdef0123" not in err


def test_a_bad_signing_key_file_stops_the_daemon_before_it_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("not-a-key\n")
    assert main([*BASE, "--port", "0", "--signing-key-file", str(keys)]) == 2
    assert f"{keys}: line 1: a signing key starts with 'whsec_'" in capsys.readouterr().err
