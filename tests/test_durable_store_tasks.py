"""The store's task tables (format 2): a format 1 file is upgraded in place, and a damaged task
row stops the node naming the file, the task and the column (docs/durability.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from miyamoto.io.durable.startup import open_data_dir
from miyamoto.io.durable.store import Commit, DataFileError, FsyncMode, open_store
from miyamoto.logic.persistence import encode_task
from miyamoto.logic.task import Task

NODE = "127.0.0.1:8088"


def task(task_id: str) -> Task:
    return Task(id=task_id, queue="q", method="POST", url="http://h.example/w",
                headers=(("content-type", "text/plain"),), body=b"hi", eta_ms=5,
                created_ms=1)  # fmt: skip


def test_a_format_1_file_is_upgraded_in_place_and_takes_tasks(tmp_path: Path) -> None:
    open_store(tmp_path, node_id=NODE, fsync=FsyncMode.OFF).close()
    db = sqlite3.connect(tmp_path / "miyamoto.sqlite3")  # make it what phase 1 wrote
    db.executescript(
        "DROP TABLE tasks; DROP TABLE queues;"
        "UPDATE meta SET value = '1' WHERE key = 'format_version';"
    )
    db.close()
    store = open_store(tmp_path, node_id=NODE, fsync=FsyncMode.OFF)
    store.commit(Commit(tasks=[encode_task(task("a"))], deleted=[], paused=[("q", True)]))
    store.close()
    opened = open_data_dir(tmp_path, node_id=NODE, fsync=FsyncMode.OFF)
    try:
        assert [(t.id, t.body, t.headers) for t in opened.tasks] == [
            ("a", b"hi", (("content-type", "text/plain"),))
        ]
        assert opened.paused_queues == ["q"]
    finally:
        opened.close()
    db = sqlite3.connect(tmp_path / "miyamoto.sqlite3")
    assert db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("2",)
    db.close()


def test_a_damaged_task_row_stops_the_node_naming_the_task_and_column(tmp_path: Path) -> None:
    store = open_store(tmp_path, node_id=NODE, fsync=FsyncMode.OFF)
    store.commit(Commit(tasks=[encode_task(task("a"))], deleted=[], paused=[]))
    store.close()
    db = sqlite3.connect(tmp_path / "miyamoto.sqlite3")
    db.execute("UPDATE tasks SET holders = 'not json'")
    db.commit()
    db.close()
    with pytest.raises(DataFileError) as raised:
        open_data_dir(tmp_path, node_id=NODE, fsync=FsyncMode.OFF)
    assert str(raised.value).startswith(
        f"{tmp_path / 'miyamoto.sqlite3'}: damaged task record 'q'/'a': holders: not JSON"
    )
