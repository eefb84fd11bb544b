"""A node's data directory, created if missing and locked for as long as the process lives.

Two processes on one directory would each believe they are the member it describes (two votes
in one term, two writers of one file). `flock` on a lock file keeps out the second: it exits at
once, naming the directory and the holder's pid. The kernel drops the lock when the holder dies,
even by `kill -9`, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE_NAME = "lock"
PID_CHARS_MAX = 32


class DataDirError(Exception):
    """The directory cannot be used; `str()` names it and says why."""


@dataclass(slots=True, kw_only=True)
class LockedDataDir:
    path: Path
    lock_fd: int
    """Open (and holding the lock) until `release`, or until the process exits."""

    def release(self) -> None:
        if self.lock_fd >= 0:
            os.close(self.lock_fd)  # closing the last descriptor drops the flock
            self.lock_fd = -1


def lock_data_dir(path: Path) -> LockedDataDir:
    """Create `path` (and its parents) if needed and lock it for this process."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataDirError(f"cannot create the data directory {path}: {error.strerror}") from None
    lock_path = path / LOCK_FILE_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise DataDirError(f"cannot open {lock_path}: {error.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _read_pid(fd)
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise DataDirError(
                f"the data directory {path} is in use by another Miyamoto process "
                f"(pid {holder}); stop it or give this node another --data-dir"
            ) from None
        raise DataDirError(f"cannot lock {lock_path}: {error.strerror}") from None
    # Ours now: say who holds it, for the message a second process prints.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return LockedDataDir(path=path, lock_fd=fd)


def _read_pid(fd: int) -> str:
    text = os.pread(fd, PID_CHARS_MAX, 0).decode("ascii", "replace").strip()
    # The holder may be between truncating and writing its pid.
    return text if text.isdigit() else "unknown"
