"""Shared fixtures. Tests use real files in tmp_path; torch runs on one thread."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LORAWB_THREADS", "1")

import threading  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402


def watcher_threads() -> list[threading.Thread]:
    """File-watcher threads alive now (ours and watchdog's)."""
    from watchdog.utils import BaseThread

    return [
        t for t in threading.enumerate() if t.is_alive() and (isinstance(t, BaseThread) or t.name == "lorawb-watch")
    ]


@pytest.fixture(autouse=True)
def no_leaked_watchers():
    """Every test stops the file watchers it started (the app stops its own on exit)."""
    before = set(watcher_threads())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = [t for t in watcher_threads() if t not in before]
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"file watcher threads still running after the test: {left}")
        time.sleep(0.01)  # polling a condition with a deadline: threads end on their own time
