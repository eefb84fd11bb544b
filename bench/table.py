"""The rows a scenario reports, and the table they are printed as (plain text or Markdown)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

COLUMNS = (
    "scenario",
    "system",
    "result",
    "ratio",
    "per CPU-s",
    "CPU ratio",
    "goal",
    "srv CPU",
    "load CPU",
    "generator",
    "note",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    scenario: str
    system: str
    result: str
    ratio: float | None = None
    """Result / the baseline measured in the same run (throughput rows only)."""
    per_cpu: float | None = None
    """Tasks (or requests) per CPU-second of the measured server: its cost, which a busy machine
    disturbs less than the wall-clock rate."""
    cpu_ratio: float | None = None
    """per_cpu / the baseline's per_cpu."""
    goal: str = ""
    server_cpu: str = ""
    load_cpu: str = ""
    generator: str = ""
    note: str = ""
    failed: bool = False
    """The scenario broke (not: missed a goal). Makes `python -m bench` exit non-zero."""

    def cells(self) -> tuple[str, ...]:
        return (
            self.scenario,
            self.system,
            self.result,
            _number(self.ratio, "{:.2f}"),
            _number(self.per_cpu, "{:,.0f}"),
            _number(self.cpu_ratio, "{:.2f}"),
            self.goal,
            self.server_cpu,
            self.load_cpu,
            self.generator,
            self.note,
        )


def _number(value: float | None, form: str) -> str:
    return "" if value is None else form.format(value)


def per_cpu(rate_per_s: float, cpu_s: float | None, window_s: float) -> float | None:
    """Work per CPU-second of the measured server(s): the rate over the share of a core used."""
    if cpu_s is None or cpu_s <= 0:
        return None
    return rate_per_s * window_s / cpu_s


def ratio_of(value: float | None, baseline: float | None) -> float | None:
    return value / baseline if value is not None and baseline else None


def rate(value: float, unit: str = "tasks/s") -> str:
    return f"{value:,.0f} {unit}"


def cpu_share(cpu_s: float | None, wall_s: float) -> str:
    """CPU seconds over a wall-clock window, as a percentage of one core."""
    if cpu_s is None or wall_s <= 0:
        return ""
    return f"{100 * cpu_s / wall_s:.0f}%"


def goal(text: str, met: bool) -> str:
    return f"{text}: {'met' if met else 'MISSED'}"


def skipped(scenario: str, system: str, why: str) -> Row:
    return Row(scenario=scenario, system=system, result=f"skipped: {why}")


def render_text(rows: Sequence[Row]) -> str:
    cells = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = []
    for index, line in enumerate(cells):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_markdown(rows: Sequence[Row]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    out = [line(COLUMNS), line(["---"] * len(COLUMNS))]
    out += [line(row.cells()) for row in rows]
    return "\n".join(out)
