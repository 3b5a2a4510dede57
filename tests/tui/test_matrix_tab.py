"""The Matrix tab driven like a person: n makes a matrix, g draws it (a real detached process),
the cells appear in the grid, y rates one, p promotes it to inbox/, and a snapshot at 80x24."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from lorawb.core.project import Project
from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.matrix_grid import MatrixGrid
from lorawb.tui.widgets.matrix_modals import NewMatrixScreen
from tests.tui.conftest import settle

pytestmark = pytest.mark.slow


async def wait_until(pilot, cond, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def replace_text(pilot, text: str) -> None:
    await pilot.press("end", "ctrl+u", *text)


async def test_create_generate_rate_and_promote_from_the_tab(tmp_path, trained_project):
    root = tmp_path / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    app = LorawbApp(Project.load(root), images="halfcell")
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert "No matrices yet" in str(app.query_one("#matrix-head").render())
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, NewMatrixScreen)
        await pilot.press(*"tabmx")
        await pilot.press("tab", "tab")  # the run (the only one), then the weights
        await replace_text(pilot, "0, 1")
        await pilot.press("tab")
        await replace_text(pilot, "0")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: (root / "matrices/tabmx/matrix.toml").is_file(), 20, "the spec")
        await settle(pilot)
        grid = app.query_one(MatrixGrid)
        await wait_until(pilot, lambda: len(grid.items) == 2, 20, "the grid")  # weight 0 and 1 on the first page
        assert all(not it.path for it in grid.items)  # nothing drawn yet: placeholders
        await pilot.press("g")
        await wait_until(pilot, lambda: len(list((root / "matrices/tabmx/cells").glob("*.png"))) == 3, 120, "3 cells")
        await wait_until(pilot, lambda: all(it.path for it in grid.items), 20, "the cells on screen")
        await wait_until(pilot, lambda: "finished" in str(app.query_one("#matrix-head").render()), 20, "finished")
        await pilot.press("right")  # weight 1: a cell with the LoRA
        await pilot.press("y")
        ratings = root / "matrices/tabmx/ratings.json"
        await wait_until(pilot, lambda: ratings.is_file() and "good" in ratings.read_text(), 10, "the rating")
        await pilot.press("p")
        await wait_until(pilot, lambda: any((root / "inbox").glob("tabmx-*.png")), 20, "the promoted cell")
        await settle(pilot)
        promoted = next((root / "inbox").glob("tabmx-*.png"))
        assert promoted.with_suffix(".txt").read_text() == "zkx_mira"
        rec = json.loads(ratings.read_text())
        cell = promoted.stem.removeprefix("tabmx-")
        assert rec["ratings"][cell] == "good" and rec["promoted"][cell] == f"inbox/{promoted.name}"
        await wait_until(pilot, lambda: grid.items[1].state == "promoted", 10, "the promoted mark")
