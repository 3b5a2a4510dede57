"""The matrix and reg images with a Flux.2 Klein, Z-Image, Qwen-Image or SD3.5 base: the run's checkpoints as
LoRAs (read by lorawb's own loader, handed to the family's pipeline), guidance as an axis (true CFG in Klein,
Z-Image and Qwen-Image; SD3.5's CFG), weight 0 the base exactly. (Flux.1 and Chroma: test_flux_matrix.py.)"""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops

from lorawb.core.project import Project
from lorawb.matrix import reggen
from lorawb.matrix.folder import MatrixFolder, read_rows
from lorawb.matrix.runner import run_matrix
from lorawb.train.config import resolve_config
from lorawb.train.process import create_run, launch
from tests.train.conftest import make_project

pytestmark = pytest.mark.slow

SPEC = """
[matrix]
run = "{run}"
prompt = "{{trigger}}, {{context}}"
negative = "blurry"
steps = 2
batch = 4

[axes]
checkpoint = [1, 2]
weight = [0, 1]
cfg = [1.0, 3.5]
context = ["forest"]
seed = [0]
"""


@pytest.mark.parametrize("family", ["flux2_klein", "zimage", "qwenimage", "sd3"])
def test_a_matrix_and_reg_images(family, request, tmp_path):
    root = make_project(tmp_path / "p", request.getfixturevalue(f"tiny_{family}"), n_images=3)
    text = (root / "lorawb.toml").read_text()
    (root / "lorawb.toml").write_text(text + f"\n[{family}]\nmax_sequence_length = 16\n")
    project = Project.load(root)
    cfg = resolve_config(project, overrides=["train.max_steps=2", "save.every_n_steps=1", "train.learning_rate=5e-2"])
    run = create_run(project, cfg, "q3")
    launch(run, detach=False)
    folder = root / "matrices" / "g"
    folder.mkdir(parents=True)
    (folder / "matrix.toml").write_text(SPEC.format(run=run.id))
    assert run_matrix(MatrixFolder(folder)) == "finished"
    rows = list(read_rows(folder / "cells.jsonl", "cell").values())
    assert len(rows) == 6  # 2 checkpoints x weight 1 x 2 guidance values, + weight 0 (the base) at each guidance

    def image(weight: float, cfg: float, step: int | None = None) -> Image.Image:
        def fits(p: dict) -> bool:
            lora = (p["lora"] or {}).get("path", "")
            return (
                p["weight"] == weight and p["cfg"] == cfg and (step is None or lora.endswith(f"{step:06d}.safetensors"))
            )

        (row,) = [r for r in rows if fits(r["params"])]
        return Image.open(folder / row["file"]).convert("RGB")

    def differ(a: Image.Image, b: Image.Image) -> bool:
        return ImageChops.difference(a, b).getbbox() is not None

    assert differ(image(weight=1.0, cfg=3.5, step=2), image(weight=0.0, cfg=3.5))  # the LoRA draws differently
    assert differ(image(weight=0.0, cfg=1.0), image(weight=0.0, cfg=3.5))  # guidance is a real axis

    plan = reggen.plan_reg(project, "woman", count=2, steps=2)
    assert reggen.start_reg(project, plan, detach=False) == "finished"
    drawn = sorted(p.name for p in (project.reg_dir / "1_woman").glob("*.png"))
    assert drawn == ["reg_00000.png", "reg_00001.png"]
