"""A read-only dataset: a reject is refused with the folder named, nothing half moved, no traceback.

For real where a read-only bind mount can be made (a private user and mount namespace), else
skipped; the same failure injected (EROFS from the move) runs everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest

from lorawb.core import triage as triage_mod
from lorawb.core.triage import Triage, TriageError
from tests.faults.helpers import ROOT, caption_project, captions

IMG = "dataset/10_zkx_mira/img_001.png"
RO = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'


def _files(project) -> list[str]:
    return sorted(p.relative_to(project.root).as_posix() for p in project.dataset_dir.rglob("*"))


def test_reject_on_a_read_only_mount_names_the_folder_and_moves_nothing(tmp_path):
    project = caption_project(tmp_path, n=4)
    before, files = captions(project), _files(project)
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here; the injected test covers it")
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", RO, "sh", str(project.dataset_dir)]
        + [sys.executable, "-m", "lorawb", "triage", "--reject", IMG, "-p", str(project.root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    if proc.returncode != 2 and "mount" in proc.stderr:
        pytest.skip(f"cannot make a read-only mount here: {proc.stderr.strip()}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "read-only" in proc.stderr and "nothing was moved" in proc.stderr
    assert str(project.dataset_dir) in proc.stderr  # the folder is named
    assert _files(project) == files and captions(project) == before


def test_a_move_refused_by_the_file_system_is_a_clean_error(tmp_path, monkeypatch):
    project = caption_project(tmp_path, n=4)
    files = _files(project)
    real = os.link

    def read_only(src, dst, *a, **k):
        if str(src).endswith(".txt"):  # the image moves, its caption cannot: the worst place to fail
            raise OSError(errno.EROFS, "Read-only file system", str(src), None, str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(triage_mod.os, "link", read_only)
    triage = Triage(project)
    try:
        with pytest.raises(TriageError, match="read-only.*nothing was moved") as err:
            triage.reject(IMG)
        assert "10_zkx_mira" in str(err.value)
    finally:
        triage.close()
    monkeypatch.setattr(triage_mod.os, "link", real)
    assert [f for f in _files(project) if not f.startswith("dataset/rejected")] == files  # the image came back
    assert not list((project.dataset_dir / "rejected").rglob("*.*"))
