"""python -m bench: run the benchmark scenarios and print one table.

Each scenario starts what it measures on 127.0.0.1 (the node, the bare baselines, a fast
receiver, the load generator) as separate processes, drives a bounded load, and stops all of them
before the next scenario starts, also on an error or Ctrl-C.

    python -m bench                 # every scenario, full size (several minutes)
    python -m bench --quick         # a tour of about a minute
    python -m bench --only delivery,timer --markdown
    python -m bench --against REV --quick   # this tree and git revision REV, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from types import FrameType

from .context import BenchContext, Options
from .load import GENERATORS, wrk_available
from .procs import BenchError, cpu_count
from .scenarios import SCENARIOS
from .table import Row, render_markdown, render_text


def _machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from importlib.metadata import version

    return (
        f"{model}, {cpu_count()} cores usable, Linux {platform.release()}, "
        f"Python {platform.python_version()}, trio {version('trio')}, h11 {version('h11')}"
    )


def _load_average() -> str:
    """The 1-minute load average: above ~0.5 before a run, something else is using the CPUs."""
    return f"{os.getloadavg()[0]:.2f}"


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _without_option(argv: list[str], name: str) -> list[str]:
    """`argv` without `name VALUE` or `name=VALUE`."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="every scenario small (~1 minute)")
    parser.add_argument("--only", default="", help="comma-separated scenario names (see --list)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--loadgen",
        choices=GENERATORS,
        default="auto",
        help="auto: wrk when installed, else our own (bench/loadgen.py)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin server and load to separate cores with taskset",
    )
    parser.add_argument(
        "--duration-s",
        type=float,
        default=None,
        help="measure each load for this long (overrides the scenario's own)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="run the same scenarios on this tree and on git revision REV (bench/against.py)",
    )
    args = parser.parse_args(argv)
    if args.against:
        from .against import compare

        passed = [a for a in (argv if argv is not None else sys.argv[1:])]
        rest = _without_option(_without_option(_without_option(passed, "--against"), "--only"),
                               "--json")  # fmt: skip
        only = [name.strip() for name in args.only.split(",") if name.strip()]
        return compare(args.against, rest, only)

    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:<24} {scenario.summary}")
        return 0
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    known = {scenario.name for scenario in SCENARIOS}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    chosen = [scenario for scenario in SCENARIOS if not wanted or scenario.name in wanted]

    options = Options(
        quick=args.quick, generator=args.loadgen, pin=not args.no_pin, duration_s=args.duration_s
    )
    ctx = BenchContext(options)
    # Ctrl-C and SIGTERM both unwind through every Launcher, which stops what it started (SIGINT
    # too: a shell may have started us with it ignored).
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    pinned = ctx.server_cpu is not None
    print(f"machine: {_machine()}")
    print(
        f"load generator: {args.loadgen} "
        f"(wrk {'installed' if wrk_available() else 'not installed'})"
        f"; pinning: {'server on CPU 0, load and receiver on CPU 1' if pinned else 'none'}"
        f"; {'quick' if args.quick else 'full'} run; load average {_load_average()}",
        flush=True,
    )

    rows: list[Row] = []
    interrupted = False
    started = time.monotonic()
    for scenario in chosen:
        print(f"running {scenario.name} …", file=sys.stderr, flush=True)
        try:
            rows += scenario.run(ctx)
        except BenchError as error:
            print(f"{scenario.name} failed: {error}", file=sys.stderr, flush=True)
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            rows.append(
                Row(
                    scenario=scenario.name,
                    system="",
                    result=f"error: {first_line}"[:200],
                    failed=True,
                )
            )
        except KeyboardInterrupt:
            rows.append(Row(scenario=scenario.name, system="", result="interrupted", failed=True))
            interrupted = True
            break
    elapsed_s = time.monotonic() - started

    print()
    print(render_markdown(rows) if args.markdown else render_text(rows))
    print(f"\n{len(chosen)} scenario(s) in {elapsed_s:.0f} s; load average {_load_average()}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump([asdict(row) for row in rows], file, indent=1)
    if interrupted:
        return 130
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
