"""Applying caption change sets, and their undo/redo history in the project's state DB.

Applying writes every changed caption atomically (lorawb.core.fsutil) the way the file
was stored (its BOM, its encoding where it can hold the new text, its newline style:
``fsutil.encode_text``), and records old and new text *and bytes* per file in SQLite, so
undo puts back the exact bytes that were there (a BOM, cp1252, UTF-16, CRLF, several
lines), after the app (or the CLI) restarts, several steps back.

Authors: every change set records who made it: ``cli`` (the command line) or one app
window (``new_window_id``; each window has its own). ``undo``/``redo`` given an author
step through that author's own changes only (a window's ``u`` never reverts another
window's later edit); without one they take the latest change of anyone (the CLI's
``captions undo``). A change made elsewhere is undone by its id (``undo_op``), chosen from
``history``, which names the author of each entry.

Conflicts: the file system is the source of truth. A file that changed on disk since
it was read (mtime_ns + size differ and the content differs) is never overwritten: it
is skipped and reported. Undo and redo check the same way against what lorawb itself
last wrote, file by file: a file changed since is refused and reported, the others go
ahead. A new operation after an undo drops the redo steps, as editors do.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lorawb.core import ownwrites, state
from lorawb.core.caption_ops import Change, ChangeSet, change_diff
from lorawb.core.fsutil import atomic_write_many, encode_text, read_text
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
    state TEXT NOT NULL DEFAULT 'applied',  -- 'applied' | 'undone' | 'superseded' (undone, then a new edit)
    author TEXT,                 -- 'cli' | 'app:<id>' (one app window); NULL: recorded before authors were
    undone_by TEXT,              -- who undid it (redo is theirs to do)
    undone_at REAL
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
    old_bytes BLOB,              -- the exact bytes before; NULL: no file, or the UTF-8 of `old` in `newline`
    new_bytes BLOB,              -- the exact bytes lorawb wrote; NULL: the UTF-8 of `new` in `newline`
    PRIMARY KEY (op_id, path)
);
"""

# Columns added since the first schema: a project made by an older lorawb gets them (NULL in old rows).
_ADDED = {
    "caption_ops": [("author", "TEXT"), ("undone_by", "TEXT"), ("undone_at", "REAL")],
    "caption_op_files": [("old_bytes", "BLOB"), ("new_bytes", "BLOB")],
}

CLI = "cli"


def new_window_id() -> str:
    """A new app window's author id (``app:`` and 6 hex digits): its edits are its own to undo."""
    return f"app:{secrets.token_hex(3)}"


def describe_author(author: str | None, me: str | None = None) -> str:
    """``the CLI``, ``window 3fa2c1``, ``this window``; older entries (no author recorded) say so."""
    if author is None:
        return "unknown (before authors were recorded)"
    if me is not None and author == me:
        return "this window"
    if author == CLI:
        return "the CLI"
    if author.startswith("app:"):
        return f"window {author[4:]}"
    return author


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
    author: str | None = None  # undo/redo: who made the change set stepped over (None: not recorded)
    created: float | None = None  # undo/redo: when it was made


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    created: float
    label: str
    files: int
    state: str
    author: str | None = None


def connect(project: Project) -> sqlite3.Connection:
    conn = state.connect(project.state_dir)
    state.ensure_schema(conn, "caption_history", SCHEMA, migrate=_migrate)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a project's older history lacks (in one write transaction: two processes may race)."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        for table, columns in _ADDED.items():
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


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
    items: list[tuple[Path, bytes | None]],
    check: Callable[[int], str | None],
) -> tuple[dict[int, tuple[int, int] | None], dict[int, str]]:
    """Write (path, bytes or None=delete) items; ``check(i)`` vetoes item i with a reason.

    Returns ({index: (mtime_ns, size) of what is now on disk, None once deleted}, {index: why refused}).
    """
    refused: dict[int, str] = {}
    writes = [i for i, (_, data) in enumerate(items) if data is not None]
    deletes = [i for i, (_, data) in enumerate(items) if data is None]

    def before_replace(j: int) -> bool:
        i = writes[j]
        reason = check(i)
        if reason is not None:
            refused[i] = reason
        return reason is None

    payload = [(items[i][0], items[i][1] or b"") for i in writes]
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


def _legacy_bytes(text: str | None, newline: str) -> bytes | None:
    """What a history row from before bytes were recorded stands for (lorawb wrote UTF-8 then)."""
    return None if text is None else encode_text(text, "utf-8", newline)


def _unless_plain(text: str | None, newline: str, data: bytes | None) -> bytes | None:
    """The bytes to record: None where they are the plain UTF-8 of the text (most files; half the history's size)."""
    if data is None or data == _legacy_bytes(text, newline):
        return None
    return data


def new_bytes(c: Change) -> bytes | None:
    """The bytes a change writes: its new text stored the way the file was (``fsutil.encode_text``)."""
    return None if c.new is None else encode_text(c.new, c.write_encoding or c.encoding, c.newline)


