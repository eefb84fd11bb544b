"""The node's SQLite file: opened and checked at start, then written one transaction at a time.

One file, `miyamoto.sqlite3` in the data directory, in WAL mode: a commit appends to the log
and (with `--fsync always`) fsyncs it, the cheapest durable write SQLite has. `--fsync off`
leaves the writing to the OS: it survives a crash of the process, not a power cut.

Opening refuses, with a message naming the file, anything it cannot trust: a file that is not
a database or is damaged, a file of a newer format, a file of another node. It never starts
empty in place of data it could not read. Writing errors (disk full, I/O error) surface as
`StoreUnavailable`, which a caller answers with 507.

Not thread-safe: one writer at a time (`commit_gate.CommitGate` runs commits in a worker thread,
one after another).
"""

from __future__ import annotations

import enum
import errno
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ...logic.persistence import (
    FORMAT_VERSION,
    MEMBERSHIP_COLUMNS,
    TASK_COLUMNS,
    MembershipHardState,
    RecordError,
    TaskRow,
    decode_hard_state,
    decode_task,
    encode_hard_state,
)
from ...logic.task import Task

STORE_FILE_NAME: Final = "miyamoto.sqlite3"
COMMITS_IN_STATS: Final = 100
"""How many recent commits `GET /_cluster`'s fsync latency is taken over."""
BUSY_TIMEOUT_S: Final = 5.0
"""Only this process opens the file (the directory lock), so waiting means something is wrong."""

