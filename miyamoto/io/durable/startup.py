"""Everything a durable node does with its data directory before it serves: lock it, open and
check the store, read back the membership state, the task copies and the paused queues."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...logic.persistence import MembershipHardState
from ...logic.task import Task
from .data_dir import LockedDataDir, lock_data_dir
from .store import FsyncMode, Store, open_store


@dataclass(slots=True, kw_only=True)
class OpenedDataDir:
    data_dir: LockedDataDir
    store: Store
    saved: MembershipHardState | None
    """The membership state from the last run; None on the first start."""
    tasks: list[Task] = field(default_factory=list)
    """The copies the last run held (the node takes them at start)."""
    paused_queues: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.store.close()
        self.data_dir.release()


def open_data_dir(path: Path, *, node_id: str, fsync: FsyncMode) -> OpenedDataDir:
    """Lock `path`, open its store and read the saved state. Raises data_dir.DataDirError or
    store.DataFileError, each naming the directory or file and what is wrong."""
    locked = lock_data_dir(path)
    try:
        store = open_store(path, node_id=node_id, fsync=fsync)
    except BaseException:
        locked.release()
        raise
    try:
        saved = store.load_hard_state()
        tasks = store.load_tasks()
        paused = store.load_paused_queues()
    except BaseException:
        store.close()
        locked.release()
        raise
    return OpenedDataDir(
        data_dir=locked, store=store, saved=saved, tasks=tasks, paused_queues=paused
    )