def _old_bytes(c: Change) -> bytes | None:
    """The exact bytes of the file as read (None: no file), called once it is known unchanged since.

    Re-encoding the text gives them back exactly when the encoding round-trips and the newlines
    were uniform (then the size matches; a mixed or lone-CR file, UTF-16 or replaced characters
    are read again instead), so 10,000 files cost no second read.
    """
    if c.old is None:
        return None
    if (
        c.encoding in ("utf-8", "utf-8-sig", "cp1252", "latin-1")
        and c.newline in ("\n", "\r\n")
        and "\ufffd" not in c.old
    ):
        data = encode_text(c.old, c.encoding, c.newline)
        if c.size is not None and len(data) == c.size:
            return data
    try:
        with open(c.path, "rb") as fh:
            return fh.read()
    except OSError:
        return encode_text(c.old, c.encoding, c.newline)


def apply_changeset(project: Project, cs: ChangeSet, author: str = CLI) -> ApplyResult:
    """Write the change set; skip (and report) files changed on disk since they were read; record for undo.

    ``author``: who makes it (``CLI``, or an app window's ``new_window_id()``): their undo takes it back.
    """
    changes = cs.changes
    items = [(c.path, new_bytes(c)) for c in changes]
    before: dict[int, bytes | None] = {}

    def check(i: int) -> str | None:
        reason = _check_as_read(changes[i])
        if reason is None:
            before[i] = _old_bytes(changes[i])  # just before it is replaced: what undo puts back
        return reason

    done, refused = _write(items, check)
    result = ApplyResult(cs.label, None, [changes[i].rel for i in done])
    result.conflicts = [Conflict(changes[i].rel, why) for i, why in sorted(refused.items())]
    if done:
        written = [(changes[i], st, before.get(i), items[i][1]) for i, st in done.items()]
        result.op_id = _record(project, cs.label, written, author)
    return result


def _check_as_read(c: Change) -> str | None:
    return _unchanged(c.path, c.mtime_ns, c.size, c.old)


