"""What each model said about each image, kept in .lorawb/state.sqlite so a second preview is instant.

Keyed by the backend's ``key`` (the model files and the settings that change its output)
and the image's name, size and modification time: an edited image is read again, and
an image moved by triage (inbox -> dataset keeps name, size and time) is not. The labels
are stored above the model's floor, before thresholds, so changing a threshold, the
exclusions or the mode re-uses them. Deleting .lorawb/ only costs re-running the model.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time

from lorawb.core import state
from lorawb.core.project import Project
from lorawb.tagger.labels import Label, Prediction

CACHE_ROWS = 200_000  # beyond this many predictions the least recently used go
ImageKey = tuple[str, int, int]  # (file name, size, mtime_ns)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tagger_cache (
    model TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    labels TEXT NOT NULL,        -- JSON: [[name, score or null, category], ...]
    used REAL NOT NULL,
    PRIMARY KEY (model, name, size, mtime_ns)
);
CREATE INDEX IF NOT EXISTS tagger_cache_used ON tagger_cache (used);
"""


def image_key(path: str) -> ImageKey:
    """The cache key of an image file (raises OSError when it cannot be stat'ed)."""
    st = os.stat(path)
    return os.path.basename(path), st.st_size, st.st_mtime_ns


class PredictionCache:
    def __init__(self, project: Project) -> None:
        self.conn: sqlite3.Connection = state.connect(project.state_dir)
        state.ensure_schema(self.conn, "tagger_cache", SCHEMA)

    def get_many(self, model: str, keys: list[ImageKey]) -> dict[ImageKey, Prediction]:
        found: dict[ImageKey, Prediction] = {}
        now = time.time()
        with self.conn:
            for key in keys:
                row = self.conn.execute(
                    "SELECT labels FROM tagger_cache WHERE model = ? AND name = ? AND size = ? AND mtime_ns = ?",
                    (model, *key),
                ).fetchone()
                if row is None:
                    continue
                try:
                    found[key] = tuple(Label.from_json(r) for r in json.loads(row["labels"]))
                except (ValueError, TypeError):
                    continue  # a damaged row: predict again
            if found:
                self.conn.executemany(
                    "UPDATE tagger_cache SET used = ? WHERE model = ? AND name = ? AND size = ? AND mtime_ns = ?",
                    [(now, model, *k) for k in found],
                )
        return found

    def put_many(self, model: str, items: list[tuple[ImageKey, Prediction]]) -> None:
        if not items:
            return
        now = time.time()
        rows = [(model, *k, json.dumps([lab.to_json() for lab in p], ensure_ascii=False), now) for k, p in items]
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO tagger_cache (model, name, size, mtime_ns, labels, used) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            (count,) = self.conn.execute("SELECT COUNT(*) FROM tagger_cache").fetchone()
            if count > CACHE_ROWS:
                self.conn.execute(
                    "DELETE FROM tagger_cache WHERE rowid IN (SELECT rowid FROM tagger_cache ORDER BY used LIMIT ?)",
                    (count - CACHE_ROWS,),
                )

    def close(self) -> None:
        self.conn.close()
