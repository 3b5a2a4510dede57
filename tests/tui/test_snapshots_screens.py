"""Every screen at 80x24, pinned as SVG snapshots (update with --snapshot-update): each tab's views,
each dialog, the zooms. What a person sees in the README tour, with the cut-offs a new user met fixed:
the header's inbox count at 10 and more, long and promoted file names, matrix score labels, the
Matrix footer's keys, the zoom's scores, `resumable from N`, the Train form's preset.

The projects are written by the tests with fixed times, images and scores, so each picture depends
on nothing but the code.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

from lorawb.core.project import Project
from lorawb.train import monitor
from lorawb.train.events import EventWriter
from lorawb.train.runfolder import RunFolder
from lorawb.tui.app import LorawbApp
from tests.tui.conftest import T0, build_project, freeze, make_image, settle

SIZE = (80, 24)


def _run(project: Project, name: str, lr: str, stopped_at: int, images: int) -> RunFolder:
    """A run folder as a stopped run leaves it: steps, samples, checkpoints, kohya metadata."""
    from tests.tui.test_compare_dataset import fake_lora

    run = RunFolder(project.runs_dir / name).create()
    run.config.write_text(f'[train]\nmax_steps = 200\nlearning_rate = {lr}\n[sample]\nprompts = ["zkx_mira, forest"]\n')
    w = EventWriter(run.events)
    w.status("running", max_steps=200, step=0, time=T0)
    for s in range(1, stopped_at + 1):
        loss = 0.2 * math.exp(-s / 60) + 0.05 + 0.03 * math.sin(s * 1.7)
        w.step(s, s // 25, loss, 5e-4, 2.5, time=T0 + s / 2.5)
        if s % 50 == 0:
            for i, ctx in enumerate(("forest", "beach")):
                rel = f"samples/{s:06d}-{i}.png"
                make_image(run.path / rel, ctx, i, size=(32, 32))
                w.sample(s, f"zkx_mira, {ctx}", rel, index=i, seed=i, time=T0 + s / 2.5)
            ckpt = f"checkpoints/zkx_mira-{s:06d}.safetensors"
            fake_lora(run.path / ckpt, images, {"zkx_mira": images, "forest": 3})
            w.checkpoint(step=s, path=ckpt, epoch=s // 25, resumable=True, time=T0 + s / 2.5)
    w.status("stopped", step=stopped_at, max_steps=200, time=T0 + stopped_at / 2.5)
    w.close()
    run.log.write_text("".join(f"12:00:{i:02d} INFO step {i * 10}: loss falling\n" for i in range(12)))
    return run


@pytest.fixture
def toured(tmp_path) -> Project:
    """The small project after some touring: 12 inbox images (promoted cells among them), two runs."""
    project = build_project(tmp_path / "snap")
    for i in range(9):
        make_image(project.inbox_dir / f"tour-matrix-3fa2c1d9e{i}.png", "beach", i)
        (project.inbox_dir / f"tour-matrix-3fa2c1d9e{i}.txt").write_text("zkx_mira, beach, watercolor\n")
    for i in range(3):
        make_image(project.inbox_dir / f"cand_{i:02d}.png", "bar", i, size=(48, 48))
    _run(project, "20261125-100000-zkx_mira", "5e-4", 150, 12)
    _run(project, "20261125-110000-zkx_mira", "5e-4", 100, 14)
    freeze(project.root)
    return Project.load(project.root)


def _app(project: Project) -> LorawbApp:
    return LorawbApp(project, images="halfcell")


async def _ready(pilot) -> None:
    """Workers done, near-duplicate hashing done (it starts after a pause), no blinking cursors."""
    import time

    from textual.widgets import Input, TextArea

    from lorawb.tui.tabs.triage import TriageTab

    await settle(pilot)
    triage = pilot.app.query_one(TriageTab)
    end = time.monotonic() + 30
    while triage.dedupe is None and triage.all_items:
        assert time.monotonic() < end, "near-duplicates never hashed"
        await pilot.pause(0.05)
    await settle(pilot)
    for screen in pilot.app.screen_stack:
        for widget in [*screen.query(TextArea), *screen.query(Input)]:
            widget.cursor_blink = False  # a blinking cursor would make the picture depend on the moment
    await pilot.pause()


def keys(*presses: str, wait_train: bool = False):
    async def run_before(pilot):
        await _ready(pilot)
        for key in presses:
            if key == "3" and wait_train:
                await pilot.press("3")
                for _ in range(60):
                    await pilot.pause(0.05)
                    if pilot.app.query_one("TrainTab").view is not None:
                        break
                continue
            await pilot.press(key)
            await settle(pilot)
        await _ready(pilot)

    return run_before


@pytest.fixture(autouse=True)
def _same_everywhere(monkeypatch):
    """The same picture with or without a GPU, in any time zone."""
    import time

    monkeypatch.setattr(monitor, "_nvml_state", {"failed": True})
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- Triage -------------------------------------------------------------------------------------------


def test_triage_inbox_of_promoted_cells_80x24(snap_compare, toured):
    """The header keeps `inbox 12`; promoted cells keep the end of their names, so they stay apart."""
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("i"))


def test_triage_zoom_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("z"))


def test_triage_keep_folder_question_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("i", "y"))


def test_triage_tag_filter_question_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("t"))


def test_auto_tag_dialog_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("a"))


# --- Captions -----------------------------------------------------------------------------------------


def test_captions_editing_80x24(snap_compare, toured):
    """The editor says it is editing; the hint says how keys behave."""
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("2", "e", "end", ",", "space", "w", "a"))


def test_captions_tags_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("2", "t"))


def test_captions_composition_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("2", "c"))


def test_captions_bulk_dialog_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("2", "b"))


def test_captions_filter_dialog_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("2", "slash"))


def test_captions_history_80x24(snap_compare, toured):
    async def run_before(pilot):
        await keys("2", "e", "end", ",", "space", "r", "escape")(pilot)
        from lorawb.core import state

        conn = state.connect(toured.state_dir)
        with conn:
            conn.execute("UPDATE caption_ops SET created = ?", (T0,))  # the entry's time, as the picture shows it
        conn.close()
        await pilot.press("H")
        await _ready(pilot)

    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=run_before)


def test_unsaved_edit_question_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("2", "e", "end", "x", "ctrl+q"))


def test_caption_conflict_80x24(snap_compare, toured):
    async def run_before(pilot):
        await keys("2", "e", "end", "x")(pilot)
        cap = toured.dataset_dir / "10_zkx_mira" / "img_000.txt"
        cap.write_text("zkx_mira, changed elsewhere\n")
        os.utime(cap, (T0 + 10, T0 + 10))
        await pilot.press("ctrl+s")
        await _ready(pilot)

    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=run_before)


# --- Train --------------------------------------------------------------------------------------------


def test_train_stopped_run_says_where_it_resumes_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("3", "m", wait_train=True))


def test_train_samples_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("3", "p", wait_train=True))


def test_train_checkpoints_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("3", "c", wait_train=True))


def test_train_compare_80x24(snap_compare, toured):
    """The dataset rows and a legend that tells two runs of one name apart."""

    async def run_before(pilot):
        await keys("3", "v", wait_train=True)(pilot)
        tab = pilot.app.query_one("TrainTab")
        chart = pilot.app.query_one("#chart-compare")
        for _ in range(200):
            rows = pilot.app.query_one("#compare-diff").row_count
            loaded = tab.comparison is not None and {c.steps for c in tab.comparison.curves} == {100, 150}
            if loaded and rows == 6 and len(chart.lines) == 2:  # both runs read to their last step
                break
            await pilot.pause(0.05)
        await _ready(pilot)

    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=run_before)


def test_train_new_run_form_80x24(snap_compare, toured):
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("3", "n", wait_train=True))


# --- Matrix -------------------------------------------------------------------------------------------


def test_matrix_grid_with_scores_80x24(snap_compare, drawn_matrix):
    """Scores under each cell by whole words; the footer has the tour's keys."""
    assert snap_compare(_app(drawn_matrix), terminal_size=SIZE, run_before=keys("4"))


