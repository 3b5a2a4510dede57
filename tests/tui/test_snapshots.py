"""What a person sees at 80x24, pinned as SVG snapshots (update with --snapshot-update)."""

from __future__ import annotations

import os

from lorawb.tui.app import LorawbApp
from tests.tui.conftest import build_project, settle


def test_matrix_tab_empty_80x24(snap_compare, tmp_path):
    project = build_project(tmp_path / "snap")
    os.utime(project.root, ns=(0, 0))

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)

    assert snap_compare(LorawbApp(project), terminal_size=(80, 24), run_before=run_before)


def _frozen(tmp_path):
    project = build_project(tmp_path / "snap")
    os.utime(project.root, ns=(0, 0))
    return project


def test_triage_tab_80x24(snap_compare, tmp_path):
    """The grid, the facts and a footer whose labels fit (^q Quit included)."""
    import time

    from lorawb.tui.tabs.triage import TriageTab

    async def run_before(pilot):
        await settle(pilot)
        end = time.monotonic() + 20
        while not pilot.app.query_one(TriageTab).groups:  # near-duplicate hashing starts after a pause
            assert time.monotonic() < end, "near-duplicates never found"
            await pilot.pause(0.1)
        await settle(pilot)

    assert snap_compare(LorawbApp(_frozen(tmp_path)), terminal_size=(80, 24), run_before=run_before)


def test_captions_editor_modified_80x24(snap_compare, tmp_path):
    """A long file name never hides the editor's `modified` marker."""
    project = _frozen(tmp_path)
    folder = project.dataset_dir / "10_zkx_mira"
    long = folder / "a_very_long_file_name_for_an_image_from_a_camera_0001.png"
    (folder / "img_000.png").rename(long)
    (folder / "img_000.txt").rename(long.with_suffix(".txt"))

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        from textual.widgets import TextArea

        for area in pilot.app.query(TextArea):
            area.cursor_blink = False  # a blinking cursor would make the picture depend on the moment
        await pilot.press("e", "end", "x")
        await settle(pilot)

    assert snap_compare(LorawbApp(project), terminal_size=(80, 24), run_before=run_before)


def _long_run(project):
    import math

    from lorawb.train.events import EventWriter
    from lorawb.train.runfolder import RunFolder

    run = RunFolder(project.runs_dir / "20261125-100000-zkx_mira-with-a-long-run-name").create()
    run.config.write_text("[train]\nmax_steps = 3000\nlearning_rate = 1e-4\n")
    w = EventWriter(run.events)
    w.status("finished", time=1000.0)
    for s in range(1, 101):
        w.step(s, s // 50, 0.1 + 0.01 * math.sin(s), 1e-4, 2.5, time=1000.0 + s / 2.5)
    w.status("stopped", time=1040.0)
    w.close()
    run.log.write_text(
        "".join(
            f"10:00:{i:02d} INFO step {i}: a long log line about what happened at this step [x], wrapped at 80\n"
            for i in range(30)
        )
    )
    return run


def _train_view(key):
    async def run_before(pilot):
        await pilot.press("3")
        for _ in range(40):
            await pilot.pause(0.05)
            if pilot.app.query_one("TrainTab").view is not None:
                break
        await pilot.press(key)
        await settle(pilot)
        # The runs table measures its columns when the app is idle: on a loaded machine the
        # picture could otherwise be taken between adding the row and measuring it.
        from lorawb.tui.widgets.train_runs import RunTable

        table = pilot.app.query_one(RunTable)
        for _ in range(600):  # up to 30 s: a loaded CI machine measures late
            run_col = table.columns.get("run")
            if table.row_count and run_col is not None and run_col.content_width > len("run"):
                break
            await pilot.pause(0.05)
        await pilot.pause()

    return run_before


def test_train_runs_table_80x24(snap_compare, tmp_path, monkeypatch):
    """A long run id is shortened so every column (ETA included) fits; the header has the full id."""
    from lorawb.train import monitor

    monkeypatch.setattr(monitor, "_nvml_state", {"failed": True})
    project = _frozen(tmp_path)
    _long_run(project)
    assert snap_compare(LorawbApp(project), terminal_size=(80, 24), run_before=_train_view("r"))


def test_train_log_80x24(snap_compare, tmp_path, monkeypatch):
    """Log lines wrap at 80 columns instead of being cut, brackets kept."""
    from lorawb.train import monitor

    monkeypatch.setattr(monitor, "_nvml_state", {"failed": True})
    project = _frozen(tmp_path)
    _long_run(project)
    assert snap_compare(LorawbApp(project), terminal_size=(80, 24), run_before=_train_view("l"))
