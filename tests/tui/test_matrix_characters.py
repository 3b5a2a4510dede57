"""The Matrix tab's scores of a matrix with a character axis and a loras axis: the per-character table
and the zoom's LoRA line name every LoRA."""

from __future__ import annotations

import shutil

from textual.widgets import Static

from lorawb.core.project import Project
from lorawb.tui.app import LorawbApp
from tests.matrix.test_characters_axes import CHARS, DRAW
from tests.tui.conftest import settle


async def test_the_scores_show_each_character_and_pair_per_set_of_loras(tmp_path, trained_project):
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.lorafile import run_checkpoints
    from lorawb.matrix.runner import run_matrix
    from lorawb.train.runfolder import list_runs

    root = tmp_path / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    with open(root / "lorawb.toml", "a", encoding="utf-8") as fh:
        fh.write(CHARS)
    ck = [c.path.relative_to(root).as_posix() for c in run_checkpoints(list_runs(root / "runs")[-1])]
    folder = root / "matrices" / "joint"
    folder.mkdir(parents=True)
    (folder / "matrix.toml").write_text(DRAW.format(a=ck[0], b=ck[1]), encoding="utf-8")
    assert run_matrix(MatrixFolder(folder)) == "finished"
    app = LorawbApp(Project.load(root), images="halfcell")
    async with app.run_test(size=(100, 36)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        rec = str(app.query_one("#matrix-rec", Static).render())
        assert "per character" in rec
        lines = rec.splitlines()
        head = next(i for i, ln in enumerate(lines) if ln.startswith("LoRA"))
        rows = [ln.split() for ln in lines[head + 1 :]]
        assert [(r[-5], r[-4]) for r in rows] == [("mira", "1"), ("mira+tom", "1")] * 2
        assert rows[0][:3] == ["zkx_mira-000001", "+", "zkx_mira-000002@0.5"] and rows[2][0] == "zkx_mira-000002"
        assert all(r[-3:] == ["-", "-", "-"] for r in rows)  # no scorer here: nothing made up
