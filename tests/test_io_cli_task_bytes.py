"""`--max-task-bytes`: the byte budget of a node's tasks, from the command line to the logic."""

from __future__ import annotations

import os

import pytest

from miyamoto.io.cli import default_task_bytes, parse_args
from miyamoto.io.node import node_config

BASE = ["127.0.0.1", "127.0.0.1", "--in-memory"]


def test_the_default_is_a_quarter_of_physical_memory() -> None:
    memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert default_task_bytes() == memory_bytes // 4
    options = parse_args(BASE)
    assert node_config(options).limits.task_bytes_max == memory_bytes // 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000", 1000), ("64K", 64 * 1024), ("512m", 512 * 1024**2), ("2GiB", 2 * 1024**3)],
)
def test_a_byte_count_with_or_without_a_unit_reaches_the_logic(text: str, expected: int) -> None:
    options = parse_args([*BASE, "--max-task-bytes", text])
    assert node_config(options).limits.task_bytes_max == expected


@pytest.mark.parametrize("text", ["0", "-5", "1.5G", "lots", "9" * 30])
def test_anything_else_is_refused_before_the_node_starts(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args([*BASE, "--max-task-bytes", text])
    assert "not a byte count" in capsys.readouterr().err
