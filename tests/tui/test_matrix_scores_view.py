"""The Matrix tab's scores view at 80×24: identity beside the dataset's ceiling, the spreads across seeds
and prompts, PRES beside leak, diversity with the base model's and a collapsed row, the recommendation
saying its runner-up is within the spread, and what measured each score (Pilot test and snapshot)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from lorawb.core.project import Project
from lorawb.matrix.scores import encode_vec
from tests.tui.conftest import T0, freeze
from tests.tui.test_snapshots_screens import SIZE, _app, _same_everywhere, keys  # noqa: F401

SPEC = """
[matrix]
prompt = "{trigger}, {context}"
controls = ["red hair, green outfit, beach"]
steps = 20
cfg = 1.5

[axes]
checkpoint = ["loras/v1-step100.safetensors", "loras/v1-step200.safetensors"]
weight = [0, 1]
context = ["forest", "spaceship", "bar", "beach"]
seed = [0, 1]
"""


@pytest.fixture
def scored(tmp_path) -> Project:
    """The sample with a matrix over two LoRA files, every cell 'drawn' and given known scores: step 100
    and step 200 within one seed spread of each other, step 200 collapsed (the same image for each seed)."""
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.plan import plan_matrix
    from lorawb.toyworld import check

    root = check.copy_sample_project(tmp_path / "toy")
    model = root / "models" / "toyworld-sd"
    if model.is_symlink():
        target = model.resolve()
        model.unlink()
        shutil.copytree(target, model)
    from safetensors.numpy import save_file

    (root / "loras").mkdir()
    for name in ("v1-step100", "v1-step200"):
        save_file(
            {"lora_unet_x.lora_down.weight": np.zeros((1, 1), np.float32)}, root / "loras" / f"{name}.safetensors"
        )
    project = Project.load(root)
    folder = MatrixFolder(project.matrices_dir / "scored").create()
    folder.spec.write_text(SPEC)
    plan = plan_matrix(folder, project)
    rng = np.random.default_rng(0)
    cells, scores = [], []
    for n, cell in enumerate(plan.layout.cells.values()):
        Image.new("RGB", (32, 32), (40 + 10 * (n % 8), 120, 50)).save(folder.cell_png(cell.id))
        cells.append({"type": "cell", "id": cell.id, "params": cell.params.as_dict(), "device": "cpu", "time": T0})
        p = cell.params
        step = "" if p.lora is None else p.lora.path
        seed, ctx = p.seed, p.prompt.rsplit(", ", 1)[-1]
        vec = rng.standard_normal(8) if "step200" not in step else np.ones(8) + 0.01 * seed
        row = {"type": "score", "id": cell.id, "scorer": "CLIP (toy-clip)", "ceiling": 0.8, "time": T0}
        row["vec"] = encode_vec(vec)
        if cell.is_control:
            row.update(prior=0.30 if p.lora is None else 0.52, prompt_following=0.27)
            if p.lora is not None:
                row["leak"] = 0.10
        else:
            base = 0.40 if p.lora is None else (0.69 if "step100" in step else 0.72)
            ctx_shift = {"forest": 0.04, "spaceship": -0.02, "bar": 0.0, "beach": -0.02}[ctx]
            row.update(
                identity=base + ctx_shift + (0.03 if seed else -0.03),
                prompt_following=0.29,
                memorisation=0.75,
                nearest="dataset/10_zkx_mira/mira_01_forest.png",
            )
        scores.append(row)
    folder.cells_log.write_text("".join(json.dumps(r) + "\n" for r in cells))
    folder.scores_log.write_text("".join(json.dumps(r) + "\n" for r in scores))
    folder.events.write_text(json.dumps({"type": "status", "state": "finished", "time": T0}) + "\n")
    (root / "lorawb.toml").write_text(
        (root / "lorawb.toml").read_text().replace("[matrix]", '[matrix]\nembedder = "models/toy-clip"')
    )
    emb = root / "models" / "toy-clip"
    emb.mkdir(parents=True)
    (emb / "lorawb_calibration.json").write_text(
        json.dumps({"scores": {"identity": {"rho": 0.8}, "leak": {"rho": 0.31}, "prompt_following": {"rho": 0.7}}})
    )
    freeze(project.root)
    shutil.rmtree(project.root / ".lorawb", ignore_errors=True)
    return Project.load(project.root)


async def test_the_scores_view_shows_ceiling_pres_diversity_and_spreads(scored):
    from textual.widgets import DataTable, Static

    app = _app(scored)
    async with app.run_test(size=SIZE) as pilot:
        await keys("4", "t")(pilot)
        table = app.query_one("#matrix-scores", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        head = str(app.query_one("#matrix-scorer", Static).render())
        rec = str(app.query_one("#matrix-rec", Static).render())
    by = {r[0].removeprefix("★ "): r for r in rows}
    assert by["base"][2] == "0.40" and by["base"][3] == "50%" and by["base"][6] == "0.30"  # PRES of the base
    step200 = next(r for k, r in by.items() if "step200" in k and r[1] == "1")
    assert (
        step200[0].startswith("★") and step200[3] == "90%" and step200[4] == ".04/.03"
    )  # sd of the two seeds' nets, of the four contexts
    assert step200[5] == "0.10" and step200[6] == "0.52" and step200[7].endswith("⚠")  # collapsed
    assert "dataset ceiling 0.80" in head and "by the CLIP (toy-clip)" in head
    assert "identity 0.72 · dataset 0.80 (90%)" in rec
    assert "within the spread" in rec and "does not tell them apart" in rec
    assert "leak follows the truth weakly (ρ 0.31" in rec and "collapsed: " in rec


def test_matrix_scores_view_80x24(snap_compare, scored):
    assert snap_compare(_app(scored), terminal_size=SIZE, run_before=keys("4", "t"))
