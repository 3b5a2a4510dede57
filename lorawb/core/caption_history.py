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

Crashes: every change set (and every undo or redo) records its intent in the state DB, old
and new bytes of every file, durably, before the first file is renamed, and marks it done
after (lorawb.core.journal). A process killed in between leaves every caption old or new;
the next command (``recover_entry``) finishes the change set, so its history entry exists
and undo takes it back, or drops it when no file had changed yet, and removes the temp files
the kill left behind. A full disk stops a change before any caption changes: the intent is
written first.

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

from lorawb.core import fsutil, journal, ownwrites, state
from lorawb.core.caption_ops import Change, ChangeSet, change_diff
from lorawb.core.confine import WriteScope
from lorawb.core.fsutil import atomic_write_many, encode_text, read_text
from lorawb.core.layout import CAPTION_MAX_BYTES
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.words import plural

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
    state TEXT NOT NULL DEFAULT 'applied',  -- 'applied' | 'undone' | 'superseded' (undone, then a new edit) | 'pending' (being applied: not listed)
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
    applied INTEGER NOT NULL,    -- 1: `new` is what lorawb left on disk, 0: `old` is (or: not written yet)
    mtime_ns INTEGER,            -- the file as lorawb left it (NULL when it left no file, or not yet)
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
    state.ensure_schema(conn, "journal", journal.SCHEMA)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a project's older history lacks (in one write transaction: two processes may race)."""
    with state.transaction(conn):
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
        if read_text(path, limit=CAPTION_MAX_BYTES).text == expected:  # touched, or rewritten with the same text
            return None
    except LorawbError:
        pass
    return "changed on disk by another program"


def _write(
    items: list[tuple[Path, bytes | None]],
    check: Callable[[int], str | None],
    tag: str | None = None,
) -> tuple[dict[int, tuple[int, int] | None], dict[int, str]]:
    """Write (path, bytes or None=delete) items; ``check(i)`` vetoes item i with a reason.

    Returns ({index: (mtime_ns, size) of what is now on disk, None once deleted}, {index: why refused}).
    ``tag``: the journaled change's mark on its temp files. A temp file that cannot be written raises
    LorawbError before any file changed.
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
    written = atomic_write_many(payload, before_replace=before_replace, errors=failed, tag=tag)
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
    The intent (every file's old and new bytes) is in the history, durably, before the first file
    changes (see the module); a full disk stops it there: "disk full: nothing was written".
    """
    changes = cs.changes
    result = ApplyResult(cs.label, None)
    scope = WriteScope(project)
    refused: dict[int, str] = {}
    olds: dict[int, bytes | None] = {}
    for i, c in enumerate(changes):
        reason = scope.refuse(c.path) or _check_as_read(c)
        if reason is not None:
            refused[i] = reason
        else:
            olds[i] = _old_bytes(c)  # what undo puts back (the file is as it was read)
    todo = list(olds)
    if todo:
        items = [(changes[i].path, new_bytes(changes[i])) for i in todo]
        token = fsutil.new_tag()
        with journal.holding(project, token):
            conn = connect(project)
            try:
                op_id = _intend(
                    conn,
                    cs.label,
                    [(changes[i], olds[i], data) for i, (_, data) in zip(todo, items, strict=True)],
                    author,
                    token,
                )
                fsutil.kill_point("journaled")
                try:
                    done, failed = _write(items, lambda j: _check_as_read(changes[todo[j]]), tag=token)
                except LorawbError:
                    _forget(conn, op_id, token)  # nothing was renamed: the change did nothing
                    raise
                refused.update({todo[j]: why for j, why in failed.items()})
                written = {changes[todo[j]].rel: st for j, st in done.items()}
                _settle_apply(conn, op_id, token, author, written)
            finally:
                conn.close()
        if written:
            result.op_id = op_id
            result.written = list(written)
    result.conflicts = [Conflict(changes[i].rel, why) for i, why in sorted(refused.items())]
    return result


def _check_as_read(c: Change) -> str | None:
    if c.old is None and c.size:  # there was a file, but its text could not be read (too large, unreadable)
        return "the caption could not be read (over 64 KB, or unreadable): left as it is"
    return _unchanged(c.path, c.mtime_ns, c.size, c.old)


def _intend(
    conn: sqlite3.Connection,
    label: str,
    changes: list[tuple[Change, bytes | None, bytes | None]],
    author: str,
    token: str,
) -> int:
    """Record the change set as 'pending' with every file's old and new bytes, and its journal row."""
    rows = [
        (c.rel, c.old, c.new, c.newline, _unless_plain(c.old, c.newline, old), _unless_plain(c.new, c.newline, new))
        for c, old, new in changes
    ]
    with state.transaction(conn, durable=True):
        cur = conn.execute(
            "INSERT INTO caption_ops (created, label, files, state, author) VALUES (?, ?, ?, 'pending', ?)",
            (time.time(), label, len(rows), author),
        )
        op_id = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO caption_op_files (op_id, path, old, new, newline, applied, old_bytes, new_bytes)"
            " VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            [(op_id, *r) for r in rows],
        )
        journal.record(conn, "captions", __name__, token, {"op": op_id, "step": "apply", "author": author})
    return op_id


