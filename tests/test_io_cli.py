"""The daemon's command line: what it accepts, what it refuses, and how it says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from miyamoto.io.cli import Address, parse_args
from miyamoto.logic.membership import ClusterTiming


def test_the_two_positionals_and_defaults() -> None:
    options = parse_args(["127.0.0.1", "127.0.0.1"])
    assert options.interface == "127.0.0.1"
    assert options.port == 8088
    assert options.leader == Address(host="127.0.0.1", port=8088)  # itself: the first node
    assert options.node_id == "127.0.0.1:8088"
    assert options.seed_id == "127.0.0.1:8088"
    assert (options.seed, options.replicas, options.replica_delay_s) == (None, 2, 5.0)
    assert options.queues_file is None


def test_every_option(tmp_path: Path) -> None:
    queues = tmp_path / "queues.json"
    queues.write_text("{}")
    options = parse_args(
        [
            "0.0.0.0",
            "node-a.example:9000",
            "--port=9001",
            "--seed",
            "[::1]:8089",
            "--replicas",
            "3",
            "--replica-delay",
            "0.5",
            "--queues",
            str(queues),
        ]
    )
    assert options.port == 9001
    assert options.leader == Address(host="node-a.example", port=9000)
    assert options.seed == Address(host="::1", port=8089)
    assert options.seed_id == "[::1]:8089"  # --seed overrides LEADER
    assert (options.replicas, options.replica_delay_s) == (3, 0.5)
    assert options.queues_file == str(queues)


def test_a_leader_without_a_port_uses_this_nodes_port() -> None:
    assert parse_args(["::1", "localhost", "--port", "7000"]).leader == Address(
        host="localhost", port=7000
    )


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "required"),
        (["127.0.0.1"], "LEADER"),
        (["not a host!", "127.0.0.1"], "not an IP address or host name"),
        (["127.0.0.1", "127.0.0.1", "--port", "70000"], "not a port number"),
        (["127.0.0.1", "127.0.0.1", "--port", "-1"], "--port"),
        (["127.0.0.1", "127.0.0.1:abc"], "not a port number"),
        (["127.0.0.1", "127.0.0.1", "--seed", "10.0.0.2"], "give a port"),
        (["127.0.0.1", "127.0.0.1", "--seed", "10.0.0.2:0"], "port 0"),
        (["127.0.0.1", "127.0.0.1", "--replicas", "-1"], "--replicas"),
        (["127.0.0.1", "127.0.0.1", "--replicas", "0"], "not a replica count"),
        (["127.0.0.1", "127.0.0.1", "--replicas", "two"], "not a replica count"),
        (["127.0.0.1", "127.0.0.1", "--replica-delay", "nan"], "not a number of seconds"),
        (["127.0.0.1", "127.0.0.1", "--replica-delay", "-5"], "--replica-delay"),
        (["127.0.0.1", "127.0.0.1", "--queues", "/no/such/file"], "not a readable file"),
        (["127.0.0.1", "127.0.0.1", "--bogus"], "unrecognized arguments"),
    ],
)
def test_invalid_values_are_refused_with_a_usage_message(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m miyamoto.io.node")
    assert complaint in err


def test_help_names_the_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("INTERFACE", "LEADER", "--port", "--seed", "--replicas", "--queues"):
        assert word in out


def test_retention_and_a_queues_file_reach_the_node_config(tmp_path: Path) -> None:
    from miyamoto.io.node import node_config
    from miyamoto.logic.queue_config import QueueConfigError

    queues = tmp_path / "queues.toml"
    queues.write_text("[queue.emails]\nrate = 2\n")
    config = node_config(
        parse_args(["127.0.0.1", "127.0.0.1", "--retention", "60", "--queues", str(queues)])
    )
    assert config.retention_ms == 60_000
    assert config.queues_config.for_queue("emails").rate_per_s == 2
    queues.write_text("[queue.emails]\nrat = 2\n")
    with pytest.raises(QueueConfigError, match=r"queues\.toml: \[queue\.emails\] unknown key"):
        node_config(parse_args(["127.0.0.1", "127.0.0.1", "--queues", str(queues)]))


def test_the_operations_flags() -> None:
    options = parse_args(
        [
            "0.0.0.0",
            "0.0.0.0",
            "--port=9001",
            "--advertise=node-a.example:9001",
            "--log-level=debug",
            "--log-format=json",
            "--access-log",
            "--no-metrics",
            "--heartbeat-interval=0.1",
            "--election-timeout-min=0.5",
            "--election-timeout-max=0.8",
            "--member-timeout=3",
        ]
    )
    assert (options.log_level, options.log_format) == ("debug", "json")
    assert options.access_log and not options.metrics
    assert options.node_id == "node-a.example:9001"  # peers and the cluster view use this
    assert options.bind_address == Address(host="0.0.0.0", port=9001)
    assert options.seed_id == "node-a.example:9001"  # LEADER named this node: the first one
    timing = options.timing()
    assert (timing.heartbeat_interval_ms, timing.member_timeout_ms) == (100, 3000)
    assert (timing.election_timeout_min_ms, timing.election_timeout_max_ms) == (500, 800)


def test_the_operations_defaults() -> None:
    options = parse_args(["127.0.0.1", "127.0.0.1"])
    assert (options.log_level, options.log_format, options.access_log) == ("info", "text", False)
    assert options.metrics and options.advertise is None
    assert options.timing() == ClusterTiming()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--heartbeat-interval=1"], "--heartbeat-interval must be at least 0.001 s and shorter"),
        (["--heartbeat-interval=0"], "--heartbeat-interval must be at least 0.001 s"),
        (["--election-timeout-min=3"], "--election-timeout-min must not be longer than"),
        (["--member-timeout=2"], "--member-timeout must be longer than --election-timeout-max"),
        (["--advertise=example.org"], "give a port, as HOST:PORT"),
        (["--log-format=xml"], "invalid choice: 'xml'"),
        (["--log-level=loud"], "invalid choice: 'loud'"),
    ],
)
def test_operations_flags_that_cannot_work_are_refused(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["127.0.0.1", "127.0.0.1", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
