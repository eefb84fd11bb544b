"""`python -m bench --against REV [options]`: the same scenarios run on this tree and on git
revision REV, one after the other, and each row's numbers side by side with their ratio.

REV is exported with `git archive` into a temporary directory (no worktree or branch is made,
nothing in the repository changes) and its own `python -m bench` runs there, with this
interpreter and the same options; its node processes import REV's code (bench's children get
their tree first on PYTHONPATH). A scenario REV's bench does not know is left out of its run.

The ratio column is this tree's work per CPU-second of the measured server (`per CPU-s`)
divided by REV's: above 1, this tree does the same work with less CPU. The wall-clock results
are printed beside it (on a shared machine they move with whoever got the core).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .procs import REPO_ROOT


def export(rev: str, into: Path) -> None:
    """REV's files, as committed, under `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    tar_path = into.parent / "rev.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")


def known_scenarios(tree: Path) -> set[str]:
    listed = subprocess.run(
        [sys.executable, "-m", "bench", "--list"], cwd=tree, check=True, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def run_tree(tree: Path, args: list[str], only: list[str], json_path: Path) -> list[dict[str, Any]]:
    """Runs `python -m bench` in `tree`; its rows (empty when it could not run)."""
    wanted = sorted(set(only) & known_scenarios(tree)) if only else []
    if only and not wanted:
        return []
    command = [sys.executable, "-m", "bench", *args, "--json", str(json_path)]
    if wanted:
        command += ["--only", ",".join(wanted)]
    print(f"$ (cd {tree} && {' '.join(command)})", flush=True)
    subprocess.run(command, cwd=tree, check=False)
    if not json_path.exists():
        return []
    rows: list[dict[str, Any]] = json.loads(json_path.read_text())
    return rows


def compare(rev: str, args: list[str], only: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tmp:
        theirs_tree = Path(tmp) / "tree"
        theirs_tree.mkdir()
        export(rev, theirs_tree)
        ours = run_tree(REPO_ROOT, args, only, Path(tmp) / "ours.json")
        theirs = run_tree(theirs_tree, args, only, Path(tmp) / "theirs.json")
    print()
    print(render(ours, theirs, rev))
    return 0 if ours else 1


def render(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], rev: str) -> str:
    by_key = {(row["scenario"], row["system"]): row for row in theirs}
    lines = [f"this tree vs {rev} (ratio: per CPU-s, this tree / {rev})"]
    header = ("scenario", "system", "this tree", rev, "ratio")
    table = [header]
    for row in ours:
        other = by_key.get((row["scenario"], row["system"]))
        ratio = ""
        if other is not None and row.get("per_cpu") and other.get("per_cpu"):
            ratio = f"{row['per_cpu'] / other['per_cpu']:.2f}"
        table.append(
            (
                row["scenario"],
                row["system"],
                row["result"],
                "(not run)" if other is None else other["result"],
                ratio,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    return "\n".join(lines)