SCHEMA: Final = (
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT""",
    """CREATE TABLE membership (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cluster_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        incarnation TEXT NOT NULL,
        term INTEGER NOT NULL,
        voted_for TEXT,
        latest TEXT NOT NULL,
        committed TEXT NOT NULL
    ) STRICT""",
)
"""Format 1's tables. `meta` holds format_version, node_id, cluster_id and created_ms;
`membership` one row, the hard state."""

TASK_SCHEMA: Final = (
    """CREATE TABLE tasks (
        queue TEXT NOT NULL,
        id TEXT NOT NULL,
        state TEXT NOT NULL,
        copy_index INTEGER NOT NULL,
        holders TEXT NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        eta_ms INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        retry TEXT,
        attempts INTEGER NOT NULL,
        executions INTEGER NOT NULL,
        first_attempt_ms INTEGER,
        last_attempt_ms INTEGER,
        last_status INTEGER,
        last_error TEXT,
        response_excerpt BLOB,
        finished_ms INTEGER,
        PRIMARY KEY (queue, id)
    ) STRICT, WITHOUT ROWID""",
    """CREATE TABLE queues (
        name TEXT PRIMARY KEY NOT NULL,
        paused INTEGER NOT NULL
    ) STRICT""",
)
"""Format 2 adds these: every copy this node holds (pending, finished or failed: one row each,
updated in place as it moves between states) and the queues' pause state."""

_UPSERT_TASK: Final = (
    f"INSERT OR REPLACE INTO tasks ({', '.join(TASK_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TASK_COLUMNS)})"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """One transaction: everything that changed in the turns it covers."""

    hard_state: MembershipHardState | None = None
    """The membership state, if it changed."""
    tasks: list[TaskRow]
    """Copies to store (replacing the row of the same queue and id)."""
    deleted: list[tuple[str, str]]
    """(queue, id) of copies no longer held."""
    paused: list[tuple[str, bool]]


class FsyncMode(enum.Enum):
    ALWAYS = "always"
    """Every commit is fsynced before it counts (survives a power cut)."""
    OFF = "off"
    """Commits are handed to the OS only (survive a process crash, not a power cut)."""


class DataFileError(Exception):
    """The file cannot be used at start; `str()` names it and says what is wrong."""


class StoreUnavailable(Exception):
    """A commit failed: nothing of it is on disk. `str()` says why, for a 507 answer."""

    http_status: Final = 507


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitStats:
    commits: int = 0
    last_commit_ms: int | None = None
    """Wall-clock time the last commit finished."""
    last_commit_latency_us: int | None = None
    """How long it took, fsync included."""
    recent_latencies_us: tuple[int, ...] = ()
    """The last `COMMITS_IN_STATS` commits' latencies, oldest first: a new tuple per commit, so
    the trio thread reads a whole one while a worker thread commits."""


class Store:
    """An open, checked store file. Use `open_store`."""

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        *,
        node_id: str,
        fsync: FsyncMode = FsyncMode.ALWAYS,
    ) -> None:
        self.path = path
        self.node_id = node_id
        self.fsync = fsync
        self._db = connection
        self.stats = CommitStats()

    def load_hard_state(self) -> MembershipHardState | None:
        """The membership state last committed, or None if none was (a new file)."""
        columns = ", ".join(MEMBERSHIP_COLUMNS)
        try:
            row = self._db.execute(f"SELECT {columns} FROM membership WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as error:
            raise DataFileError(f"{self.path}: cannot read the membership: {error}") from None
        if row is None:
            return None
        try:
            state = decode_hard_state(dict(zip(MEMBERSHIP_COLUMNS, row, strict=True)))
        except RecordError as error:
            raise DataFileError(f"{self.path}: damaged membership record: {error}") from None
        if state.self_id != self.node_id:
            raise DataFileError(
                f"{self.path}: damaged: the membership is node {state.self_id}'s, the file "
                f"node {self.node_id}'s"
            )
        return state

    def load_tasks(self) -> list[Task]:
        """Every copy stored, as the last commit left it."""
        columns = ", ".join(TASK_COLUMNS)
        tasks = []
        # Row by row, not fetchall: a million rows held at once as tuples cost about 500 MB
        # more at the peak, and the memory freed after was not all given back to the OS.
        try:
            for row in self._db.execute(f"SELECT {columns} FROM tasks"):
                try:
                    tasks.append(decode_task(row))
                except RecordError as error:
                    raise DataFileError(
                        f"{self.path}: damaged task record {row[0]!r}/{row[1]!r}: {error}"
                    ) from None
        except sqlite3.DatabaseError as error:
            raise DataFileError(f"{self.path}: cannot read the tasks: {error}") from None
        return tasks

    def load_paused_queues(self) -> list[str]:
        try:
            rows = self._db.execute("SELECT name FROM queues WHERE paused = 1").fetchall()
        except sqlite3.DatabaseError as error:
            raise DataFileError(f"{self.path}: cannot read the queues: {error}") from None
        return [str(row[0]) for row in rows]

    def commit_hard_state(self, state: MembershipHardState) -> None:
        """Write `state` durably (as `--fsync` says) or raise StoreUnavailable, writing nothing."""
        self.commit(Commit(hard_state=state, tasks=[], deleted=[], paused=[]))

    def commit(self, commit: Commit) -> None:
        """Write `commit` in one transaction, durably (as `--fsync` says), or raise
        StoreUnavailable, writing nothing."""
        state = commit.hard_state
        assert state is None or state.self_id == self.node_id, (state, self.node_id)
        started_ns = time.perf_counter_ns()
        try:
            with self._transaction():
                if state is not None:
                    self._write_hard_state(state)
                if commit.tasks:
                    self._db.executemany(_UPSERT_TASK, commit.tasks)
                if commit.deleted:
                    self._db.executemany(
                        "DELETE FROM tasks WHERE queue = ? AND id = ?", commit.deleted
                    )
                if commit.paused:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO queues (name, paused) VALUES (?, ?)",
                        [(name, int(paused)) for name, paused in commit.paused],
                    )
        except (sqlite3.Error, OSError) as error:
            raise StoreUnavailable(describe_write_error(self.path, error)) from error
        latency_us = (time.perf_counter_ns() - started_ns) // 1000
        recent = (*self.stats.recent_latencies_us[1 - COMMITS_IN_STATS :], latency_us)
        self.stats = CommitStats(
            commits=self.stats.commits + 1,
            last_commit_ms=time.time_ns() // 1_000_000,
            last_commit_latency_us=latency_us,
            recent_latencies_us=recent,
        )

    def _write_hard_state(self, state: MembershipHardState) -> None:
        placeholders = ", ".join(f":{c}" for c in MEMBERSHIP_COLUMNS)
        self._db.execute(
            f"INSERT OR REPLACE INTO membership (id, {', '.join(MEMBERSHIP_COLUMNS)}) "
            f"VALUES (1, {placeholders})",
            encode_hard_state(state),
        )
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('cluster_id', ?)",
            (str(state.cluster_id),),
        )

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error (then the error goes on)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is None:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:
            self._db.execute("ROLLBACK")


