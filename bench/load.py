"""Driving a load: wrk when it is installed and the load is bounded by time, else our own loadgen.

Both report the same `LoadResult`, including the CPU the generator itself used, so a table can
show whether the generator, rather than the server, was the bottleneck.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from .procs import BenchError, Launcher, python_module_command

GENERATORS = ("auto", "wrk", "own")

_WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
{close_header}
{extra_headers}
local file = assert(io.open("{body_path}", "rb"))
wrk.body = file:read("*a")
file:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    generator: str
    ok: int
    """2xx responses."""
    responses: int
    errors: str
    """Socket errors and non-2xx statuses, summarised; empty when there were none."""
    window_s: float
    gen_cpu_s: float
    """CPU the generator used on the load (user + system; for ours, its worker processes)."""

    @property
    def rate_per_s(self) -> float:
        return self.ok / self.window_s if self.window_s > 0 else 0.0

    @property
    def gen_cpu_share(self) -> float:
        """The generator's CPU as a fraction of one core over the window."""
        return self.gen_cpu_s / self.window_s if self.window_s > 0 else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    """What to send: one request, repeated."""

    path: str
    body: bytes
    content_type: str
    connections: int
    new_connection: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    """More request headers (an Authorization header, say)."""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def pick_generator(choice: str, *, bounded_by_count: bool, new_connection: bool = False) -> str:
    """'wrk' or 'own'. wrk cannot stop after a count, so counted loads always use our own.

    For a new connection per request, "auto" picks our own too: it closes each connection after
    the answer, as curl does, where wrk can only ask the server to close (`Connection: close`).
    """
    if choice not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, not {choice!r}")
    if bounded_by_count or choice == "own" or (new_connection and choice == "auto"):
        return "own"
    if choice == "wrk" and not wrk_available():
        raise BenchError(
            "--loadgen wrk was asked for, but wrk is not installed (apt-get install wrk)"
        )
    return "wrk" if wrk_available() else "own"


def drive(
    launcher: Launcher,
    load: Load,
    ports: list[int],
    *,
    generator: str,
    duration_s: float,
    requests_max: int | None = None,
    cpu: int | None = None,
    workers: int | None = None,
    name: str = "load",
) -> LoadResult:
    """Send `load` to 127.0.0.1:ports for `duration_s` (or `requests_max` requests) and count."""
    chosen = pick_generator(
        generator, bounded_by_count=requests_max is not None, new_connection=load.new_connection
    )
    if chosen == "wrk":
        if len(ports) != 1:
            raise BenchError("wrk drives one port; use --loadgen own for several")
        return _drive_wrk(launcher, load, ports[0], duration_s=duration_s, cpu=cpu, name=name)
    return _drive_own(
        launcher,
        load,
        ports,
        duration_s=duration_s,
        requests_max=requests_max,
        cpu=cpu,
        workers=workers,
        name=name,
    )


def _write_body(launcher: Launcher, name: str, body: bytes) -> Path:
    path = launcher.tmp_dir / f"{name}.body"
    path.write_bytes(body)
    return path


def _drive_own(
    launcher: Launcher,
    load: Load,
    ports: list[int],
    *,
    duration_s: float,
    requests_max: int | None,
    cpu: int | None,
    workers: int | None,
    name: str,
) -> LoadResult:
    body_path = _write_body(launcher, name, load.body)
    args = [
        "--port",
        ",".join(str(port) for port in ports),
        "--path",
        load.path,
        "--body-file",
        str(body_path),
        "--content-type",
        load.content_type,
        "--connections",
        str(load.connections),
        "--duration-s",
        str(duration_s),
    ]
    if requests_max is not None:
        args += ["--requests", str(requests_max)]
    if workers is not None:
        args += ["--workers", str(workers)]
    if load.new_connection:
        args.append("--new-connection")
    for name_, value in load.headers:
        args += ["--header", f"{name_}: {value}"]
    finished = launcher.run(
        name, python_module_command("bench.loadgen", args), timeout_s=duration_s + 60, cpu=cpu
    )
    if finished.returncode != 0:
        raise BenchError(f"loadgen failed ({finished.returncode}):\n{finished.stderr[-2000:]}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    problems = [f"{count}x {what}" for what, count in result["errors"].items()]
    problems += [
        f"{count}x HTTP {status}"
        for status, count in result["statuses"].items()
        if not 200 <= int(status) < 300
    ]
    return LoadResult(
        generator=f"own ({result['workers']} proc)",
        ok=int(result["ok"]),
        responses=int(result["responses"]),
        errors=", ".join(problems),
        window_s=float(result["window_s"]),
        gen_cpu_s=float(result["worker_cpu_s"]),  # the workers alone: not the imports
    )


def _drive_wrk(
    launcher: Launcher, load: Load, port: int, *, duration_s: float, cpu: int | None, name: str
) -> LoadResult:
    body_path = _write_body(launcher, name, load.body)
    script_path = launcher.tmp_dir / f"{name}.lua"
    script_path.write_text(
        _WRK_SCRIPT.format(
            content_type=load.content_type,
            body_path=str(body_path),
            close_header='wrk.headers["Connection"] = "close"' if load.new_connection else "",
            extra_headers="\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in load.headers),
        )
    )
    # wrk takes whole seconds only.
    seconds = max(1, math.ceil(duration_s))
    command = [
        "wrk",
        "-t1",
        f"-c{load.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script_path),
        f"http://127.0.0.1:{port}{load.path}",
    ]
    finished = launcher.run(name, command, timeout_s=seconds + 30, cpu=cpu)
    line = next(
        (line for line in finished.stdout.splitlines() if line.startswith("WRKJSON ")), None
    )
    if finished.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed ({finished.returncode}):\n"
            f"{finished.stdout[-1000:]}{finished.stderr[-1000:]}"
        )
    result = json.loads(line.removeprefix("WRKJSON "))
    problems = [
        f"{result[kind]}x {kind}"
        for kind in ("connect", "read", "write", "timeout")
        if result[kind]
    ]
    if result["status"]:
        problems.append(f"{result['status']}x non-2xx")
    return LoadResult(
        generator="wrk",
        ok=int(result["requests"]) - int(result["status"]),
        responses=int(result["requests"]),
        errors=", ".join(problems),
        window_s=int(result["duration_us"]) / 1e6,
        gen_cpu_s=finished.cpu_s,
    )
