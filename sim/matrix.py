"""Many runs: the scenario matrix and seed soaks, optionally on several processes, as a table.

Runs are independent and each is deterministic, so running them in worker processes changes
nothing but the wall time; results are always shown in (scenario, seed) order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from .canaries import CANARIES, node_class
from .run import RunResult, run
from .scenarios import Shape, draw_config


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    seed: int
    scenario: str
    shape: Shape
    canary: str | None = None

    @property
    def variant(self) -> str:
        """The scenario, and "+disks" when its nodes have disks (a row of the table)."""
        return f"{self.scenario}+disks" if self.shape.disks else self.scenario

    def command(self) -> str:
        """The command that replays this run."""
        parts = ["python -m sim", f"--seed {self.seed}", f"--scenario {self.scenario}"]
        if flags := self.shape.flags():
            parts.append(flags)
        if self.canary is not None:
            parts.append(f"--canary {self.canary}")
        return " ".join(parts)


def run_job(job: Job) -> RunResult:
    config = draw_config(job.seed, job.scenario, job.shape)
    return run(config, node_class=node_class(job.canary))


def run_jobs(
    jobs: Sequence[Job],
    processes: int = 1,
    on_result: Callable[[Job, RunResult], None] | None = None,
) -> list[RunResult]:
    """Every job's result, in the order of `jobs`."""
    if processes <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            result = run_job(job)
            if on_result is not None:
                on_result(job, result)
            results.append(result)
        return results
    with ProcessPoolExecutor(max_workers=min(processes, os.cpu_count() or 1)) as pool:
        results = []
        for job, result in zip(jobs, pool.map(run_job, jobs, chunksize=4), strict=True):
            if on_result is not None:
                on_result(job, result)
            results.append(result)
        return results


@dataclass(slots=True, kw_only=True)
class Row:
    scenario: str
    seeds: int = 0
    tasks: int = 0
    delivered: int = 0
    lost: int = 0
    lost_all_holders: int = 0
    duplicated_explained: int = 0
    duplicated_unexplained: int = 0
    under_replicated: int = 0
    dead_letters: int = 0
    early: int = 0
    late: int = 0
    elections: int = 0
    sim_ms: int = 0
    wall_s: float = 0.0
    failures: int = 0

    def add(self, result: RunResult) -> None:
        report = result.report
        self.seeds += 1
        self.tasks += report.tasks
        self.delivered += report.delivered
        self.lost += report.lost
        self.lost_all_holders += report.lost_all_holders
        self.duplicated_explained += report.duplicated_explained
        self.duplicated_unexplained += report.duplicated_unexplained
        self.under_replicated += report.under_replicated
        self.dead_letters += report.dead_letters
        self.early += report.early
        self.late += report.late
        self.elections += report.elections
        self.sim_ms += result.sim_ms
        self.wall_s += result.wall_s
        self.failures += report.failure is not None


COLUMNS = (
    ("scenario", 17),
    ("seeds", 5),
    ("tasks", 6),
    ("delivered", 9),
    ("lost", 9),
    ("duplicated (e/u)", 16),
    ("dup rate", 8),
    ("short", 5),
    ("dead", 5),
    ("early", 5),
    ("late", 5),
    ("elections", 9),
    ("sim-s/wall-s", 12),
    ("failed", 6),
)


def table(rows: Iterable[Row]) -> str:
    """The matrix as a text table. `lost` shows "n+m": lost by the cluster + lost with all their
    holders (only the first is a failure); `dup rate` the explained duplicates per delivered
    task; `short` the pending tasks short of copies a repair period after the heal; `dead` the
    tasks given up on as their retry policy said."""
    lines = ["  ".join(name.ljust(width) for name, width in COLUMNS)]
    for row in rows:
        speed = row.sim_ms / 1000 / max(row.wall_s, 1e-9)
        cells = (
            row.scenario,
            row.seeds,
            row.tasks,
            row.delivered,
            f"{row.lost}+{row.lost_all_holders}",
            f"{row.duplicated_explained}/{row.duplicated_unexplained}",
            f"{row.duplicated_explained / max(row.delivered, 1):.2%}",
            row.under_replicated,
            row.dead_letters,
            row.early,
            row.late,
            row.elections,
            f"{speed:,.0f}",
            row.failures,
        )
        lines.append("  ".join(str(c).ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
    return "\n".join(lines)


def rows_of(jobs: Sequence[Job], results: Sequence[RunResult]) -> list[Row]:
    rows: dict[str, Row] = {}
    total = Row(scenario="all")
    for job, result in zip(jobs, results, strict=True):
        name = job.variant
        rows.setdefault(name, Row(scenario=name)).add(result)
        total.add(result)
    return [*rows.values(), total]


__all__ = ["CANARIES", "Job", "Row", "rows_of", "run_job", "run_jobs", "table"]
