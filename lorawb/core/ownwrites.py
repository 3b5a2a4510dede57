"""The files this process is writing or has just written, so the watcher can tell the app's own writes apart.

Every write lorawb makes to a project's files (caption saves and bulk edits, triage
moves, undo, lorawb.toml) goes through ``writing(paths)``: while it runs the paths are
*in flight*; when it ends each path's stat is recorded for a few seconds. The file
watcher asks ``is_own(path)``: a change whose file is in flight, or now has exactly the
stat this process left, is the app's own and is not reported back to it as a change
made by another program. A change made by another program after ours (a different
stat) is reported as usual.

Process-wide and in memory only: another process (the CLI, a second window) never
matches, which is what "another program" means.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KEEP_S = 5.0  # how long a finished write is remembered (the watcher sees it well within this)


@dataclass
class _Entry:
    busy: int = 0  # writes in flight
    stat: tuple[int, int] | None = None  # (mtime_ns, size) left by the last write; None: no file
    until: float = 0.0


_lock = threading.Lock()
_entries: dict[str, _Entry] = {}


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def begin(paths: Iterable[Path | str]) -> list[str]:
    keys = [os.path.abspath(os.fspath(p)) for p in paths]
    with _lock:
        for k in keys:
            _entries.setdefault(k, _Entry()).busy += 1
    return keys


def end(keys: list[str]) -> None:
    now = time.monotonic()
    stats = {k: _stat(k) for k in keys}
    with _lock:
        for k in keys:
            e = _entries.setdefault(k, _Entry())
            e.busy = max(0, e.busy - 1)
            e.stat, e.until = stats[k], now + KEEP_S
        _expire(now)


@contextmanager
def writing(paths: Iterable[Path | str]) -> Iterator[None]:
    """Mark ``paths`` as being written by this process for the duration of the block."""
    keys = begin(paths)
    try:
        yield
    finally:
        end(keys)


def is_own(path: Path | str) -> bool:
    """True when this process is writing ``path`` or left it exactly as it is now."""
    k = os.path.abspath(os.fspath(path))
    with _lock:
        e = _entries.get(k)
        if e is None:
            return False
        if e.busy:
            return True
        if e.until < time.monotonic():
            return False
        expected = e.stat
    return _stat(k) == expected


def busy(path: Path | str) -> bool:
    """True while a write of ``path`` by this process is in flight (its result is not final yet)."""
    with _lock:
        e = _entries.get(os.path.abspath(os.fspath(path)))
        return e is not None and e.busy > 0


def _expire(now: float) -> None:
    if len(_entries) < 4096:
        return
    for k in [k for k, e in _entries.items() if not e.busy and e.until < now]:
        del _entries[k]
