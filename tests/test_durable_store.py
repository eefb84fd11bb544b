"""The data directory and its store: what a node finds at start, what it refuses, and how a
failed write is reported (docs/durability.md)."""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import re
import sqlite3
from pathlib import Path

import pytest

from miyamoto.io.durable.data_dir import DataDirError, lock_data_dir
from miyamoto.io.durable.startup import open_data_dir
from miyamoto.io.durable.store import (
    STORE_FILE_NAME,
    DataFileError,
    FsyncMode,
    StoreUnavailable,
    describe_write_error,
    open_store,
)
from miyamoto.logic.membership import ClusterTiming, Membership
from miyamoto.logic.messages import MEMBERS_MAX, Member, MemberList
from miyamoto.logic.persistence import (
    FORMAT_VERSION,
    MembershipHardState,
    RecordError,
    decode_hard_state,
    encode_hard_state,
)

NODE = "127.0.0.1:8088"


def founder_state(node_id: str = NODE) -> MembershipHardState:
    return Membership(
        self_id=node_id, seed_id=node_id, config=ClusterTiming(), rng=random.Random(1), now_ms=0
    ).hard_state()


def test_a_new_directory_is_created_and_a_committed_state_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    opened = open_data_dir(path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    assert opened.saved is None
    state = founder_state()
    opened.store.commit_hard_state(state)
    assert opened.store.stats.commits == 1
    assert opened.store.stats.last_commit_latency_us is not None
    opened.close()
    again = open_data_dir(path, node_id=NODE, fsync=FsyncMode.OFF)
    assert again.saved == state
    again.close()


def test_the_file_is_in_wal_mode_and_readable_with_plain_sqlite(tmp_path: Path) -> None:
    store = open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    store.commit_hard_state(founder_state())
    with sqlite3.connect(tmp_path / STORE_FILE_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        node_id, term = db.execute("SELECT node_id, term FROM membership").fetchone()
    assert meta["format_version"] == str(FORMAT_VERSION)
    assert meta["cluster_id"] == str(founder_state().cluster_id)
    assert (node_id, term) == (NODE, 1)
    store.close()


def test_a_second_lock_on_a_directory_is_refused_naming_it_and_the_holder(tmp_path: Path) -> None:
    held = lock_data_dir(tmp_path)
    with pytest.raises(DataDirError) as refused:
        lock_data_dir(tmp_path)
    message = str(refused.value)
    assert str(tmp_path) in message and f"pid {os.getpid()}" in message
    held.release()
    lock_data_dir(tmp_path).release()  # free again once the holder let go


def test_a_file_that_is_not_a_database_stops_the_node_naming_it(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE_NAME).write_bytes(b"this is not SQLite" * 300)
    with pytest.raises(DataFileError) as refused:
        open_data_dir(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    assert str(tmp_path / STORE_FILE_NAME) in str(refused.value)
    assert "not a readable SQLite database" in str(refused.value)
    lock_data_dir(tmp_path).release()  # the refusal let go of the lock


def test_a_damaged_page_stops_the_node(tmp_path: Path) -> None:
    store = open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    store.commit_hard_state(founder_state())
    store.close()
    path = tmp_path / STORE_FILE_NAME
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    data[page_size + 8 : 2 * page_size] = os.urandom(page_size - 8)  # page 2: a table's page
    path.write_bytes(bytes(data))
    with pytest.raises(DataFileError) as refused:
        open_data_dir(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    assert str(path) in str(refused.value)


def test_a_file_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS).close()
    with sqlite3.connect(tmp_path / STORE_FILE_NAME) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (FORMAT_VERSION + 1,))
    with pytest.raises(DataFileError, match="written by a newer Miyamoto"):
        open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)


def test_another_nodes_file_is_refused_naming_its_node_and_cluster(tmp_path: Path) -> None:
    other = "127.0.0.1:9000"
    store = open_store(tmp_path, node_id=other, fsync=FsyncMode.ALWAYS)
    store.commit_hard_state(founder_state(other))
    store.close()
    with pytest.raises(DataFileError) as refused:
        open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    message = str(refused.value)
    assert f"belongs to node {other} of cluster {founder_state(other).cluster_id}" in message


def test_a_database_that_is_not_miyamotos_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / STORE_FILE_NAME) as db:
        db.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(DataFileError, match="not a Miyamoto data file"):
        open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)


