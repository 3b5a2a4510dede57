"""The file watcher against changes made by other threads: coalescing, settling, rename-over saves,
own writes, lorawb.toml, runs and matrices, the polling fallback. Waits are conditions with deadlines."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from lorawb.core import watch as W
from lorawb.core.fsutil import atomic_write_text
from lorawb.core.index import ProjectIndex
from lorawb.core.watch import ProjectWatcher, WatchBatch
from tests.core.problem_files import TRIGGER, encoded, noise

KEY = "dataset/10_zkx_mira"


class Recorder:
    """Collects batches from the watcher thread; ``wait`` blocks until a predicate over them holds."""

    def __init__(self) -> None:
        self.batches: list[WatchBatch] = []
        self.cond = threading.Condition()

    def __call__(self, batch: WatchBatch) -> None:
        with self.cond:
            self.batches.append(batch)
            self.cond.notify_all()

    def wait(self, pred, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"condition not met in {timeout} s; batches: {self.batches}")
                self.cond.wait(min(left, 0.05))  # also re-check conditions on the watcher itself

    def outside(self) -> set[str]:
        return {k for b in self.batches for k in b.outside}

    def captions(self) -> set[str]:
        return {k for b in self.batches for k in b.outside_captions}


@pytest.fixture
def watched(small_project):
    index = ProjectIndex(small_project)
    index.refresh()
    rec = Recorder()
    watcher = ProjectWatcher(small_project, index, rec)
    watcher.start()
    yield small_project, index, watcher, rec
    watcher.stop()
    index.close()


def test_new_image_and_caption_from_another_thread(watched):
    project, index, watcher, rec = watched
    assert watcher.mode == "inotify"
    d = project.dataset_dir / "10_zkx_mira"

    def other_program():
        Image.new("RGB", (80, 64), (1, 2, 3)).save(d / "new.png")
        (d / "new.txt").write_text(f"{TRIGGER}, new", encoding="utf-8")

    threading.Thread(target=other_program).start()
    rec.wait(lambda: f"{KEY}/new.png" in rec.outside() and index.get(f"{KEY}/new.png").caption_rel)
    f = index.get(f"{KEY}/new.png")
    assert (f.width, f.height, f.caption_text) == (80, 64, f"{TRIGGER}, new")


def test_a_burst_is_coalesced_into_few_batches(watched):
    project, index, watcher, rec = watched
    d = project.dataset_dir / "burst"
    d.mkdir()
    png = encoded(Image.new("RGB", (16, 16)), "PNG")
    for i in range(200):
        (d / f"b{i:03d}.png").write_bytes(png)
        (d / f"b{i:03d}.txt").write_text(f"{TRIGGER}, b{i}", encoding="utf-8")
    rec.wait(lambda: sum(len(b.delta.added) for b in rec.batches) >= 200)
    assert len([b for b in rec.batches if b.delta]) <= 3
    assert len(index.snapshot().images("dataset")) == 205


def test_rename_over_save_is_a_modification(watched):
    project, index, watcher, rec = watched
    cap = project.dataset_dir / "10_zkx_mira" / "img_1.txt"
    # VS Code / emacs: write a temp file beside it, rename it over the caption.
    tmp = cap.with_name("img_1.txt.tmp~")
    tmp.write_text(f"{TRIGGER}, saved by rename", encoding="utf-8")
    os.replace(tmp, cap)
    rec.wait(lambda: f"{KEY}/img_1.png" in rec.captions())
    assert index.get(f"{KEY}/img_1.png").caption_text == f"{TRIGGER}, saved by rename"
    assert not any(b.delta.removed for b in rec.batches)


def test_vim_style_save_is_a_modification_not_a_delete(watched):
    project, index, watcher, rec = watched
    cap = project.dataset_dir / "10_zkx_mira" / "img_2.txt"
    backup = cap.with_name("img_2.txt~")
    os.rename(cap, backup)  # vim: keep the original as the backup...
    cap.write_text(f"{TRIGGER}, saved by vim", encoding="utf-8")  # ...write the new file...
    backup.unlink()  # ...and drop the backup
    rec.wait(lambda: f"{KEY}/img_2.png" in rec.captions())
    assert index.get(f"{KEY}/img_2.png").caption_text == f"{TRIGGER}, saved by vim"
    assert index.snapshot().scan_result().orphan_captions == []


def test_an_image_being_written_is_not_indexed_until_complete(watched):
    project, index, watcher, rec = watched
    path = project.dataset_dir / "10_zkx_mira" / "growing.png"
    data = encoded(noise((128, 128), seed=9), "PNG")
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 3])
        fh.flush()
        start = watcher.cycles
        rec.wait(lambda: watcher.cycles >= start + 6 and os.fspath(path) in watcher._pending, timeout=10)
        assert index.get(f"{KEY}/growing.png") is None  # half a file: held back, not shown as broken
        fh.write(data[len(data) // 3 :])
    rec.wait(lambda: f"{KEY}/growing.png" in rec.outside())
    f = index.get(f"{KEY}/growing.png")
    assert f.error is None and (f.width, f.height) == (128, 128)
    assert all(f"{KEY}/growing.png" not in b.delta.changed for b in rec.batches)  # added once, complete


def test_own_writes_update_the_index_but_are_not_reported_as_outside(watched):
    project, index, watcher, rec = watched
    cap = project.dataset_dir / "10_zkx_mira" / "img_3.txt"
    atomic_write_text(cap, f"{TRIGGER}, written by lorawb")  # the app's own save path
    marker = project.dataset_dir / "10_zkx_mira" / "img_4.txt"
    marker.write_text(f"{TRIGGER}, by someone else", encoding="utf-8")
    rec.wait(lambda: f"{KEY}/img_4.png" in rec.outside())
    rec.wait(lambda: any(f"{KEY}/img_3.png" in b.delta.keys for b in rec.batches))  # indexed, and told
    assert index.get(f"{KEY}/img_3.png").caption_text == f"{TRIGGER}, written by lorawb"
    assert f"{KEY}/img_3.png" not in rec.outside()


def test_move_into_rejected_by_another_tool(watched):
    project, index, watcher, rec = watched
    src = project.dataset_dir / "10_zkx_mira"
    dst = project.dataset_dir / "rejected" / "10_zkx_mira"
    dst.mkdir(parents=True)
    for name in ("img_0.png", "img_0.txt"):
        os.rename(src / name, dst / name)
    new = "dataset/rejected/10_zkx_mira/img_0.png"
    rec.wait(lambda: new in rec.outside() and index.get(f"{KEY}/img_0.png") is None)
    assert index.get(new).rejected
    # A move, not a delete and a new file: the facts came along (whatever order inotify told it in).
    assert any(b.delta.moved.get(f"{KEY}/img_0.png") == new for b in rec.batches)


def test_lorawb_toml_edits_valid_and_invalid(watched):
    project, index, watcher, rec = watched
    text = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(text.replace("min_resolution = 256", "min_resolution = 300"), encoding="utf-8")
    rec.wait(lambda: any(b.config and b.config.project for b in rec.batches))
    good = next(b.config for b in rec.batches if b.config)
    assert good.project.config.project.min_resolution == 300 and good.error is None
    project.config_path.write_text(text.replace("min_resolution = 256", 'min_resolution = "many"'), encoding="utf-8")
    rec.wait(lambda: any(b.config and b.config.error for b in rec.batches))
    bad = next(b.config for b in rec.batches if b.config and b.config.error)
    assert bad.project is None
    assert "lorawb.toml:" in str(bad.error) and "project.min_resolution" in str(bad.error)


def test_new_run_folder_and_matrix_cells(watched):
    project, index, watcher, rec = watched
    (project.runs_dir / "20261201-120000-new").mkdir()
    cells = project.matrices_dir / "m1" / "cells"
    cells.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(cells / "c0.png")
    rec.wait(lambda: any("20261201-120000-new" in b.runs for b in rec.batches))
    rec.wait(lambda: any("m1" in b.matrices for b in rec.batches))
    assert all(not b.delta for b in rec.batches if b.runs or b.matrices)  # not images of the dataset


def test_inotify_limit_falls_back_to_polling_and_says_how_to_raise_it(small_project, monkeypatch):
    import watchdog.observers.inotify as ino

    class Full(ino.InotifyObserver):
        def schedule(self, *a, **k):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(ino, "InotifyObserver", Full)
    index = ProjectIndex(small_project)
    index.refresh()
    rec = Recorder()
    watcher = ProjectWatcher(small_project, index, rec, poll_s=0.1)
    watcher.start()
    try:
        assert watcher.mode == "polling"
        assert "inotify watch limit reached" in watcher.problem
        assert "sudo sysctl fs.inotify.max_user_watches=" in watcher.problem
        (small_project.dataset_dir / "10_zkx_mira" / "img_0.txt").write_text("polled", encoding="utf-8")
        rec.wait(lambda: f"{KEY}/img_0.png" in rec.captions())
    finally:
        watcher.stop()
        index.close()


def test_stop_joins_every_thread(small_project):
    from tests.conftest import watcher_threads

    before = set(watcher_threads())
    watcher = ProjectWatcher(small_project, ProjectIndex(small_project), lambda b: None)
    watcher.start()
    assert set(watcher_threads()) - before
    watcher.stop()
    assert not (set(watcher_threads()) - before)
    assert not watcher.running


def test_watcher_limits_are_sane():
    assert W.QUIET_S < W.SETTLE_S < W.MAX_WAIT_S <= 1.0  # an outside change is indexed well within a second
    assert Path(W.__file__).read_text(encoding="utf-8").count("import textual") == 0
