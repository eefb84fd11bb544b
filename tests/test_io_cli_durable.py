"""The command line's durability options and seed lists (docs/durability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miyamoto.io.cli import Address, parse_args


def test_a_node_is_durable_by_default_in_a_directory_named_after_its_address() -> None:
    options = parse_args(["127.0.0.1", "127.0.0.1"])
    assert options.data_dir == Path("miyamoto-data/127.0.0.1-8088")
    assert options.fsync == "always"
    assert parse_args(["::1", "[::1]", "--port", "9000"]).data_dir == Path(
        "miyamoto-data/[::1]-9000"
    )


def test_data_dir_in_memory_and_fsync_are_taken() -> None:
    options = parse_args(["127.0.0.1", "127.0.0.1", "--data-dir", "/var/lib/m", "--fsync", "off"])
    assert (options.data_dir, options.fsync) == (Path("/var/lib/m"), "off")
    assert parse_args(["127.0.0.1", "127.0.0.1", "--in-memory"]).data_dir is None


def test_a_node_on_a_free_port_keeps_nothing_on_disk() -> None:
    # Port 0 names a new node on every start: there is nothing it could come back as.
    assert parse_args(["127.0.0.1", "127.0.0.1", "--port", "0"]).data_dir is None


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--data-dir", "d", "--in-memory"], "not allowed with argument"),
        (["--data-dir", "d", "--port", "0"], "a durable node needs a fixed --port"),
        (["--fsync", "sometimes"], "invalid choice: 'sometimes'"),
        (["--seed", "127.0.0.1:1,nohost:"], "not a port number"),
        (["--seed", ",".join(f"10.0.0.1:{p}" for p in range(1, 18))], "more than 16 seeds"),
    ],
)
def test_bad_durability_options_are_refused_with_a_usage_message(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["127.0.0.1", "127.0.0.1", *argv])
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_a_seed_list_is_tried_in_turn_and_this_node_is_left_out_of_it() -> None:
    options = parse_args(
        ["127.0.0.1", "127.0.0.1", "--port", "8089", "--seed", "127.0.0.1:8088,127.0.0.1:8089"]
    )
    assert options.seed == Address(host="127.0.0.1", port=8088)
    assert options.seed_ids == ("127.0.0.1:8088",)
    several = parse_args(
        ["127.0.0.1", "127.0.0.1", "--seed", "127.0.0.1:8089, 127.0.0.1:8090,127.0.0.1:8088"]
    )
    assert several.seed_ids == ("127.0.0.1:8089", "127.0.0.1:8090")
    assert several.seed_id == "127.0.0.1:8089"


def test_a_node_founds_a_cluster_only_when_it_is_its_only_seed() -> None:
    assert parse_args(["127.0.0.1", "127.0.0.1"]).seed_id == "127.0.0.1:8088"
    alone = parse_args(["127.0.0.1", "127.0.0.1", "--seed", "127.0.0.1:8088"])
    assert alone.seed_ids == ("127.0.0.1:8088",)