def test_a_damaged_membership_record_is_refused_not_ignored(tmp_path: Path) -> None:
    store = open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    store.commit_hard_state(founder_state())
    store.close()
    with sqlite3.connect(tmp_path / STORE_FILE_NAME) as db:
        db.execute("UPDATE membership SET latest = '{\"epoch\": 1}'")
    with pytest.raises(DataFileError, match="damaged membership record: latest"):
        open_data_dir(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)


def test_a_membership_of_another_node_in_this_nodes_file_is_damage(tmp_path: Path) -> None:
    store = open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    store.commit_hard_state(founder_state())
    store.close()
    with sqlite3.connect(tmp_path / STORE_FILE_NAME) as db:
        db.execute("UPDATE membership SET node_id = '127.0.0.1:1'")
    with pytest.raises(DataFileError, match=re.escape("the membership is node 127.0.0.1:1's")):
        open_data_dir(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)


def test_a_full_disk_is_a_507_and_the_last_commit_stays(tmp_path: Path) -> None:
    store = open_store(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS)
    first = founder_state()
    store.commit_hard_state(first)
    # SQLite's own cap on the file's size fails a write exactly as a full disk does (SQLITE_FULL).
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    many = MemberList(
        epoch=2,
        epoch_term=1,
        members=tuple(
            sorted(
                (
                    Member(id=f"10.0.0.{i + 1}:7000", incarnation=2**63 + i)
                    for i in range(MEMBERS_MAX)
                ),
                key=lambda m: m.id,
            )
        ),
    )
    bigger = dataclasses.replace(first, latest=many)  # needs pages the file may not have
    with pytest.raises(StoreUnavailable) as failed:
        store.commit_hard_state(bigger)
    assert failed.value.http_status == 507
    assert f"the disk holding {tmp_path / STORE_FILE_NAME} is full" in str(failed.value)
    assert store.stats.commits == 1
    store.close()
    assert open_data_dir(tmp_path, node_id=NODE, fsync=FsyncMode.ALWAYS).saved == first


def test_write_errors_are_described_so_a_user_can_act() -> None:
    path = Path("/data/miyamoto.sqlite3")
    assert "is full" in describe_write_error(path, OSError(errno.ENOSPC, "No space left"))
    assert "I/O error" in describe_write_error(path, OSError(errno.EIO, "Input/output error"))
    io_error = sqlite3.OperationalError("disk I/O error")
    io_error.sqlite_errorcode = sqlite3.SQLITE_IOERR | (3 << 8)  # SQLITE_IOERR_WRITE
    assert describe_write_error(path, io_error).startswith(f"I/O error writing {path}")


@pytest.mark.parametrize(
    ("column", "value", "complaint"),
    [
        ("cluster_id", "-1", "cluster_id: expected a decimal"),
        ("incarnation", str(2**64), "incarnation: expected a decimal"),
        ("term", "3", "term: expected an integer"),
        ("node_id", "nowhere", "not a node id"),
        ("voted_for", "[1, 2]", "voted_for: not a [node id, incarnation] pair"),
        ("latest", "{", "latest: not JSON"),
        ("committed", '{"epoch": 9, "epoch_term": 1, "members": []}', "committed member list is"),
    ],
)
def test_every_damaged_column_is_named(column: str, value: object, complaint: str) -> None:
    row = encode_hard_state(founder_state())
    row[column] = value  # type: ignore[assignment]
    with pytest.raises(RecordError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        decode_hard_state(row)
