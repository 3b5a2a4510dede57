"""The intent journal: a change that touches many files says what it will do before it does it.

A bulk caption edit (and its undo or redo), a triage move and a matrix promotion each
record their *intent* in the state database (one ``journal`` row, committed with
``synchronous=FULL``) before the first file changes, and remove it in the same transaction
that records the change as done. A process killed in between (kill -9, a crash, the power)
leaves the row behind; the next lorawb command, and the app when it starts, call
``recover``, which hands each such row to the module that made it (``module.recover_entry``):

- if the change had already changed a file, it is **finished** (the rest of its files
  written, its history recorded, so it can be undone like any other);
- if it had changed nothing yet, it is **dropped** (a full disk that stopped it early
  said "nothing was written", and that stays true);
- either way its leftovers (temp files and kept old versions, all named with the
  change's ``token``: ``lorawb.core.fsutil.remove_leftovers``) are removed.

A change still running in another process (the app, a second shell) is not touched:
its writer holds ``.lorawb/journal/<token>.lock`` (flock) until the row is gone, and
``recover`` only takes rows whose lock it can take. The lock goes with the process, so
a killed writer's row is free at once.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.core import fsutil, state

if TYPE_CHECKING:
    from lorawb.core.project import Project

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,          -- 'captions' | 'triage' | 'promote': what kind of change
    module TEXT NOT NULL,        -- the module whose recover_entry() finishes or drops it
    token TEXT NOT NULL UNIQUE,  -- the change's mark: its temp files' names, its lock
    created REAL NOT NULL,
    payload TEXT NOT NULL        -- JSON: enough to finish the change without the process that began it
);
"""
LOCKS = "journal"  # .lorawb/journal/<token>.lock


@dataclass(frozen=True)
class Entry:
    id: int
    kind: str
    token: str
    created: float
    payload: dict[str, Any]


def connect(project: Project) -> sqlite3.Connection:
    """A connection to the state DB with the journal table (record an intent in
    ``state.transaction(conn, durable=True)``)."""
    conn = state.connect(project.state_dir)
    state.ensure_schema(conn, "journal", SCHEMA)
    return conn


def record(conn: sqlite3.Connection, kind: str, module: str, token: str, payload: dict[str, Any]) -> int:
    """Add the intent row (inside the caller's transaction, with the caller's own rows: a
    ``state.transaction(conn, durable=True)``, so it is on disk before the first file changes)."""
    cur = conn.execute(
        "INSERT INTO journal (kind, module, token, created, payload) VALUES (?, ?, ?, ?, ?)",
        (kind, module, token, time.time(), json.dumps(payload, ensure_ascii=False)),
    )
    return int(cur.lastrowid or 0)


def update(conn: sqlite3.Connection, token: str, payload: dict[str, Any]) -> None:
    conn.execute("UPDATE journal SET payload = ? WHERE token = ?", (json.dumps(payload, ensure_ascii=False), token))


def finish(conn: sqlite3.Connection, token: str) -> None:
    """Remove the intent row (inside the transaction that records the change as done)."""
    conn.execute("DELETE FROM journal WHERE token = ?", (token,))


@contextmanager
def holding(project: Project, token: str) -> Iterator[None]:
    """Hold the change's lock while it runs: ``recover`` in another process leaves it alone."""
    fd = _lock(project, token, wait=True)
    try:
        yield
    finally:
        _unlock(project, token, fd)


def _lock_path(project: Project, token: str) -> Path:
    return project.state_dir / LOCKS / f"{token}.lock"


def _lock(project: Project, token: str, *, wait: bool) -> int | None:
    """Open and flock the change's lock file; None when another process holds it (``wait`` False)."""
    path = _lock_path(project, token)
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS: no liveness check
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(project: Project, token: str, fd: int | None) -> None:
    with suppress(OSError):
        os.unlink(_lock_path(project, token))
    if fd is not None:
        os.close(fd)


def pending(project: Project, kind: str | None = None) -> list[Entry]:
    """The intent rows present now (of one kind, or all): changes running or interrupted."""
    conn = connect(project)
    try:
        rows = conn.execute(
            "SELECT id, kind, token, created, payload FROM journal"
            + (" WHERE kind = ?" if kind else "")
            + " ORDER BY kind != 'captions', id",  # captions first: a promotion's recovery reads them
            (kind,) if kind else (),
        ).fetchall()
    finally:
        conn.close()
    return [Entry(r["id"], r["kind"], r["token"], r["created"], json.loads(r["payload"])) for r in rows]


def recover(project: Project) -> list[str]:
    """Finish or drop every change a killed process left half done; returns what was done, in words.

    Cheap when there is nothing to do (one query). Changes still running elsewhere are left alone.
    """
    messages: list[str] = []
    if not (project.root / ".lorawb" / "state.sqlite").exists():
        return messages
    for entry in pending(project):
        fd = _lock(project, entry.token, wait=False)
        if fd is None:
            continue  # its writer is alive
        try:
            conn = connect(project)
            try:
                row = conn.execute("SELECT module FROM journal WHERE token = ?", (entry.token,)).fetchone()
            finally:
                conn.close()
            if row is None:
                continue  # finished between the listing and the lock
            module = row["module"]
            if not module.startswith("lorawb."):
                continue  # not ours: never import what a state file names
            message = importlib.import_module(module).recover_entry(project, entry)
            if message:
                messages.append(message)
        finally:
            _unlock(project, entry.token, fd)
    return messages


def drop(project: Project, entry: Entry, folders: list[Path | str]) -> None:
    """Forget an entry that changed nothing (its leftovers removed)."""
    fsutil.remove_leftovers(folders, entry.token)
    conn = connect(project)
    try:
        with state.transaction(conn):
            finish(conn, entry.token)
    finally:
        conn.close()
