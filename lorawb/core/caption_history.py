"""Applying caption change sets, and their undo/redo history in the project's state DB.

Applying writes every changed caption atomically (lorawb.core.fsutil), as UTF-8 in the
file's own newline style, and records old and new text per file in SQLite, so undo
works after the app (or the CLI) restarts, several steps back.

Conflicts: the file system is the source of truth. A file that changed on disk since
it was read (mtime_ns + size differ and the content differs) is never overwritten: it
is skipped and reported. Undo and redo check the same way against what lorawb itself
last wrote, file by file: a file changed since is refused and reported, the others go
ahead. A new operation after an undo drops the redo steps, as editors do.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lorawb.core import ownwrites, state
from lorawb.core.caption_ops import Change, ChangeSet
from lorawb.core.fsutil import atomic_write_many, read_text
from lorawb.core.project import Project
from lorawb.errors import LorawbError

# What undo can reach: the last HISTORY_LIMIT operations (a hand edit of one caption is one), and
# older ones only while all of them together hold at most HISTORY_ROWS file versions (~20 MB).
HISTORY_LIMIT = 500
HISTORY_ROWS = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS caption_ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    label TEXT NOT NULL,
    files INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'applied'  -- 'applied' | 'undone'
);
CREATE TABLE IF NOT EXISTS caption_op_files (
    op_id INTEGER NOT NULL REFERENCES caption_ops(id) ON DELETE CASCADE,
    path TEXT NOT NULL,          -- caption file, relative to the project root
    old TEXT,                    -- NULL: the file did not exist before the operation
    new TEXT,                    -- NULL: the operation deleted the file
    newline TEXT NOT NULL,
    applied INTEGER NOT NULL,    -- 1: `new` is what lorawb left on disk, 0: `old` is
    mtime_ns INTEGER,            -- the file as lorawb left it (NULL when it left no file)
    size INTEGER,
    PRIMARY KEY (op_id, path)
);
"""


@dataclass(frozen=True)
class Conflict:
    rel: str  # the caption file, relative to the project root
    reason: str


@dataclass
class ApplyResult:
    label: str
    op_id: int | None  # the history entry (None when nothing was written)
    written: list[str] = field(default_factory=list)  # caption files, relative to the project root
    conflicts: list[Conflict] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    created: float
    label: str
    files: int
    state: str


def connect(project: Project) -> sqlite3.Connection:
    conn = state.connect(project.state_dir)
    state.ensure_schema(conn, "caption_history", SCHEMA)
    return conn


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def _unchanged(path: Path, mtime_ns: int | None, size: int | None, expected: str | None) -> str | None:
    """None when the file is as expected (same mtime+size, or same content); else why it is not."""
    now = _stat(path)
    if expected is None:
        return None if now is None else "created on disk by another program"
    if now is None:
        return "deleted on disk by another program"
    if mtime_ns is not None and now == (mtime_ns, size):
        return None
    try:
        if read_text(path).text == expected:  # touched, or rewritten with the same text
            return None
    except LorawbError:
        pass
    return "changed on disk by another program"


def _write(
    items: list[tuple[Path, str | None, str]],
    check: Callable[[int], str | None],
) -> tuple[dict[int, tuple[int, int] | None], dict[int, str]]:
    """Write (path, text or None=delete, newline) items; ``check(i)`` vetoes item i with a reason.

    Returns ({index: (mtime_ns, size) of what is now on disk, None once deleted}, {index: why refused}).
    """
    refused: dict[int, str] = {}
    writes = [i for i, (_, text, _) in enumerate(items) if text is not None]
    deletes = [i for i, (_, text, _) in enumerate(items) if text is None]

    def before_replace(j: int) -> bool:
        i = writes[j]
        reason = check(i)
        if reason is not None:
            refused[i] = reason
        return reason is None

    payload = [(items[i][0], _encode(items[i][1] or "", items[i][2])) for i in writes]
    failed: dict[int, str] = {}
    written = atomic_write_many(payload, before_replace=before_replace, errors=failed)
    refused.update({writes[j]: why for j, why in failed.items()})
    done: dict[int, tuple[int, int] | None] = {writes[j]: (st.st_mtime_ns, st.st_size) for j, st in written.items()}
    for i in deletes:
        reason = check(i)
        if reason is not None:
            refused[i] = reason
            continue
        try:
            with ownwrites.writing([items[i][0]]):
                os.unlink(items[i][0])
        except FileNotFoundError:
            pass
        except OSError as exc:
            refused[i] = f"cannot delete: {exc.strerror or exc}"
            continue
        done[i] = None
    return dict(sorted(done.items())), refused


def _encode(text: str, newline: str) -> bytes:
    if newline != "\n":
        text = text.replace("\n", newline)
    return text.encode("utf-8")