def test_matrix_list_80x24(snap_compare, drawn_matrix):
    assert snap_compare(_app(drawn_matrix), terminal_size=SIZE, run_before=keys("4", "m"))


def test_matrix_compare_80x24(snap_compare, drawn_matrix):
    assert snap_compare(_app(drawn_matrix), terminal_size=SIZE, run_before=keys("4", "v"))


def test_matrix_cell_zoom_80x24(snap_compare, drawn_matrix):
    """The place and the scores above the fold, each label said once."""
    assert snap_compare(_app(drawn_matrix), terminal_size=SIZE, run_before=keys("4", "enter"))


def test_new_matrix_dialog_80x24(snap_compare, tmp_path, trained_project):
    """Its image count, breakdown and estimate, and a visible way to create it."""
    root = tmp_path / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    run = next((root / "runs").iterdir())
    run = run.rename(root / "runs" / "20261125-100000-mx")
    with (run / "events.jsonl").open("a") as fh:
        for t in (100.0, 101.0):
            fh.write(json.dumps({"type": "sample", "step": 2, "prompt": "x", "path": "s.png", "time": t}) + "\n")
    freeze(root)

    async def run_before(pilot):
        await keys("4", "n")(pilot)
        for _ in range(100):
            if "images" in str(pilot.app.screen.query_one("#nm-preview").render()):
                break
            await pilot.pause(0.05)
        await _ready(pilot)

    assert snap_compare(_app(Project.load(root)), terminal_size=SIZE, run_before=run_before)


def test_command_palette_80x24(snap_compare, toured):
    """Each command with its key."""
    assert snap_compare(_app(toured), terminal_size=SIZE, run_before=keys("ctrl+p", *"Matrix"))