def _forget(conn: sqlite3.Connection, op_id: int, token: str) -> None:
    """Drop an intent that changed no file (best effort: if this fails too, the next recovery drops it)."""
    try:
        with state.transaction(conn):
            conn.execute("DELETE FROM caption_ops WHERE id = ?", (op_id,))
            journal.finish(conn, token)
    except sqlite3.Error:
        pass


def _settle_apply(
    conn: sqlite3.Connection, op_id: int, token: str, author: str, written: dict[str, tuple[int, int] | None]
) -> None:
    """Mark the files written as applied (with their stat), drop the others, and the change set is done."""
    try:
        with state.transaction(conn):
            conn.executemany(
                "UPDATE caption_op_files SET applied = 1, mtime_ns = ?, size = ? WHERE op_id = ? AND path = ?",
                [(st[0] if st else None, st[1] if st else None, op_id, rel) for rel, st in written.items()],
            )
            conn.execute("DELETE FROM caption_op_files WHERE op_id = ? AND applied = 0", (op_id,))
            if not written:
                conn.execute("DELETE FROM caption_ops WHERE id = ?", (op_id,))
            else:
                # A new edit ends its author's redo steps (as editors do; others' stay theirs to redo). They
                # stay in the history as undone changes that can no longer be redone ('superseded').
                conn.execute(
                    "UPDATE caption_ops SET state = 'superseded' WHERE state = 'undone'"
                    " AND (undone_by = ? OR undone_by IS NULL)",
                    (author,),
                )
                conn.execute("UPDATE caption_ops SET state = 'applied', files = ? WHERE id = ?", (len(written), op_id))
                _trim(conn, op_id)
            journal.finish(conn, token)
    except state.DiskFullError as exc:
        raise LorawbError(
            f"disk full: {plural(len(written), 'caption')} were written, but their history entry could not be "
            "completed; the next lorawb command completes it (then `lorawb captions undo` takes it back)",
            path=exc.path,
            hint="free some space",
        ) from exc


def _trim(conn: sqlite3.Connection, op_id: int) -> None:
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


