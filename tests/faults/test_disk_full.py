"""A full disk: a bulk edit stops before any caption changes ("disk full: nothing was written"), and every
command that touches state.sqlite says so instead of a traceback.

Two ways: a real small tmpfs, mounted in a private user and mount namespace where the machine
allows one (``unshare``; skipped where not), and the same failures injected where they happen (a
state database that cannot grow when the history is written; ENOSPC while the temp files are
written), which runs everywhere.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lorawb.cli import main
from lorawb.core import caption_history, fsutil, state
from lorawb.core import caption_ops as co
from lorawb.errors import LorawbError
from tests.faults.helpers import caption_project, captions, leftovers

SCRIPT = Path(__file__).with_name("on_a_full_disk.py")
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]


def _tmpfs_works(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*UNSHARE, 'mount -t tmpfs -o size=1m tmpfs "$1"', "sh", str(where)], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
def test_a_real_full_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if not _tmpfs_works(mount):
        pytest.skip("cannot mount a tmpfs here (no unprivileged user namespaces); the injected tests cover it")
    proc = subprocess.run(
        [*UNSHARE, 'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" "$3" "$1"', "sh", mount, sys.executable, SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["setup"]["rc"] == 0
    for name in ("add_150k", "add", "history", "undo", "reject"):
        step = out[name]
        assert "Traceback" not in step["err"], (name, step["err"])
        assert step["same"], name  # no caption changed
        if step["rc"] != 0:
            assert step["rc"] == 2 and "disk full: nothing was written" in step["err"], (name, step["err"])
    assert out["add_150k"]["rc"] == 2
    assert out["reject"]["image_home"] or out["reject"]["rc"] == 0
    assert out["after"]["rc"] == 0 and out["undone"]  # space freed: the history is whole, undo works
    assert out["leftovers"] == []


@pytest.fixture
def project(tmp_path):
    project = caption_project(tmp_path, n=40)
    assert main(["captions", "add", "first", "-p", str(project.root)]) == 0
    return project


def test_history_full_when_the_edit_is_recorded_changes_nothing(project, monkeypatch):
    """The edit is planned; then the state database cannot grow when its intent is written: nothing is written."""
    cs = co.build_changeset(project, co.AddTag("masterpiece"))
    real = state._open

    def full(db, state_dir):
        conn = real(db, state_dir)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    before = captions(project)
    monkeypatch.setattr(state, "_open", full)
    with pytest.raises(LorawbError, match="disk full: nothing was written"):
        caption_history.apply_changeset(project, cs)
    monkeypatch.setattr(state, "_open", real)
    assert captions(project) == before and leftovers(project) == []
    assert [e.label for e in caption_history.history(project)] == ["add 'first' at end"]
    assert _nothing_pending(project)


def test_no_space_for_the_temp_files_changes_nothing(project, monkeypatch):
    real = fsutil._write_all
    calls = []

    def enospc(fd, data):
        calls.append(fd)
        if len(calls) == 7:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    before = captions(project)
    monkeypatch.setattr(fsutil, "_write_all", enospc)
    with pytest.raises(Exception, match="disk full: nothing was written") as err:
        main(["--debug", "captions", "add", "masterpiece", "-p", str(project.root)])
    assert ".lwb-" not in str(err.value)  # the caption is named, not its temp file
    monkeypatch.setattr(fsutil, "_write_all", real)
    assert captions(project) == before and leftovers(project) == []
    assert [e.label for e in caption_history.history(project)] == ["add 'first' at end"]
    assert _nothing_pending(project)


def _nothing_pending(project) -> bool:
    from lorawb.core import journal

    return journal.pending(project) == []
