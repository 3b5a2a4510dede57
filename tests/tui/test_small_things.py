"""Small things a new user met: the palette shows each command's key, Triage calls a byte-identical copy
an exact duplicate (as the doctor does), the Matrices list names each matrix's run, oldest first."""

from __future__ import annotations

import os
import shutil
import time

from textual.widgets import DataTable, Static

from lorawb.core.project import Project
from lorawb.tui.app import LorawbApp
from lorawb.tui.tabs.triage import TriageTab
from tests.matrix.conftest import write_matrix
from tests.tui.conftest import build_project, settle
from tests.tui.test_matrix_new_stop import copy

OURS = ("Triage:", "Captions:", "Train:", "Matrix:", "Go to ", "Cycle image mode", "Next theme", "Rescan")


async def test_the_palette_shows_each_commands_key(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen) if c.title.startswith(OURS)]
        assert len(titles) > 40
        assert [t for t in titles if not (t.endswith(")") and " (" in t)] == []
        for title in ("Matrix: new matrix (n)", "Go to Train (3)", "Captions: undo (u)", "Triage: keep (y)"):
            assert title in titles


async def test_triage_calls_a_byte_identical_copy_an_exact_duplicate(tmp_path):
    project = build_project(tmp_path / "proj")
    folder = project.dataset_dir / "10_zkx_mira"
    shutil.copy(folder / "img_000.png", folder / "img_100.png")
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = app.query_one(TriageTab)
        end = time.monotonic() + 30
        while not tab.groups:  # near-duplicate hashing starts after a pause
            assert time.monotonic() < end, "duplicates never found"
            await pilot.pause(0.1)
        await settle(pilot)
        app.select_image("dataset/10_zkx_mira/img_000.png")
        await settle(pilot)
        facts = str(app.query_one("#triage-facts", Static).render())
        group = next(g for g in tab.groups if "dataset/10_zkx_mira/img_000.png" in g)
        near = len(group) - 2  # the others in its group, the byte-identical copy left out
        assert "1 exact duplicate (same bytes)" in facts
        assert (f"{near} near-duplicate" in facts) if near else ("near-duplicate" not in facts)


async def test_the_matrices_list_names_the_run_oldest_first(tmp_path, trained_project):
    root = copy(trained_project, tmp_path)
    newer, older = write_matrix(root, "a-newer"), write_matrix(root, "b-older")
    os.utime(older / "matrix.toml", (1_000_000, 1_000_000))
    os.utime(newer / "matrix.toml", (2_000_000, 2_000_000))
    (older / "ratings.json").write_text("{}")  # touching the older one's folder does not move it
    run = next((root / "runs").iterdir()).name
    app = LorawbApp(Project.load(root))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)
        table = app.query_one("#matrix-list", DataTable)
        assert [str(c.label) for c in table.columns.values()][:3] == ["matrix", "run", "state"]
        rows = [[str(x) for x in table.get_row_at(i)] for i in range(table.row_count)]
        assert [r[0] for r in rows] == ["b-older", "a-newer"]
        assert rows[0][1] == run.split("-", 1)[1]  # the run, its date left out: time and name


async def test_an_image_of_the_models_own_size_says_so_when_flagged_low_res(sample_project):
    """The sample's min_resolution (64) is above what its model draws (32): a promoted cell is 32 px."""
    app = LorawbApp(Project.load(sample_project))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        app.select_image("inbox/cand_06.png")  # 32x32, like a matrix cell of the toy model
        await settle(pilot)
        facts = " ".join(str(app.query_one("#triage-facts", Static).render()).split())
        assert "low-res: under 64 px, but the model's own size (32 px)" in facts
