"""Starting, watching and always stopping the processes a benchmark measures.

Every process runs as `sys.executable -m MODULE` (or a program such as wrk) from the repository
root, in its own session so that a Ctrl-C in the terminal reaches only the harness, which then
stops them itself. `Launcher` is a context manager: leaving it, by any path, stops everything it
started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_STOP_GRACE_S = 3.0


class BenchError(Exception):
    """A benchmark could not run (a process died, a port never opened); the message says why."""


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pin_prefix(cpu: int | None) -> list[str]:
    """`taskset -c CPU` when pinning is asked for and possible, else nothing."""
    if cpu is None or shutil.which("taskset") is None or cpu >= (os.cpu_count() or 1):
        return []
    return ["taskset", "-c", str(cpu)]


def python_module_command(module: str, args: Sequence[str], python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", module, *args]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(REPO_ROOT)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by a live process (from /proc/PID/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing paren are fixed.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS_PER_S


def cpu_delta(before: list[float | None], after: list[float | None]) -> float | None:
    """CPU seconds several processes used between two readings (None if one was unreadable)."""
    total = 0.0
    for start, end in zip(before, after, strict=True):
        if start is None or end is None:
            return None
        total += end - start
    return total


def proc_rss_bytes(pid: int) -> int | None:
    """Resident set size of a live process (VmRSS in /proc/PID/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """A process that ran to its end: exit code, what it printed, and the CPU it used."""

    returncode: int
    stdout: str
    stderr: str
    cpu_s: float
    """User + system CPU of the process and every child it waited for (from wait4)."""
    wall_s: float


class Service:
    """A long-running process (a server) the harness started and will stop."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_s(self) -> float | None:
        return proc_cpu_s(self.pid)

    def rss_bytes(self) -> int | None:
        return proc_rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_port(self, port: int, timeout_s: float = 15.0) -> None:
        """Return once 127.0.0.1:port accepts; raise if the process dies or the wait runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                raise BenchError(
                    f"{self.name} exited with code {self.popen.returncode} before listening on "
                    f"port {port}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not listen on port {port} within {timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, a grace period, then SIGKILL; never leaves the process behind."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=_STOP_GRACE_S)


class Launcher:
    """Starts processes and stops every one of them when the `with` block ends, however it ends."""

    def __init__(self) -> None:
        self._services: list[Service] = []
        self._running: list[subprocess.Popen[bytes]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="miyamoto-bench-")
        self.tmp_dir = Path(self._tmp.name)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for popen in self._running:
            _kill_group(popen)
        self._running.clear()
        for service in reversed(self._services):
            service.stop()
        self._services.clear()
        self._tmp.cleanup()

    def start(self, name: str, command: Sequence[str], *, cpu: int | None = None) -> Service:
        """Start a server process (optionally pinned to one CPU); its output goes to a log file."""
        log_path = self.tmp_dir / f"{name}-{len(self._services)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [*pin_prefix(cpu), *command],
                cwd=REPO_ROOT,
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = Service(name, popen, log_path)
        self._services.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        if service in self._services:
            self._services.remove(service)

    def run(
        self, name: str, command: Sequence[str], *, timeout_s: float, cpu: int | None = None
    ) -> Finished:
        """Run a process to its end (a load generator, a client), bounded by `timeout_s`.

        The CPU it used comes from wait4, so it counts the child processes it waited for too.
        """
        out_path = self.tmp_dir / f"{name}.out"
        err_path = self.tmp_dir / f"{name}.err"
        started = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            popen = subprocess.Popen(
                [*pin_prefix(cpu), *command],
                cwd=REPO_ROOT,
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self._running.append(popen)
        try:
            status, cpu_s = _wait_with_cpu(popen, timeout_s)
        except BaseException:
            _kill_group(popen)
            raise
        finally:
            if popen in self._running:
                self._running.remove(popen)
        wall_s = time.monotonic() - started
        returncode = os.waitstatus_to_exitcode(status)
        popen.returncode = returncode
        return Finished(
            returncode=returncode,
            stdout=out_path.read_text(errors="replace"),
            stderr=err_path.read_text(errors="replace"),
            cpu_s=cpu_s,
            wall_s=wall_s,
        )


def _wait_with_cpu(popen: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, float]:
    deadline = time.monotonic() + timeout_s
    delay_s = 0.005
    while True:
        pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
        if pid == popen.pid:
            return status, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            raise BenchError(f"{popen.args!r} did not finish within {timeout_s:.0f} s")
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.05)


def _kill_group(popen: subprocess.Popen[bytes]) -> None:
    if popen.returncode is not None:
        return
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(popen.pid, 0)
    popen.returncode = -signal.SIGKILL
