"""The app's own state: one SQLite database in .lorawb/state.sqlite.

Each module owns its tables and creates them with ``ensure_schema`` (CREATE ...
IF NOT EXISTS), so features add tables without a central migration list.
Deleting .lorawb/ loses no user data: images and captions live in the folder.

Every connection comes from ``connect`` and speaks lorawb's words when SQLite fails:

- a full disk (SQLite's "database or disk is full" / "disk I/O error") raises ``DiskFullError``:
  "disk full: nothing was written" (the write that failed was rolled back);
- a damaged database (garbage, half a file, a header only: found by ``PRAGMA quick_check``
  when a process first opens the file, or by any statement later) is moved aside as
  ``state.sqlite.corrupt-<time>`` and a fresh one takes its place: the index is rebuilt
  from the files, which are the source of truth. What could not be kept (keep/flag marks,
  the caption history, the triage log) is said in a notice (``take_notices``, and to the
  listeners of ``add_reset_listener``: the app). A statement that met the damage raises
  ``StateDamagedError``; the next one runs on the fresh database.

Both errors are LorawbErrors (the CLI and the app show them) and sqlite3 errors (code that
falls back on a broken ``.lorawb/`` keeps doing so).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from lorawb.errors import LorawbError
from lorawb.words import plural

_lock = threading.RLock()  # re-entrant: a schema's DDL may meet the damage and move the file aside
_schemas_done: set[tuple[str, str]] = set()
_checked: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the state files this process has checked
_notices: list[str] = []
_listeners: list[Callable[[str], None]] = []

# SQLite's primary result codes (``sqlite3.Error.sqlite_errorcode & 0xff``; Python 3.11+).
_IOERR, _CORRUPT, _FULL, _NOTADB = 10, 11, 13, 26
DISK_FULL = "disk full: nothing was written"


class DiskFullError(LorawbError, sqlite3.OperationalError):
    """The state database could not be written: the disk is full (or failing). Nothing was written."""


class StateDamagedError(LorawbError, sqlite3.DatabaseError):
    """The state database was damaged; it has been moved aside and a fresh one made."""


class StateIOError(LorawbError, sqlite3.OperationalError):
    """The state database could not be read or written (an I/O error on a disk with space left)."""


def state_db_path(state_dir: Path) -> Path:
    return state_dir / "state.sqlite"


def connect(state_dir: Path) -> StateConnection:
    """A new connection (one per thread). WAL so the app and the CLI can share it.

    The first time this process opens a state file, ``PRAGMA quick_check`` vets it; a damaged
    one is moved aside (see the module).
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            raise DiskFullError(DISK_FULL, path=state_dir, hint="free some space and try again") from exc
        raise
    db = state_db_path(state_dir)
    for attempt in range(2):
        try:
            conn = _open(db, state_dir)
        except StateDamagedError:
            if attempt:
                raise
            continue  # moved aside: open the fresh one
        return conn
    raise AssertionError("unreachable")


def _open(db: Path, state_dir: Path) -> StateConnection:
    conn = sqlite3.connect(db, timeout=10.0, isolation_level=None, check_same_thread=False, factory=StateConnection)
    assert isinstance(conn, StateConnection)
    conn.state_dir = state_dir
    try:
        conn.ino = os.stat(db).st_ino
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        _check_once(conn, db)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_once(conn: StateConnection, db: Path) -> None:
    """``PRAGMA quick_check`` the first time this process opens this very file (a few ms per MB)."""
    st = os.stat(db)
    key = (st.st_dev, st.st_ino)
    if key in _checked:
        return
    if st.st_size:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            raise conn.damaged(rows[0] if rows else "quick_check failed")
    _checked.add(key)


def is_current(conn: sqlite3.Connection, state_dir: Path) -> bool:
    """True while ``conn`` is a connection to the state file that is at its place now (not deleted,
    not moved aside as damaged): a connection kept for long checks it before use."""
    try:
        return getattr(conn, "ino", None) == os.stat(state_db_path(state_dir)).st_ino
    except OSError:
        return False


