"""`python -m bench --against REV`: the pieces that need no benchmark run (export, options,
the side-by-side table)."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import _without_option
from bench.against import export, render


def test_a_revision_is_exported_without_touching_the_repository(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    export("HEAD", tree)
    assert (tree / "bench" / "__main__.py").is_file()
    assert (tree / "miyamoto" / "logic" / "node.py").is_file()


def test_the_options_passed_on_leave_out_against_only_and_json() -> None:
    argv = ["--against", "abc", "--quick", "--only=batch", "--json", "x.json", "--no-pin"]
    for name in ("--against", "--only", "--json"):
        argv = _without_option(argv, name)
    assert argv == ["--quick", "--no-pin"]


def test_the_table_puts_each_row_beside_the_revisions_with_the_cpu_ratio() -> None:
    ours = [
        {"scenario": "batch", "system": "node", "result": "60,000 tasks/s", "per_cpu": 66_000.0},
        {"scenario": "dispatch", "system": "node", "result": "max 1 ms", "per_cpu": None},
    ]
    theirs = [
        {"scenario": "batch", "system": "node", "result": "55,000 tasks/s", "per_cpu": 60_000.0}
    ]
    text = render(ours, theirs, "17f9ede")
    batch = next(line for line in text.splitlines() if line.startswith("batch"))
    assert "60,000 tasks/s" in batch and "55,000 tasks/s" in batch and batch.endswith("1.10")
    assert "(not run)" in next(line for line in text.splitlines() if line.startswith("dispatch"))
