"""A bulk caption write killed mid-way (SIGKILL) leaves every caption either old or new: never empty, never half.

The process is killed by the write's own test hook (LORAWB_TEST_KILL_AT=rename:K: SIGKILL
after K renames), so the kill lands exactly between two renames, after every temp file was
written and synced: the moment where a writer that renamed before syncing, or wrote in place,
would leave empty or half files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lorawb.core import fsutil
from lorawb.core.dataset import scan_dataset
from lorawb.core.project import Project, init_project

N = 120
ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Project:
    project = init_project(tmp_path / "p", trigger="zkx_mira")
    for k, folder in enumerate(["10_zkx_mira", "5_zkx_mira outfits"]):
        d = project.dataset_dir / folder
        d.mkdir()
        for i in range(N // 2):
            (d / f"img_{i:03d}.png").write_bytes(b"")  # nothing here decodes images
            # Long enough that half a file could be told apart; CRLF in one folder.
            text = f"zkx_mira, tag {i}, " + ", ".join(f"filler {j}" for j in range(30)) + "\n"
            (d / f"img_{i:03d}.txt").write_bytes(text.replace("\n", "\r\n" if k else "\n").encode())
    return Project.load(project.root)


def _captions(project: Project) -> dict[str, bytes]:
    return {p.relative_to(project.root).as_posix(): p.read_bytes() for p in sorted(project.dataset_dir.rglob("*.txt"))}


SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lorawb.core import caption_history as ch, caption_ops as co
    from lorawb.core.project import Project
    project = Project.load(Path(sys.argv[1]))
    if sys.argv[2] == "apply":
        cs = co.build_changeset(project, co.AddTag("masterpiece", at="after-trigger", trigger="zkx_mira"))
        ch.apply_changeset(project, cs)
    else:
        ch.undo(project)
    """
)


def _run(project: Project, what: str, kill_after: int | None) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LORAWB_TEST_KILL_AT", None)
    if kill_after is not None:
        env["LORAWB_TEST_KILL_AT"] = f"rename:{kill_after}"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(project.root), what], env=env, timeout=120)
    return proc.returncode


def _check(before: dict[str, bytes], after: dict[str, bytes], now: dict[str, bytes], expect_after: int) -> None:
    assert now.keys() == before.keys()
    mixed = {
        rel: ("old" if data == before[rel] else "new" if data == after[rel] else "other") for rel, data in now.items()
    }
    assert "other" not in mixed.values(), [rel for rel, v in mixed.items() if v == "other"][:5]
    assert list(mixed.values()).count("new") == expect_after


@pytest.mark.parametrize("kill_after", [0, 1, 47])
def test_bulk_add_killed_mid_way_leaves_each_caption_old_or_new(tmp_path, kill_after):
    project = _project(tmp_path)
    before = _captions(project)
    # What the finished edit writes, made in a copy of the project by the same code, not killed.
    twin = _project(tmp_path / "twin")
    assert _run(twin, "apply", None) == 0
    after = _captions(twin)
    assert all(after[rel] != before[rel] for rel in before)

    assert _run(project, "apply", kill_after) == -signal.SIGKILL
    _check(before, after, _captions(project), kill_after)
    # The leftovers of the killed write are hidden files: a scan sees the same images and captions.
    seen = scan_dataset(project.dataset_dir)
    found = seen.images + seen.broken  # the images are empty files (broken): only their captions matter here
    assert len(found) == N and sum(f.has_caption for f in found) == N and not seen.orphan_captions


def test_undo_killed_mid_way_leaves_each_caption_old_or_new(tmp_path):
    project = _project(tmp_path)
    before = _captions(project)
    assert _run(project, "apply", None) == 0
    after = _captions(project)
    assert _run(project, "undo", 30) == -signal.SIGKILL
    # Undo writes the old text back: 30 captions are old again (the "new" side of this write), the rest still new.
    _check(after, before, _captions(project), 30)


def test_write_many_leaves_no_old_versions_behind(tmp_path):
    """The kept old versions (hard links that spare the renames freeing blocks) are removed afterwards."""
    files = [tmp_path / f"f{i}.txt" for i in range(50)]
    for f in files:
        f.write_text("old")
    fsutil.atomic_write_many([(f, b"new") for f in files])
    assert fsutil.wait_for_cleanup(timeout=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
    assert all(f.read_text() == "new" for f in files) and all(f.stat().st_nlink == 1 for f in files)


def test_write_many_syncs_by_fsync_where_asked(tmp_path, monkeypatch):
    """LORAWB_FSYNC_EACH=1 (or no syncfs) takes the fsync-per-file path; the result is the same."""
    monkeypatch.setenv("LORAWB_FSYNC_EACH", "1")
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(fsutil.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    files = [tmp_path / "a" / f"f{i}.txt" for i in range(20)]
    fsutil.atomic_write_many([(f, b"x") for f in files])
    assert all(f.read_bytes() == b"x" for f in files)
    assert len(synced) >= 20 + 2  # every temp file, the folder before and after the renames