@contextmanager
def transaction(conn: sqlite3.Connection, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error (the connection stays usable).

    ``durable``: the commit is on disk when it returns, power cut included (``synchronous=FULL``
    for this one transaction): the intent of a change about to touch files. Other commits survive
    a killed process but may be lost with the power (WAL with ``synchronous=NORMAL``).
    """
    if durable:
        conn.execute("PRAGMA synchronous=FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    finally:
        if durable:
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA synchronous=NORMAL")


# --- lorawb's words for SQLite's failures -----------------------------------------------------


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _primary(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of ``exc`` (from its words on Python 3.10, which has no codes)."""
    code = _code(exc)
    if code is not None:
        return code
    text = str(exc).lower()
    for words, code in (("disk is full", _FULL), ("disk i/o error", _IOERR), ("malformed", _CORRUPT)):
        if words in text:
            return code
    return _NOTADB if "not a database" in text else None


LOW_SPACE = 4 * 1024 * 1024  # an I/O error with less free than this is the disk filling up


def _low_on_space(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return st.f_bavail * st.f_frsize < LOW_SPACE


def _fails_check(db: Path) -> bool:
    """True when a fresh look at the file finds it damaged (an I/O error may be a truncated file)."""
    try:
        conn = sqlite3.connect(db, timeout=10.0)
    except sqlite3.Error:
        return True
    try:
        return [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()] != ["ok"]
    except sqlite3.OperationalError as exc:
        return _primary(exc) != _FULL and not _low_on_space(db.parent) and _primary(exc) in (_IOERR, _CORRUPT)
    except sqlite3.DatabaseError:
        return True
    finally:
        conn.close()


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, DiskFullError) or (isinstance(exc, sqlite3.Error) and _primary(exc) == _FULL)


def is_damaged(exc: BaseException) -> bool:
    return isinstance(exc, StateDamagedError) or (
        isinstance(exc, sqlite3.DatabaseError) and _primary(exc) in (_CORRUPT, _NOTADB)
    )


def _translated(conn: StateConnection, exc: sqlite3.Error) -> BaseException:
    """lorawb's error for what SQLite said: a full disk, a damaged file (moved aside), an I/O error."""
    if isinstance(exc, (DiskFullError, StateDamagedError, StateIOError)):
        return exc
    code = _primary(exc)
    db = state_db_path(conn.state_dir)
    if code == _FULL or (code == _IOERR and _low_on_space(conn.state_dir)):
        return DiskFullError(DISK_FULL, path=db, hint=f"free some space and try again (SQLite: {exc})")
    if code in (_CORRUPT, _NOTADB) or (code == _IOERR and _fails_check(db)):
        return conn.damaged(str(exc))
    if code == _IOERR:
        return StateIOError(
            f"the state database could not be read or written ({exc}); nothing was written",
            path=db,
            hint="check the disk; deleting .lorawb/ loses no images or captions (only marks and undo history)",
        )
    return exc


class _Cursor(sqlite3.Cursor):
    connection: StateConnection

    def execute(self, sql: str, parameters: object = (), /) -> _Cursor:  # type: ignore[override]
        try:
            return super().execute(sql, parameters)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise _translated(self.connection, exc) from exc

    def executemany(self, sql: str, seq: object, /) -> _Cursor:  # type: ignore[override]
        try:
            return super().executemany(sql, seq)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise _translated(self.connection, exc) from exc

    def executescript(self, script: str, /) -> _Cursor:  # type: ignore[override]
        try:
            return super().executescript(script)
        except sqlite3.Error as exc:
            raise _translated(self.connection, exc) from exc

    def fetchone(self) -> object:
        try:
            return super().fetchone()
        except sqlite3.Error as exc:
            raise _translated(self.connection, exc) from exc

    def fetchall(self) -> list:
        try:
            return super().fetchall()
        except sqlite3.Error as exc:
            raise _translated(self.connection, exc) from exc

    def fetchmany(self, size: int | None = 1) -> list:
        try:
            return super().fetchmany(size)
        except sqlite3.Error as exc:
            raise _translated(self.connection, exc) from exc

    def __next__(self) -> object:
        try:
            return super().__next__()
        except sqlite3.Error as exc:
            raise _translated(self.connection, exc) from exc


class StateConnection(sqlite3.Connection):
    """A connection to the state database whose failures come as lorawb's errors (see the module)."""

    state_dir: Path
    ino: int | None = None

    def cursor(self, factory: type[sqlite3.Cursor] = _Cursor) -> _Cursor:  # type: ignore[override]
        return super().cursor(factory)  # type: ignore[return-value]

    def execute(self, sql: str, parameters: object = (), /) -> _Cursor:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq: object, /) -> _Cursor:  # type: ignore[override]
        return self.cursor().executemany(sql, seq)

    def executescript(self, script: str, /) -> _Cursor:  # type: ignore[override]
        return self.cursor().executescript(script)

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.Error as exc:
            raise _translated(self, exc) from exc

    def __exit__(self, *exc_info: object) -> bool:  # type: ignore[override]
        try:
            return bool(super().__exit__(*exc_info))  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise _translated(self, exc) from exc

    def damaged(self, reason: str) -> StateDamagedError:
        """Move the damaged file aside (if it is still this connection's) and say so."""
        notice = quarantine(self.state_dir, reason, self.ino)
        return StateDamagedError(
            "the state database was damaged: it was moved aside and a fresh one made; "
            "what was being saved was lost: try again",
            path=state_db_path(self.state_dir),
            hint=notice,
        )