def describe_write_error(path: Path, error: sqlite3.Error | OSError) -> str:
    """Why a write to `path` failed, in words a user can act on."""
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    full = primary == sqlite3.SQLITE_FULL or (
        isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    )
    if full:
        return f"the disk holding {path} is full: the task store cannot take more"
    if primary == sqlite3.SQLITE_IOERR or isinstance(error, OSError):
        return f"I/O error writing {path}: {error}"
    return f"cannot write {path}: {error}"


def open_store(directory: Path, *, node_id: str, fsync: FsyncMode) -> Store:
    """Open (or create) the store in `directory`, for node `node_id`; DataFileError if the file
    cannot be trusted. The directory must be locked by this process (`data_dir.lock_data_dir`)."""
    path = directory / STORE_FILE_NAME
    try:
        db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as error:
        raise DataFileError(f"{path}: cannot open: {error}") from None
    try:
        _configure(db, path, fsync)
        _check_or_create(db, path, node_id)
    except BaseException:
        db.close()
        raise
    return Store(path, db, node_id=node_id, fsync=fsync)


def _configure(db: sqlite3.Connection, path: Path, fsync: FsyncMode) -> None:
    try:
        # The first read of the file: garbage fails here ("file is not a database").
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        synchronous = "FULL" if fsync is FsyncMode.ALWAYS else "OFF"
        db.execute(f"PRAGMA synchronous = {synchronous}")
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as error:
        raise DataFileError(f"{path}: not a readable SQLite database: {error}") from None
    if mode != "wal":
        raise DataFileError(f"{path}: cannot use a write-ahead log (journal mode is {mode})")
    if problems != ["ok"]:
        raise DataFileError(f"{path}: the database is damaged: {'; '.join(problems[:3])}")


def _check_or_create(db: sqlite3.Connection, path: Path, node_id: str) -> None:
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            with _Transaction(db):
                for statement in (*SCHEMA, *TASK_SCHEMA):
                    db.execute(statement)
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("format_version", str(FORMAT_VERSION)),
                        ("node_id", node_id),
                        ("cluster_id", "0"),
                        ("created_ms", str(time.time_ns() // 1_000_000)),
                    ],
                )
            return
        if "meta" not in tables:
            raise DataFileError(f"{path}: not a Miyamoto data file (it has no meta table)")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as error:
        raise DataFileError(f"{path}: cannot read: {error}") from None
    version_text = str(meta.get("format_version", ""))
    if not version_text.isdigit():
        raise DataFileError(f"{path}: not a Miyamoto data file (no format version)")
    version = int(version_text)
    if version > FORMAT_VERSION:
        raise DataFileError(
            f"{path}: written by a newer Miyamoto (data format {version}; this version reads "
            f"format {FORMAT_VERSION} and older): upgrade Miyamoto, or start with another "
            "--data-dir"
        )
    if version < 1:
        raise DataFileError(f"{path}: unknown data format {version}")
    owner = meta.get("node_id")
    if owner != node_id:
        raise DataFileError(
            f"{path}: belongs to node {owner} of cluster {meta.get('cluster_id', '?')}, not to "
            f"this node {node_id}: each node needs its own --data-dir"
        )
    if "membership" not in tables:
        raise DataFileError(f"{path}: damaged: the membership table is missing")
    if version == 1:  # format 1 kept the membership only: add the task tables
        try:
            with _Transaction(db):
                for statement in TASK_SCHEMA:
                    db.execute(statement)
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION),)
                )
        except sqlite3.DatabaseError as error:
            raise DataFileError(f"{path}: cannot upgrade to data format 2: {error}") from None
    elif "tasks" not in tables or "queues" not in tables:
        raise DataFileError(f"{path}: damaged: the tasks or queues table is missing")