def _record(
    project: Project,
    label: str,
    written: list[tuple[Change, tuple[int, int] | None, bytes | None, bytes | None]],
    author: str,
) -> int:
    rows = [
        (
            c.rel,
            c.old,
            c.new,
            c.newline,
            st[0] if st else None,
            st[1] if st else None,
            _unless_plain(c.old, c.newline, old),
            _unless_plain(c.new, c.newline, new),
        )
        for c, st, old, new in written
    ]
    conn = connect(project)
    try:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            # A new edit ends its author's redo steps (as editors do; others' stay theirs to redo). They
            # stay in the history as undone changes that can no longer be redone ('superseded').
            conn.execute(
                "UPDATE caption_ops SET state = 'superseded' WHERE state = 'undone' AND (undone_by = ? OR undone_by IS NULL)",
                (author,),
            )
            cur = conn.execute(
                "INSERT INTO caption_ops (created, label, files, state, author) VALUES (?, ?, ?, 'applied', ?)",
                (time.time(), label, len(rows), author),
            )
            op_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO caption_op_files"
                " (op_id, path, old, new, newline, applied, mtime_ns, size, old_bytes, new_bytes)"
                " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
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
    """Newest first: what can be undone ('applied'), redone ('undone'), and undone changes a later edit
    replaced ('superseded': listed, no longer redone), each with its author."""
    conn = connect(project)
    try:
        rows = conn.execute(
            "SELECT id, created, label, files, state, author FROM caption_ops ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
    finally:
        conn.close()
    return [HistoryEntry(r["id"], r["created"], r["label"], r["files"], r["state"], r["author"]) for r in rows]


def entry(project: Project, op_id: int) -> HistoryEntry | None:
    conn = connect(project)
    try:
        r = conn.execute(
            "SELECT id, created, label, files, state, author FROM caption_ops WHERE id = ?", (op_id,)
        ).fetchone()
    finally:
        conn.close()
    return None if r is None else HistoryEntry(r["id"], r["created"], r["label"], r["files"], r["state"], r["author"])


def entry_diff(project: Project, op_id: int, limit: int | None = 50) -> str:
    """The unified diff of one history entry (what undoing it takes back), its first ``limit`` files."""
    conn = connect(project)
    try:
        rows = conn.execute(
            "SELECT path, old, new FROM caption_op_files WHERE op_id = ? ORDER BY path LIMIT ?",
            (op_id, -1 if limit is None else limit),
        ).fetchall()
    finally:
        conn.close()
    root = project.root
    return "".join(change_diff(Change(r["path"], r["path"], root / r["path"], r["old"], r["new"])) for r in rows)


def undo(project: Project, steps: int = 1, author: str | None = None) -> list[ApplyResult]:
    """Undo the last ``steps`` operations (of ``author`` only, when given), newest first.

    Files changed on disk since are refused and reported.
    """
    return _step(project, steps, undo=True, author=author)


def redo(project: Project, steps: int = 1, author: str | None = None) -> list[ApplyResult]:
    """Redo the last ``steps`` undone operations (those ``author`` undid, when given), latest undone first."""
    return _step(project, steps, undo=False, author=author)


def undo_op(project: Project, op_id: int, author: str = CLI) -> ApplyResult:
    """Undo one chosen history entry, whoever made it (the history view's explicit undo).

    A file a later applied entry changed again is refused and the entry named: undo that first.
    """
    conn = connect(project)
    try:
        row = conn.execute("SELECT id, label, state FROM caption_ops WHERE id = ?", (op_id,)).fetchone()
        if row is None:
            raise LorawbError(f"no change #{op_id} in the caption history", hint="`lorawb captions history` lists them")
        if row["state"] != "applied":
            raise LorawbError(f"change #{op_id} ({row['label']}) is already undone")
        later = {
            r["path"]: r["op_id"]
            for r in conn.execute(
                "SELECT f.path, f.op_id FROM caption_op_files f JOIN caption_ops o ON o.id = f.op_id"
                " WHERE f.op_id > ? AND o.state = 'applied' AND f.applied = 1"
                " AND f.path IN (SELECT path FROM caption_op_files WHERE op_id = ?) ORDER BY f.op_id",
                (op_id, op_id),
            )
        }
        return _step_one(project, conn, op_id, row["label"], undo=True, author=author, later=later, keep=True)
    finally:
        conn.close()


def _step(project: Project, steps: int, *, undo: bool, author: str | None) -> list[ApplyResult]:
    if steps < 1:
        raise LorawbError(f"nothing to do for {steps} steps: give a number of steps of 1 or more")
    results: list[ApplyResult] = []
    conn = connect(project)
    try:
        for _ in range(steps):
            if undo:
                mine = "" if author is None else " AND author = ?"
                row = conn.execute(
                    f"SELECT id, label FROM caption_ops WHERE state = 'applied'{mine} ORDER BY id DESC LIMIT 1",
                    () if author is None else (author,),
                ).fetchone()
            else:
                mine = "" if author is None else " AND undone_by = ?"
                row = conn.execute(
                    f"SELECT id, label FROM caption_ops WHERE state = 'undone'{mine}"
                    " ORDER BY COALESCE(undone_at, 0) DESC, id ASC LIMIT 1",
                    () if author is None else (author,),
                ).fetchone()
            if row is None:
                break
            results.append(_step_one(project, conn, row["id"], row["label"], undo=undo, author=author or CLI))
    finally:
        conn.close()
    return results


def _step_one(
    project: Project,
    conn: sqlite3.Connection,
    op_id: int,
    label: str,
    *,
    undo: bool,
    author: str,
    later: dict[str, int] | None = None,
    keep: bool = False,
) -> ApplyResult:
    """Undo (or redo) one entry file by file. ``keep``: an entry none of whose files could be
    written stays as it was (the explicit undo of one entry: it can be tried again)."""
    rows = conn.execute(
        "SELECT path, old, new, newline, mtime_ns, size, old_bytes, new_bytes FROM caption_op_files"
        " WHERE op_id = ? AND applied = ?",
        (op_id, 1 if undo else 0),
    ).fetchall()
    root = project.root

    def target(r: sqlite3.Row) -> bytes | None:
        """Undo puts back the bytes that were there before; redo the bytes lorawb wrote."""
        text, data = (r["old"], r["old_bytes"]) if undo else (r["new"], r["new_bytes"])
        if text is None:
            return None  # no file on that side: delete it
        return bytes(data) if data is not None else _legacy_bytes(text, r["newline"])

    targets = [(root / r["path"], target(r)) for r in rows]

    def check(i: int) -> str | None:
        r = rows[i]
        reason = _unchanged(root / r["path"], r["mtime_ns"], r["size"], r["new"] if undo else r["old"])
        if reason is not None and later and r["path"] in later:
            return f"changed again by change #{later[r['path']]}: undo that one first"
        return reason

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
        if keep and not done:
            pass
        elif undo:
            conn.execute(
                "UPDATE caption_ops SET state = 'undone', undone_by = ?, undone_at = ? WHERE id = ?",
                (author, time.time(), op_id),
            )
        else:
            conn.execute(
                "UPDATE caption_ops SET state = 'applied', undone_by = NULL, undone_at = NULL WHERE id = ?", (op_id,)
            )
    made = conn.execute("SELECT author, created FROM caption_ops WHERE id = ?", (op_id,)).fetchone()
    verb = "undo" if undo else "redo"
    result = ApplyResult(f"{verb} {label}", op_id, [rows[i]["path"] for i in done])
    result.author, result.created = made["author"], made["created"]
    result.conflicts = [Conflict(rows[i]["path"], why) for i, why in sorted(refused.items())]
    return result
