"""The app's own state: one SQLite database in .lorawb/state.sqlite.

Each module owns its tables and creates them with ``ensure_schema`` (CREATE ...
IF NOT EXISTS), so features add tables without a central migration list.
Deleting .lorawb/ loses no user data: images and captions live in the folder.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

_lock = threading.Lock()
_schemas_done: set[tuple[str, str]] = set()


def state_db_path(state_dir: Path) -> Path:
    return state_dir / "state.sqlite"


def connect(state_dir: Path) -> sqlite3.Connection:
    """A new connection (one per thread). WAL so the app and the CLI can share it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(state_db_path(state_dir), timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def ensure_schema(
    conn: sqlite3.Connection, name: str, ddl: str, migrate: Callable[[sqlite3.Connection], None] | None = None
) -> None:
    """Run ``ddl`` (a script of CREATE ... IF NOT EXISTS), then ``migrate``, once per database per process.

    ``migrate`` brings tables an older lorawb made up to date (ALTER TABLE ... ADD COLUMN where a
    column is missing); it must be safe to run again and against another process doing the same.

    "Database" means this very file: each one carries a random id, so after .lorawb/ is
    deleted and recreated in the same process the tables are created again.
    """
    key = (_db_id(conn), name)
    with _lock:
        if key in _schemas_done:
            return
        conn.executescript(ddl)
        if migrate is not None:
            migrate(conn)
        _schemas_done.add(key)


def _db_id(conn: sqlite3.Connection) -> str:
    try:
        row = conn.execute("SELECT value FROM lorawb_meta WHERE key = 'db_id'").fetchone()
    except sqlite3.OperationalError:
        row = None
    if row is None:
        conn.execute("CREATE TABLE IF NOT EXISTS lorawb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO lorawb_meta (key, value) VALUES ('db_id', ?)", (uuid.uuid4().hex,))
        row = conn.execute("SELECT value FROM lorawb_meta WHERE key = 'db_id'").fetchone()
    db = conn.execute("PRAGMA database_list").fetchone()[2]
    return f"{db}#{row[0]}"