def apply_changeset(project: Project, cs: ChangeSet) -> ApplyResult:
    """Write the change set; skip (and report) files changed on disk since they were read; record for undo."""
    changes = cs.changes
    items = [(c.path, c.new, c.newline) for c in changes]
    done, refused = _write(items, lambda i: _check_as_read(changes[i]))
    result = ApplyResult(cs.label, None, [changes[i].rel for i in done])
    result.conflicts = [Conflict(changes[i].rel, why) for i, why in sorted(refused.items())]
    if done:
        result.op_id = _record(project, cs.label, [(changes[i], st) for i, st in done.items()])
    return result


def _check_as_read(c: Change) -> str | None:
    return _unchanged(c.path, c.mtime_ns, c.size, c.old)


def _record(project: Project, label: str, written: list[tuple[Change, tuple[int, int] | None]]) -> int:
    rows = [(c.rel, c.old, c.new, c.newline, st[0] if st else None, st[1] if st else None) for c, st in written]
    conn = connect(project)
    try:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM caption_ops WHERE state = 'undone'")  # a new edit drops the redo steps
            cur = conn.execute(
                "INSERT INTO caption_ops (created, label, files, state) VALUES (?, ?, ?, 'applied')",
                (time.time(), label, len(rows)),
            )
            op_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO caption_op_files (op_id, path, old, new, newline, applied, mtime_ns, size)"
                " VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                [(op_id, *r) for r in rows],
            )
            conn.execute(
                "DELETE FROM caption_ops WHERE id NOT IN (SELECT id FROM caption_ops ORDER BY id DESC LIMIT ?)",
                (HISTORY_LIMIT,),
            )
            total = 0
            for row in conn.execute("SELECT id, files FROM caption_ops ORDER BY id DESC").fetchall():
                total += row["files"]
                if total > HISTORY_ROWS and row["id"] != op_id:
                    conn.execute("DELETE FROM caption_ops WHERE id <= ?", (row["id"],))
                    break
        return op_id
    finally:
        conn.close()


def history(project: Project, limit: int = 20) -> list[HistoryEntry]:
    """Newest first: what can be undone ('applied') and redone ('undone')."""
    conn = connect(project)
    try:
        rows = conn.execute(
            "SELECT id, created, label, files, state FROM caption_ops ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
    finally:
        conn.close()
    return [HistoryEntry(r["id"], r["created"], r["label"], r["files"], r["state"]) for r in rows]


def undo(project: Project, steps: int = 1) -> list[ApplyResult]:
    """Undo the last ``steps`` operations, newest first. Files changed on disk since are refused and reported."""
    return _step(project, steps, undo=True)


def redo(project: Project, steps: int = 1) -> list[ApplyResult]:
    """Redo the last ``steps`` undone operations, oldest first."""
    return _step(project, steps, undo=False)


def _step(project: Project, steps: int, *, undo: bool) -> list[ApplyResult]:
    if steps < 1:
        raise LorawbError(f"nothing to do for {steps} steps: give a number of steps of 1 or more")
    results: list[ApplyResult] = []
    conn = connect(project)
    try:
        for _ in range(steps):
            if undo:
                row = conn.execute(
                    "SELECT id, label FROM caption_ops WHERE state = 'applied' ORDER BY id DESC LIMIT 1"
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT id, label FROM caption_ops WHERE state = 'undone' ORDER BY id ASC LIMIT 1"
                ).fetchone()
            if row is None:
                break
            results.append(_step_one(project, conn, row["id"], row["label"], undo=undo))
    finally:
        conn.close()
    return results


def _step_one(project: Project, conn: sqlite3.Connection, op_id: int, label: str, *, undo: bool) -> ApplyResult:
    rows = conn.execute(
        "SELECT path, old, new, newline, mtime_ns, size FROM caption_op_files WHERE op_id = ? AND applied = ?",
        (op_id, 1 if undo else 0),
    ).fetchall()
    root = project.root
    # Undo puts back `old` where lorawb left `new`; redo the reverse.
    targets = [(root / r["path"], r["old"] if undo else r["new"], r["newline"]) for r in rows]

    def check(i: int) -> str | None:
        r = rows[i]
        return _unchanged(root / r["path"], r["mtime_ns"], r["size"], r["new"] if undo else r["old"])

    done, refused = _write(targets, check)
    updates = [
        (0 if undo else 1, st[0] if st else None, st[1] if st else None, op_id, rows[i]["path"])
        for i, st in done.items()
    ]
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "UPDATE caption_op_files SET applied = ?, mtime_ns = ?, size = ? WHERE op_id = ? AND path = ?", updates
        )
        conn.execute("UPDATE caption_ops SET state = ? WHERE id = ?", ("undone" if undo else "applied", op_id))
    verb = "undo" if undo else "redo"
    result = ApplyResult(f"{verb} {label}", op_id, [rows[i]["path"] for i in done])
    result.conflicts = [Conflict(rows[i]["path"], why) for i, why in sorted(refused.items())]
    return result
