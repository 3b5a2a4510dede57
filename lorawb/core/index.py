"""The dataset index: the last scan of dataset/, kept in the state DB (.lorawb/state.sqlite).

``refresh()`` rescans incrementally: an image whose size and mtime are unchanged is
not opened (its caption is re-stat'ed, and re-read only if it changed); removed files
leave the index. ``load_cached()`` returns the last scan from the DB alone, for the
app's first paint. The folder stays the source of truth: deleting .lorawb/ only
costs one full scan.

Each thread gets its own SQLite connection, so a worker thread can refresh while
the UI thread reads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import astuple, fields, replace
from pathlib import Path

from lorawb.core import layout, state
from lorawb.core.dataset import ImageFacts, Progress, ScanResult, scan_dataset, walk_order
from lorawb.core.project import Project

_TABLE = "dataset_images_v1"
_META = "dataset_scan_v1"
_COLUMNS = [f.name for f in fields(ImageFacts)]
_DDL = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    rel TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    repeats INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    mode TEXT NOT NULL,
    format TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    caption_rel TEXT,
    caption_text TEXT,
    caption_encoding TEXT,
    caption_newline TEXT,
    caption_mtime_ns INTEGER NOT NULL,
    caption_size INTEGER NOT NULL,
    error TEXT,
    problems TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {_TABLE}_hash ON {_TABLE} (content_hash);
CREATE TABLE IF NOT EXISTS {_META} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class DatasetIndex:
    """The index of one project's dataset/. Cheap to create; connections open on first use."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._local = threading.local()
        self._refresh_lock = threading.Lock()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self.project.dataset_dir

    # --- reading ----------------------------------------------------------------------
    def load_cached(self) -> ScanResult | None:
        """The last scan as stored, without looking at dataset/; None if there is none (or for another folder)."""
        conn = self._conn()
        meta = self._meta(conn)
        if meta.get("root") != self._root_key():
            return None
        facts = list(self._rows(conn))
        facts.sort(key=lambda f: walk_order(f.rel))
        return _result_from(self.root, facts, meta)

    def get(self, rel: str) -> ImageFacts | None:
        """The stored facts of one image (usable or not)."""
        row = self._conn().execute(f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE} WHERE rel = ?", (rel,)).fetchone()
        return _facts_from_row(row) if row is not None else None

    def duplicates_of(self, content_hash: str) -> list[str]:
        """Images with exactly these bytes."""
        rows = self._conn().execute(f"SELECT rel FROM {_TABLE} WHERE content_hash = ? ORDER BY rel", (content_hash,))
        return [r[0] for r in rows]

    # --- scanning ---------------------------------------------------------------------
    def refresh(self, progress: Progress | None = None) -> ScanResult:
        """Rescan dataset/, opening only new or changed images; store and return the result."""
        with self._refresh_lock:
            conn = self._conn()
            meta = self._meta(conn)
            known = {f.rel: f for f in self._rows(conn)} if meta.get("root") == self._root_key() else {}

            # A renamed folder (say 10_mira -> 20_mira, to change repeats) keeps its files' names, sizes and
            # mtimes: find them by those, so a rename does not mean reading every image again.
            moved = {(f.name, f.size_bytes, f.mtime_ns): f for f in known.values()}

            def reuse(rel: str, size: int, mtime_ns: int) -> ImageFacts | None:
                f = known.get(rel)
                if f is None or f.size_bytes != size or f.mtime_ns != mtime_ns:
                    f = moved.get((rel.rsplit("/", 1)[-1], size, mtime_ns))
                    if f is None:
                        return None
                    folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
                    f = replace(f, rel=rel, folder=folder, repeats=layout.repeats_for(folder))
                if f.error is not None and f.error.startswith("cannot read"):
                    return None  # permissions may have been fixed without touching mtime: try again
                return f

            result = scan_dataset(self.root, reuse=reuse, progress=progress)
            self._store(conn, known, result)
            return result

    def clear(self) -> None:
        """Forget the index (the next refresh is a full scan)."""
        conn = self._conn()
        with _transaction(conn):
            conn.execute(f"DELETE FROM {_TABLE}")
            conn.execute(f"DELETE FROM {_META}")

    def close(self) -> None:
        """Close every connection this index opened (call from the thread that owns it last)."""
        with self._conns_lock:
            for conn in self._all_conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all_conns.clear()
        self._local = threading.local()

    # --- internals --------------------------------------------------------------------
    def _root_key(self) -> str:
        return str(self.root)

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; reopened if .lorawb/ was deleted (or replaced) under us."""
        db = state.state_db_path(self.project.state_dir)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            ino = os.stat(db).st_ino
        except OSError:
            ino = None
        if conn is not None and ino != getattr(self._local, "ino", None):
            conn.close()
            conn = None
        if conn is None:
            conn = state.connect(self.project.state_dir)
            state.ensure_schema(conn, "dataset_index", _DDL)
            self._local.conn = conn
            self._local.ino = os.stat(db).st_ino
            with self._conns_lock:
                self._all_conns.append(conn)
        return conn

    def _meta(self, conn: sqlite3.Connection) -> dict[str, str]:
        return {k: v for k, v in conn.execute(f"SELECT key, value FROM {_META}")}

    def _rows(self, conn: sqlite3.Connection) -> Iterable[ImageFacts]:
        cur = conn.cursor()
        cur.row_factory = None  # plain tuples: sqlite3.Row costs a third of a 10,000-row load
        for row in cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM {_TABLE}"):
            yield _facts_from_row(row)

    def _store(self, conn: sqlite3.Connection, known: dict[str, ImageFacts], result: ScanResult) -> None:
        current = result.images + result.broken
        changed = [f for f in current if known.get(f.rel) != f]
        gone = set(known) - {f.rel for f in current}
        file_rels = {f.rel for f in current}
        walk_errors = [(rel, reason) for rel, reason in result.unreadable if rel not in file_rels]
        meta = {
            "root": self._root_key(),
            "scanned_at": f"{time.time():.3f}",
            "walk_errors": json.dumps(walk_errors, ensure_ascii=False),
            "orphan_captions": json.dumps(result.orphan_captions, ensure_ascii=False),
        }
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with _transaction(conn):
            if not known:
                conn.execute(f"DELETE FROM {_TABLE}")  # another folder's index, or none
            conn.executemany(f"DELETE FROM {_TABLE} WHERE rel = ?", [(rel,) for rel in gone])
            conn.executemany(
                f"INSERT OR REPLACE INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                [_row_from_facts(f) for f in changed],
            )
            conn.executemany(f"INSERT OR REPLACE INTO {_META} (key, value) VALUES (?, ?)", meta.items())


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _row_from_facts(f: ImageFacts) -> tuple:
    values = list(astuple(f))
    values[_COLUMNS.index("problems")] = json.dumps(f.problems, ensure_ascii=False) if f.problems else ""
    return tuple(values)


_PROBLEMS = _COLUMNS.index("problems")


def _facts_from_row(row: sqlite3.Row | tuple) -> ImageFacts:
    values = list(row)  # columns in dataclass field order, see _COLUMNS
    raw = values[_PROBLEMS]
    values[_PROBLEMS] = json.loads(raw) if raw else []
    return ImageFacts(*values)


def _result_from(root: Path, facts: list[ImageFacts], meta: dict[str, str]) -> ScanResult:
    result = ScanResult(root=root)
    result.unreadable = [tuple(x) for x in json.loads(meta.get("walk_errors", "[]"))]  # type: ignore[misc]
    for f in facts:
        result.add(f)
    result.unreadable.sort(key=lambda item: walk_order(item[0]))
    result.orphan_captions = json.loads(meta.get("orphan_captions", "[]"))
    return result