# --- a damaged database: aside, and say what was lost ---------------------------------------------


def quarantine(state_dir: Path, reason: str, ino: int | None = None) -> str | None:
    """Move a damaged state.sqlite aside as state.sqlite.corrupt-<time>; returns the notice (None when
    the file is no longer the damaged one: another thread or process moved it already)."""
    db = state_db_path(state_dir)
    with _lock, _file_lock(state_dir / "state.lock"):
        try:
            st = os.stat(db)
        except FileNotFoundError:
            return None
        if ino is not None and st.st_ino != ino:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = db.with_name(f"{db.name}.corrupt-{stamp}")
        n = 2
        while aside.exists():
            aside, n = db.with_name(f"{db.name}.corrupt-{stamp}-{n}"), n + 1
        os.rename(db, aside)
        with suppress(OSError):
            os.rename(f"{db}-wal", f"{aside}-wal")
        with suppress(OSError):
            os.unlink(f"{db}-shm")
        _checked.discard((st.st_dev, st.st_ino))
    notice = (
        f"{db}: the state database was damaged ({reason}); moved aside as {aside.name}. "
        f"The image index is rebuilt from the files. Lost: {_lost(aside)}."
    )
    with _lock:
        _notices.append(notice)
        listeners = list(_listeners)
    for fn in listeners:
        with suppress(Exception):  # a listener's failure must not hide the damage report
            fn(notice)
    return notice


def _lost(aside: Path) -> str:
    """What lived only in the damaged file (rejects are folders on disk: never lost), counted if it reads."""
    counts = [
        ("SELECT count(*) FROM triage_marks WHERE state IN ('keep', 'flag')", "keep/flag mark", None),
        ("SELECT count(*) FROM caption_ops", "caption history entry", "caption history entries"),
        ("SELECT count(*) FROM triage_log", "triage decision (its undo)", "triage decisions (their undo)"),
        ("SELECT count(*) FROM journal", "interrupted change not finished", "interrupted changes not finished"),
    ]
    found: list[str] = []
    unread = False
    try:
        conn = sqlite3.connect(f"{aside.as_uri()}?immutable=1", uri=True)
    except sqlite3.Error:
        conn = None
    for sql, what, many in counts:
        try:
            if conn is None:
                raise sqlite3.DatabaseError("unreadable")
            n = conn.execute(sql).fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                continue  # never used: nothing lost
            unread = True
            continue
        except sqlite3.Error:
            unread = True
            continue
        if n:
            found.append(plural(n, what, many))
    if conn is not None:
        conn.close()
    if unread:
        return (
            "the keep/flag marks, the caption history (undo) and the triage log could not be read "
            "(rejected images stay in rejected/)"
        )
    return (", ".join(found) or "nothing but the index") + " (rejected images stay in rejected/)"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (flock), where the system has one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def take_notices() -> list[str]:
    """The damage reports made in this process since the last call (the CLI prints them)."""
    with _lock:
        out = list(_notices)
        _notices.clear()
    return out


def add_reset_listener(fn: Callable[[str], None]) -> None:
    """Call ``fn(notice)`` (from whichever thread found the damage) when a state file is moved aside."""
    with _lock:
        _listeners.append(fn)


def remove_reset_listener(fn: Callable[[str], None]) -> None:
    with _lock:
        if fn in _listeners:
            _listeners.remove(fn)


# --- schemas ----------------------------------------------------------------------------------


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
    except sqlite3.OperationalError as exc:
        if _primary(exc) in (_FULL, _IOERR):
            raise
        row = None
    if row is None:
        conn.execute("CREATE TABLE IF NOT EXISTS lorawb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO lorawb_meta (key, value) VALUES ('db_id', ?)", (uuid.uuid4().hex,))
        row = conn.execute("SELECT value FROM lorawb_meta WHERE key = 'db_id'").fetchone()
    db = conn.execute("PRAGMA database_list").fetchone()[2]
    return f"{db}#{row[0]}"
