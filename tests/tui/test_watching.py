"""The app in step with changes made outside it, by another thread and another process, while it runs headless.

Each test changes files the way another program would (plain writes, renames, a subprocess) and waits,
with a deadline, until each tab shows the change. Never a fixed sleep.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from PIL import Image
from textual.widgets import DataTable, Static

from lorawb.tui.app import LorawbApp
from lorawb.tui.tabs.captions import CaptionsTab
from lorawb.tui.tabs.triage import TriageTab
from lorawb.tui.widgets.caption_editor import CaptionEditor
from lorawb.tui.widgets.caption_list import CaptionList
from lorawb.tui.widgets.caption_modals import ConflictScreen
from lorawb.tui.widgets.train_runs import RunTable
from tests.conftest import watcher_threads
from tests.tui.conftest import settle

F = "dataset/10_zkx_mira"


async def until(pilot, pred, timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until ``pred()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or pred}")
        await pilot.pause(0.02)


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def triage(app) -> TriageTab:
    return app.query_one(TriageTab)


def rename_over(path: Path, text: str) -> None:
    """An editor's save (VS Code, emacs): write a temp file beside it, rename it over the original."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


async def test_a_burst_of_1000_new_images_with_captions(sample_like_project, tmp_path):
    project = sample_like_project
    staging = project.root / "staging"  # same file system: a sync tool renames finished files into place
    staging.mkdir()
    png = (project.dataset_dir / f"{F[8:]}/img_000.png").read_bytes()
    for i in range(1000):
        (staging / f"new_{i:04d}.png").write_bytes(png)
        (staging / f"new_{i:04d}.txt").write_text(f"zkx_mira, burst tag, n{i % 7}", encoding="utf-8")
    app = LorawbApp(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert len(triage(app).all_items) == 12
        target = project.dataset_dir / "10_burst"
        target.mkdir()

        def sync_tool():
            for name in sorted(os.listdir(staging)):
                os.replace(staging / name, target / name)

        threading.Thread(target=sync_tool).start()
        await until(pilot, lambda: len(triage(app).shown) == 1012, timeout=30, what="1,012 images in Triage")
        assert "1012 images · 1012 captioned" in app.sub_title
        # Coalesced: 2,000 file events reach the tabs as one refresh (a few when the machine stalls mid-burst).
        assert 1 <= app.watch_batches <= 3
        await pilot.press("2")
        await until(pilot, lambda: app.query_one(CaptionList).row_count == 1012, what="1,012 in Captions")
        tags = app.query_one("#captions-tag-table", DataTable)
        await pilot.press("t")
        rows = {str(tags.get_row_at(i)[2]): str(tags.get_row_at(i)[0]) for i in range(tags.row_count)}
        assert rows["burst tag"] == "1000"


async def test_the_open_caption_changed_outside_with_and_without_unsaved_edits(sample_like_project):
    project = sample_like_project
    path = project.dataset_dir / "10_zkx_mira/img_000.txt"
    app = LorawbApp(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        tab = app.query_one(CaptionsTab)
        editor = app.query_one(CaptionEditor)
        assert tab.current == f"{F}/img_000.png"

        # No unsaved edit: reloaded at once, with a notice.
        rename_over(path, "zkx_mira, saved in vim\n")
        await until(pilot, lambda: editor.text == "zkx_mira, saved in vim", what="editor reloaded")
        assert any("img_000.png: caption changed on disk, reloaded" in n for n in notes(app))
        assert not isinstance(app.screen, ConflictScreen)

        # An unsaved edit: keep mine / take theirs / compare, and neither text is lost.
        await pilot.press("e", "end", *", mine")
        rename_over(path, "zkx_mira, theirs\n")
        await until(pilot, lambda: isinstance(app.screen, ConflictScreen), what="the conflict dialog")
        assert editor.text == "zkx_mira, saved in vim, mine"  # still mine, on screen
        await pilot.press("c")
        text = str(app.screen.query_one("#conflict-text", Static).render())
        assert "-zkx_mira, theirs" in text and "+zkx_mira, saved in vim, mine" in text
        await pilot.press("m")
        await settle(pilot)
        assert path.read_text(encoding="utf-8") == "zkx_mira, saved in vim, mine\n"
        app.query_one(CaptionList).focus()
        await pilot.press("u")  # theirs was not lost: undo brings it back
        await settle(pilot)
        assert path.read_text(encoding="utf-8") == "zkx_mira, theirs\n"

        # Our own save is not reported back as a change made outside.
        before = len(notes(app))
        await pilot.press("e", "end", *", own")
        await pilot.press("ctrl+s")
        await settle(pilot)
        marker = project.dataset_dir / "10_zkx_mira/img_005.txt"
        rename_over(marker, "zkx_mira, marker\n")  # once the watcher shows this, it has seen our save too
        await until(pilot, lambda: app.index.get(f"{F}/img_005.png").caption_text == "zkx_mira, marker\n")
        await settle(pilot)
        assert path.read_text(encoding="utf-8") == "zkx_mira, theirs, own\n"
        assert not any("img_000.png" in n and "changed on disk" in n for n in notes(app)[before:])
        assert not isinstance(app.screen, ConflictScreen) and not tab.conflicted


async def test_selected_image_deleted_by_another_process_and_one_moved_to_rejected(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        tab = triage(app)
        tab.grid.cursor = 3
        await pilot.pause()
        assert app.current_image == f"{F}/img_003.png"
        await pilot.press("2")
        await settle(pilot)
        captions = app.query_one(CaptionsTab)
        assert captions.current == f"{F}/img_003.png"
        code = "import os, sys; [os.remove(p) for p in sys.argv[1:]]"
        img = project.dataset_dir / "10_zkx_mira/img_003.png"
        subprocess.run([sys.executable, "-c", code, str(img), str(img.with_suffix(".txt"))], check=True)
        await until(pilot, lambda: len(tab.shown) == 11, what="the deleted image gone from the grid")
        assert tab.grid.current.key == f"{F}/img_004.png"  # its neighbour takes the selection
        await until(pilot, lambda: captions.current == f"{F}/img_004.png", what="Captions on the neighbour")
        assert app.current_image == f"{F}/img_004.png" and app.query_one(CaptionList).row_count == 11
        assert "11 images" in app.sub_title

        # The open image is moved into rejected/ by another tool while its caption has an unsaved edit.
        await pilot.press("e", "end", *", unsaved")
        rejected = project.dataset_dir / "rejected" / "10_zkx_mira"

        def another_tool():
            rejected.mkdir(parents=True)
            for ext in (".png", ".txt"):
                os.rename(project.dataset_dir / f"10_zkx_mira/img_004{ext}", rejected / f"img_004{ext}")

        threading.Thread(target=another_tool).start()
        await until(pilot, lambda: len(tab.shown) == 10, what="the rejected image out of the working view")
        item = next(i for i in tab.all_items if i.rel == "dataset/rejected/10_zkx_mira/img_004.png")
        assert item.state == "reject"
        assert "✗1" in str(app.query_one("#triage-status", Static).render())
        await until(pilot, lambda: captions.current == f"{F}/img_005.png", what="Captions moved on")
        assert not isinstance(app.screen, ConflictScreen)  # a move is not a conflict
        # The edit was not lost: it was saved to the caption where the image went.
        assert (rejected / "img_004.txt").read_text(encoding="utf-8").endswith(", unsaved\n")


async def test_lorawb_toml_edits_runs_and_matrices_appear(sample_like_project):
    project = sample_like_project
    good = project.config_path.read_text(encoding="utf-8")
    app = LorawbApp(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        project.config_path.write_text(good.replace("min_resolution = 256", 'min_resolution = "many"'), "utf-8")
        await until(pilot, lambda: any("last good settings" in n for n in notes(app)), what="the config error")
        error = next(n for n in notes(app) if "last good settings" in n)
        assert "lorawb.toml:" in error and "project.min_resolution" in error
        assert app.project.config.project.min_resolution == 256  # still in force
        project.config_path.write_text(good.replace("min_resolution = 256", "min_resolution = 100"), "utf-8")
        await until(pilot, lambda: app.project.config.project.min_resolution == 100, what="the reload")
        assert any("lorawb.toml changed on disk: reloaded" in n for n in notes(app))

        await pilot.press("3")
        await settle(pilot)
        run = project.runs_dir / "20261201-090000-outside"
        run.mkdir()
        (run / "events.jsonl").write_text('{"type": "status", "state": "running", "time": 1000}\n', "utf-8")
        table = app.query_one(RunTable)
        await until(pilot, lambda: "20261201-090000-outside" in table.rows_by_id, what="the new run listed")

        await pilot.press("4")
        await settle(pilot)
        m = project.matrices_dir / "outside"
        (m / "cells").mkdir(parents=True)
        (m / "matrix.toml").write_text("[axes]\nweight = [0.5, 1.0]\n", "utf-8")
        Image.new("RGB", (8, 8)).save(m / "cells" / "c0.png")
        matrices = app.query_one("#matrix-list", DataTable)

        def cells_of(matrix_id: str) -> str | None:
            if matrix_id not in {str(k.value) for k in matrices.rows}:
                return None
            return str(matrices.get_row(matrix_id)[3])  # matrix, run, state, cells

        await until(pilot, lambda: (cells_of("outside") or "").startswith("1/"), what="the new matrix listed")
        Image.new("RGB", (8, 8)).save(m / "cells" / "c1.png")
        await until(pilot, lambda: (cells_of("outside") or "").startswith("2/"), what="a new cell counted")


async def test_no_inotify_falls_back_to_polling_and_says_so(sample_like_project, monkeypatch):
    import watchdog.observers.inotify as ino

    class NoWatches(ino.InotifyObserver):
        def schedule(self, *a, **k):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(ino, "InotifyObserver", NoWatches)
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        status = app.query_one("#watch-status", Static)
        assert status.display and app.watcher.mode == "polling"
        line = str(status.render())
        assert "polling" in line and "sudo sysctl fs.inotify.max_user_watches=" in line
        (project.dataset_dir / "10_zkx_mira/img_001.txt").unlink()
        await until(pilot, lambda: "11 captioned" in app.sub_title, what="a change seen by polling")
        assert app.watcher.running and watcher_threads()
    assert app.watcher is None and not watcher_threads()  # the watcher stopped with the app