def history(project: Project, limit: int = 20) -> list[HistoryEntry]:
    """Newest first: what can be undone ('applied'), redone ('undone'), and undone changes a later edit
    replaced ('superseded': listed, no longer redone), each with its author."""
    journal.recover(project)
    conn = connect(project)
    try:
        rows = conn.execute(
            "SELECT id, created, label, files, state, author FROM caption_ops WHERE state != 'pending'"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
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
    journal.recover(project)
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
    journal.recover(project)
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

    scope = WriteScope(project)

    def check(i: int) -> str | None:
        r = rows[i]
        reason = scope.refuse(root / r["path"]) or _unchanged(
            root / r["path"], r["mtime_ns"], r["size"], r["new"] if undo else r["old"]
        )
        if reason is not None and later and r["path"] in later:
            return f"changed again by change #{later[r['path']]}: undo that one first"
        return reason

    token = fsutil.new_tag()
    with journal.holding(project, token):
        with state.transaction(conn, durable=True):
            journal.record(
                conn, "captions", __name__, token, {"op": op_id, "step": "undo" if undo else "redo", "author": author}
            )
        fsutil.kill_point("journaled")
        try:
            done, refused = _write(targets, check, tag=token)
        except LorawbError:
            _forget_step(conn, token)
            raise
        _settle_step(conn, op_id, token, rows, done, undo=undo, author=author, keep=keep)
    made = conn.execute("SELECT author, created FROM caption_ops WHERE id = ?", (op_id,)).fetchone()
    verb = "undo" if undo else "redo"
    result = ApplyResult(f"{verb} {label}", op_id, [rows[i]["path"] for i in done])
    result.author, result.created = made["author"], made["created"]
    result.conflicts = [Conflict(rows[i]["path"], why) for i, why in sorted(refused.items())]
    return result


def _forget_step(conn: sqlite3.Connection, token: str) -> None:
    try:
        with state.transaction(conn):
            journal.finish(conn, token)
    except sqlite3.Error:
        pass


def _settle_step(
    conn: sqlite3.Connection,
    op_id: int,
    token: str,
    rows: list[sqlite3.Row],
    done: dict[int, tuple[int, int] | None],
    *,
    undo: bool,
    author: str,
    keep: bool = False,
) -> None:
    """Record an undo (or redo) as done: each file written flips its side, the entry its state."""
    updates = [
        (0 if undo else 1, st[0] if st else None, st[1] if st else None, op_id, rows[i]["path"])
        for i, st in done.items()
    ]
    with state.transaction(conn):
        conn.executemany(
            "UPDATE caption_op_files SET applied = ?, mtime_ns = ?, size = ? WHERE op_id = ? AND path = ?", updates
        )
        if done or not keep:
            _stepped(conn, op_id, undo=undo, author=author)
        journal.finish(conn, token)


def _stepped(conn: sqlite3.Connection, op_id: int, *, undo: bool, author: str) -> None:
    """The entry's state after an undo (``undone``, by ``author``) or a redo (``applied`` again)."""
    if undo:
        conn.execute(
            "UPDATE caption_ops SET state = 'undone', undone_by = ?, undone_at = ? WHERE id = ?",
            (author, time.time(), op_id),
        )
    else:
        conn.execute(
            "UPDATE caption_ops SET state = 'applied', undone_by = NULL, undone_at = NULL WHERE id = ?", (op_id,)
        )


# --- after a kill ---------------------------------------------------------------------------------


def _side(r: sqlite3.Row, new: bool) -> bytes | None:
    """The exact bytes of one side of a history row (None: no file on that side)."""
    text, data = (r["new"], r["new_bytes"]) if new else (r["old"], r["old_bytes"])
    if text is None:
        return None
    return bytes(data) if data is not None else _legacy_bytes(text, r["newline"])


_UNREADABLE = b"\0unreadable"  # not the bytes of any side


def _on_disk(path: Path, limit: int) -> bytes | None:
    """The file's bytes (None: no file); a file larger than ``limit`` is neither side: ``_UNREADABLE``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        return None
    except OSError:
        return _UNREADABLE
    return _UNREADABLE if len(data) > limit else data


def recover_entry(project: Project, entry: journal.Entry) -> str | None:
    """Finish (or drop) a change set, undo or redo that a killed process left half done; says what it did.

    Each file of the step is on its old side, its new side, or neither (changed since by another
    program: left alone). If any file reached the new side, the rest are written and the step is
    recorded as done, so ``captions undo`` takes it back; if none had, the step is dropped.
    """
    op_id, step, author = entry.payload["op"], entry.payload["step"], entry.payload.get("author") or CLI
    undo = step == "undo"
    root = project.root
    conn = connect(project)
    try:
        op = conn.execute("SELECT label FROM caption_ops WHERE id = ?", (op_id,)).fetchone()
        rows = conn.execute(
            "SELECT path, old, new, newline, mtime_ns, size, old_bytes, new_bytes FROM caption_op_files"
            " WHERE op_id = ? AND applied = ?",
            (op_id, 1 if undo else 0),
        ).fetchall()
        fsutil.remove_leftovers({os.path.dirname(root / r["path"]) for r in rows}, entry.token)
        label = op["label"] if op is not None else f"#{op_id}"
        what = {"apply": "caption edit", "undo": "undo of", "redo": "redo of"}[step]
        reached, todo, other = [], [], []
        for r in rows:
            src, dst = _side(r, new=undo), _side(r, new=not undo)
            disk = _on_disk(root / r["path"], max(len(src or b""), len(dst or b"")))
            (reached if disk == dst else todo if disk == src else other).append(r)
        if op is None or not reached:
            with state.transaction(conn):
                if step == "apply":
                    conn.execute("DELETE FROM caption_ops WHERE id = ?", (op_id,))
                journal.finish(conn, entry.token)
            return f"an interrupted {what} {label!r} had changed no caption yet: dropped, nothing was written"
        targets = [(root / r["path"], _side(r, new=not undo)) for r in todo]
        done, _refused = _write(
            targets,
            lambda i: None if _on_disk(targets[i][0], 1 << 24) == _side(todo[i], new=undo) else "changed",
            entry.token,
        )
        finished = {r["path"]: _stat(root / r["path"]) for r in reached}
        finished.update({todo[i]["path"]: st for i, st in done.items()})
        with state.transaction(conn):
            conn.executemany(
                "UPDATE caption_op_files SET applied = ?, mtime_ns = ?, size = ? WHERE op_id = ? AND path = ?",
                [
                    (0 if undo else 1, st[0] if st else None, st[1] if st else None, op_id, rel)
                    for rel, st in finished.items()
                ],
            )
            if step == "apply":
                conn.execute("DELETE FROM caption_op_files WHERE op_id = ? AND applied = 0", (op_id,))
                conn.execute("UPDATE caption_ops SET state = 'applied', files = ? WHERE id = ?", (len(finished), op_id))
            else:
                _stepped(conn, op_id, undo=undo, author=author)
            journal.finish(conn, entry.token)
    finally:
        conn.close()
    left = len(todo) - len(done) + len(other)
    text = (
        f"finished an interrupted {what} {label!r}: {plural(len(finished), 'caption')} "
        f"({len(done)} written now{f'; {left} changed since by another program, left as they are' if left else ''})"
    )
    if step != "undo":
        text += "; `lorawb captions undo` takes it back"
    return text
