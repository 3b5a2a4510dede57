"""The Matrix tab at 80x24: the New matrix dialog shows its size and time before anything is drawn and
fits the screen with a way to submit; stopping a matrix says "stopping…" at once."""

from __future__ import annotations

import fcntl
import json
import shutil
import time

from textual.widgets import Button, Static

from lorawb.core.project import Project
from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.matrix_modals import NewMatrixScreen
from tests.matrix.conftest import write_matrix
from tests.tui.conftest import settle


async def wait_until(pilot, cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def copy(trained_project, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    run = next((root / "runs").iterdir())
    with (run / "events.jsonl").open("a") as fh:  # two samples a second apart: a measured speed
        for t in (100.0, 101.0):
            fh.write(json.dumps({"type": "sample", "step": 2, "prompt": "x", "path": "s.png", "time": t}) + "\n")
    return root


async def test_new_matrix_dialog_fits_80x24_with_its_size_and_time(tmp_path, trained_project):
    root = copy(trained_project, tmp_path)
    app = LorawbApp(Project.load(root))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, NewMatrixScreen)
        await wait_until(pilot, lambda: "images" in str(screen.query_one("#nm-preview", Static).render()))
        preview = str(screen.query_one("#nm-preview", Static).render())
        assert "grid position" in preview and "estimated " in preview  # before anything is drawn
        for widget in (screen.query_one("#nm-preview"), screen.query_one("#nm-create", Button)):
            region = widget.region
            assert region.height > 0 and region.y >= 0 and region.bottom <= 24, widget
        assert "enter" in str(screen.query_one("#nm-create", Button).label)
        await pilot.press(*"mx1", "enter")
        await wait_until(pilot, lambda: (root / "matrices" / "mx1" / "matrix.toml").is_file())


async def test_stopping_a_matrix_says_so_at_once(tmp_path, trained_project):
    root = copy(trained_project, tmp_path)
    folder = write_matrix(root, "small")
    (folder / "events.jsonl").write_text(json.dumps({"type": "status", "state": "running", "time": 1.0}) + "\n")
    with open(folder / "run.lock", "a+") as lock:  # a matrix process holds its lock while it runs
        fcntl.flock(lock, fcntl.LOCK_EX)
        app = LorawbApp(Project.load(root))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("4")
            head = app.query_one("#matrix-head", Static)
            await wait_until(pilot, lambda: "running" in str(head.render()))
            await pilot.press("s")
            assert "stopping…" in str(head.render())  # before the stop request is even written
            await wait_until(pilot, lambda: (folder / "stop.request").exists())
            app.query_one("MatrixTab").refresh_matrices()
            await settle(pilot)
            assert "stopping…" in str(head.render())  # and read back from the folder


async def test_v_puts_the_same_spec_over_another_run_beside_it(tmp_path, trained_project):
    from textual.widgets import DataTable

    from tests.matrix.test_new_fit import second_run

    root = copy(trained_project, tmp_path)
    write_matrix(root, "small")
    first, second = second_run(root)
    app = LorawbApp(Project.load(root))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        head = str(app.query_one("#matrix-compare-head", Static).render())
        assert f"A small2 run {second}" in head and f"B small run {first}" in head
        table = app.query_one("#matrix-compare", DataTable)
        assert [str(c.label) for c in table.columns.values()][:3] == ["checkpoint", "weight", "identity A"]
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["base", "step 1", "step 2"]
