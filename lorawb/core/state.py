"""The app's own state: one SQLite database in .lorawb/state.sqlite.

Each module owns its tables and creates them with ``ensure_schema`` (CREATE ...
IF NOT EXISTS), so features add tables without a central migration list.
Deleting .lorawb/ loses no user data: images and captions live in the folder.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

_lock = threading.Lock()
_schemas_done: set[tuple[str, str]] = set()
_FIRST_TABLE = re.compile(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


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


def ensure_schema(conn: sqlite3.Connection, name: str, ddl: str) -> None:
    """Run ``ddl`` (a script of CREATE ... IF NOT EXISTS) once per database per process.

    If .lorawb/ was deleted while the process runs (allowed: it holds no user data),
    the database is new and the tables are created again.
    """
    db = conn.execute("PRAGMA database_list").fetchone()[2]
    key = (db, name)
    with _lock:
        if key in _schemas_done:
            m = _FIRST_TABLE.search(ddl)
            if m is None or conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", (m.group(1),)).fetchone():
                return
        conn.executescript(ddl)
        _schemas_done.add(key)
