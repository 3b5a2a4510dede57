"""Promotion to the inbox (captions as a change set), ratings, and the labelled contact sheet."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lorawb.core.caption_history import history, undo
from lorawb.core.project import Project
from lorawb.errors import RunError
from lorawb.matrix.estimate import check_size
from lorawb.matrix.folder import MatrixFolder, Ratings, rate
from lorawb.matrix.plan import plan_matrix
from lorawb.matrix.promote import plan_promotion, promote
from lorawb.matrix.report import export_sheets, load_report
from lorawb.matrix.sheet import render_sheet


def test_promoted_cells_land_in_the_inbox_with_trigger_first_captions(lora_project):
    project = Project.load(lora_project)
    folder = MatrixFolder(lora_project / "matrices" / "small")
    cells = plan_matrix(folder, project).layout.cells
    lora_cells = [c for c in cells.values() if not c.params.is_base and not c.is_control][:2]
    control = next(c for c in cells.values() if c.is_control)
    plan = plan_promotion(project, folder, [*lora_cells, control], "zkx_mira")
    assert len(plan.copies) == 2 and plan.skipped[0][0] == control.id  # a control is not the character
    assert "+zkx_mira, " in plan.changes.diff()  # previewable like any caption edit
    assert not project.inbox_dir.joinpath(f"small-{lora_cells[0].id}.png").exists()  # planning writes nothing
    result = promote(project, folder, [*lora_cells, control], "zkx_mira")
    assert [p.name for p in result.images] == [f"small-{c.id}.png" for c in lora_cells]
    for c, img in zip(lora_cells, result.images, strict=True):
        assert img.read_bytes() == folder.cell_png(c.id).read_bytes()  # parameters kept in the PNG text
        assert img.with_suffix(".txt").read_text() == f"zkx_mira, {dict(c.slots)['context']}"
    assert Ratings.load(folder).promoted[lora_cells[0].id] == f"inbox/small-{lora_cells[0].id}.png"
    assert history(project)[0].label.startswith("promote 2 matrix cells from small")
    again = promote(project, folder, lora_cells[:1], "zkx_mira")
    assert again.images == [] and "already in the inbox" in again.skipped[0][1]
    undo(project)  # the captions come off like any caption edit; the images stay for triage
    assert not result.images[0].with_suffix(".txt").exists() and result.images[0].exists()


def test_ratings_are_kept_in_the_matrix_folder(lora_project):
    folder = MatrixFolder(lora_project / "matrices" / "small")
    ids = sorted(folder.done_ids())[:3]
    rate(folder, ids[:2], "good")
    rate(folder, ids[2:], "bad")
    rate(folder, ids[1:2], None)
    assert Ratings.load(folder).ratings == {ids[0]: "good", ids[2]: "bad"}
    assert load_report(folder).ratings.ratings[ids[0]] == "good"


def dark_pixels(sheet, box) -> int:
    a = np.asarray(sheet.image.crop(box).convert("L"))
    return int((a < 128).sum())


def test_the_contact_sheet_is_labelled_on_its_margins(drawn_project, tmp_path):
    report = load_report(MatrixFolder(drawn_project / "matrices" / "small"))
    grid = report.grid()
    assert grid.view.cols == ("weight",) and grid.view.pages == ("checkpoint",)
    sheet = render_sheet(report.folder, grid, 1, title=report.title(), cell_text={c: "id .50" for c in report.done})
    texts = [t for t, _ in sheet.labels]
    assert texts[0].startswith("matrix small · run ") and "prompt: {trigger}, {context}" in texts
    assert "page 2/2: step 2" in texts and "weight 0" in texts and "weight 1" in texts
    assert {"forest", "seed 0", "control 1: red outfit, beach"} <= set(texts)
    for text, box in sheet.labels:
        assert dark_pixels(sheet, box) > 0 or text.startswith("scores"), text  # drawn, not just listed
    assert sheet.cell_size == (128, 128)  # 32 px cells enlarged so the labels stay readable
    paths = export_sheets(report)
    assert [p.name for p in paths] == ["grid-step-1.png", "grid-step-2.png"]
    with Image.open(paths[1]) as im:
        assert im.width == sheet.image.width  # same layout; no score line under the cells (none measured)


def test_a_sheet_past_the_size_limit_is_downscaled_and_keeps_its_labels(drawn_project):
    report = load_report(MatrixFolder(drawn_project / "matrices" / "small"))
    grid = report.grid()
    big = render_sheet(report.folder, grid, 0, title=report.title())
    limit = big.image.width * big.image.height // 4
    small = render_sheet(report.folder, grid, 0, title=report.title(), max_pixels=limit)
    assert small.image.width * small.image.height <= limit and small.scale < 1
    assert small.cell_size[0] < big.cell_size[0]
    assert {t for t, _ in small.labels} >= {"weight 0", "weight 1", "forest"}


def test_an_absurd_matrix_is_refused_before_drawing_unless_yes():
    with pytest.raises(RunError, match="would draw 5000 images") as info:
        check_size(5000, 2000, None)
    assert "--yes" in info.value.hint
    check_size(5000, 2000, None, yes=True)
    check_size(10, 2000, None)


def test_the_estimate_comes_from_a_measured_speed(lora_project):
    import json
    import shutil

    from lorawb.matrix.estimate import describe_estimate, measured_speed
    from lorawb.train.runfolder import list_runs
    from tests.matrix.conftest import write_matrix

    project = Project.load(lora_project)
    small = MatrixFolder(lora_project / "matrices" / "small")
    fresh = MatrixFolder(write_matrix(lora_project, "fresh", steps=4))
    plan = plan_matrix(fresh, project)
    speed = measured_speed(project, fresh, plan.layout, plan.ctx.run)
    assert speed is not None and speed.source == "matrix small"  # same base model, 2 steps: scaled to 4
    per = [json.loads(x)["seconds_per_image"] for x in small.cells_log.read_text().splitlines() if x.strip()]
    assert speed.seconds_per_image == pytest.approx(sorted(per)[len(per) // 2] * 2, rel=0.5)
    shutil.rmtree(small.path)
    assert measured_speed(project, fresh, plan.layout, plan.ctx.run) is None
    assert "not measured yet" in describe_estimate(18, None)
    run = list_runs(lora_project / "runs")[-1]
    with run.events.open("a") as fh:  # the run's samples: 2 s apart, at the run's 2 sample steps
        for i, t in enumerate((100.0, 102.0, 104.0)):
            fh.write(json.dumps({"type": "sample", "step": 2, "prompt": "p", "path": f"s{i}.png", "time": t}) + "\n")
    speed = measured_speed(project, fresh, plan.layout, plan.ctx.run)
    assert speed is not None and speed.seconds_per_image == pytest.approx(2.0 * 4 / 2)
    assert "samples" in speed.source
    assert describe_estimate(18, speed).startswith("estimated 1m12s for 18 images (4.00 s each")
