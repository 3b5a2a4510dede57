"""Drawing a matrix with the tiny model: records, PNG text, skip-existing, exact regeneration, LoRA files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lorawb.errors import ModelError
from lorawb.matrix.folder import MatrixFolder, read_rows, read_status
from lorawb.matrix.lorafile import check_family, read_lora, run_checkpoints
from lorawb.matrix.plan import plan_matrix
from lorawb.matrix.runner import regenerate, repair_rows, run_matrix
from lorawb.train.runfolder import list_runs


def test_every_cell_is_recorded_with_all_its_parameters(drawn_project):
    folder = MatrixFolder(drawn_project / "matrices" / "small")
    plan = plan_matrix(folder)
    assert folder.done_ids() == set(plan.layout.cells) and len(plan.layout.cells) == 18
    rows = read_rows(folder.cells_log, "cell")
    assert set(rows) == set(plan.layout.cells)
    row = next(r for r in rows.values() if r["params"]["lora"] and r["control"] is None)
    p = row["params"]
    assert p["lora"]["path"].startswith("runs/") and p["lora"]["label"] in ("step 1", "step 2")
    assert {k: p[k] for k in ("steps", "cfg", "width", "height", "sampler")} == {
        "steps": 2,
        "cfg": 1.5,
        "width": 32,
        "height": 32,
        "sampler": "ddim",
    }
    assert row["slots"]["context"] in ("forest", "bar") and row["plain_prompt"] == row["slots"]["context"]
    assert row["id"] in row["batch"] and row["model"]["path"]
    with Image.open(folder.cell_png(row["id"])) as im:
        text = dict(im.text)
    assert json.loads(text["lorawb"])["params"] == p  # the PNG carries the whole record
    assert text["parameters"].startswith(p["prompt"] + " <lora:")
    assert "Steps: 2, Sampler: DDIM, CFG scale: 1.5, Seed:" in text["parameters"]
    st = read_status(folder)
    assert st.state == "finished" and st.total == 18 and st.seconds_per_image


def test_a_rerun_draws_nothing_and_a_lost_row_comes_back_from_the_png(lora_project):
    folder = MatrixFolder(lora_project / "matrices" / "small")
    before = {p.name: p.stat().st_mtime_ns for p in folder.cells_dir.glob("*.png")}
    lines = folder.cells_log.read_text().splitlines()
    folder.cells_log.write_text("\n".join(lines[:-3]) + "\n")  # killed between PNG and row
    assert run_matrix(folder) == "finished"
    assert {p.name: p.stat().st_mtime_ns for p in folder.cells_dir.glob("*.png")} == before
    assert len(read_rows(folder.cells_log, "cell")) == 18
    assert repair_rows(folder) == 0


def test_a_cell_regenerates_exactly_from_its_record(drawn_project):
    folder = MatrixFolder(drawn_project / "matrices" / "small")
    rows = read_rows(folder.cells_log, "cell")
    cid = next(k for k, r in rows.items() if r["params"]["lora"] and len(r["batch"]) > 1)
    with Image.open(folder.cell_png(cid)) as im:
        stored = np.asarray(im.convert("RGB"), dtype=np.int16)
    again = np.asarray(regenerate(folder, cid), dtype=np.int16)
    assert np.array_equal(again, stored)  # its batch redrawn: bit for bit
    alone = np.asarray(regenerate(folder, cid, alone=True), dtype=np.int16)
    assert np.abs(alone - stored).max() <= 2  # alone: float summation order only


def test_lora_files_are_read_and_checked(trained_project, tmp_path):
    run = list_runs(trained_project / "runs")[-1]
    ckpts = run_checkpoints(run)
    assert [c.step for c in ckpts] == [1, 2]
    info = read_lora(ckpts[-1].path)
    assert (info.naming, info.family, info.step, info.trigger) == ("kohya", "sd1", 2, "zkx_mira")
    with pytest.raises(ModelError, match="made for SD1"):
        check_family(info, "sdxl")
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not really")
    with pytest.raises(ModelError, match="pickle"):
        read_lora(bad)
    junk = tmp_path / "junk.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"model.weight": torch.zeros(2)}, str(junk))
    with pytest.raises(ModelError, match="no LoRA weights"):
        read_lora(junk)


def test_a_diffusers_named_lora_draws_the_same_as_its_kohya_file(trained_project, tmp_path):
    """The same weights under peft/diffusers names (unet.<module>.lora_A.weight) load and draw identically."""
    from safetensors.torch import load_file, save_file

    from lorawb.matrix.generate import Generator, ImageRequest
    from lorawb.train.config import load_run_config

    run = list_runs(trained_project / "runs")[-1]
    kohya = run_checkpoints(run)[-1].path
    gen = Generator.load(load_run_config(run.config).model)
    names = {n.replace(".", "_"): n for n, _ in gen.model.unet.named_modules()}
    tensors = {}
    for key, t in load_file(str(kohya)).items():
        layer, rest = key.split(".", 1)
        module = names[layer.removeprefix("lora_unet_")]
        if rest == "lora_down.weight":
            tensors[f"unet.{module}.lora_A.weight"] = t
        elif rest == "lora_up.weight":
            tensors[f"unet.{module}.lora_B.weight"] = t
    peft_file = tmp_path / "peft.safetensors"
    save_file(tensors, str(peft_file))
    info = read_lora(peft_file)
    assert info.naming == "diffusers" and info.layers == len({k.rsplit(".", 2)[0] for k in tensors})
    draw = [ImageRequest("zkx_mira, forest", s, width=32, height=32, steps=2, cfg=1.5) for s in (0, 1)]

    def images(path):
        return [
            np.asarray(i)
            for i in gen.run_batch([ImageRequest(**{**r.__dict__, "loras": ((str(path), 1.0),)}) for r in draw])
        ]

    base = [np.asarray(i) for i in gen.run_batch(draw)]
    with_kohya, with_peft = images(kohya), images(peft_file)
    assert any(np.abs(a.astype(int) - b.astype(int)).max() > 0 for a, b in zip(base, with_kohya, strict=True))
    for a, b in zip(with_kohya, with_peft, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # the base model again, after LoRAs were merged in and taken out: exactly the first images
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(base, gen.run_batch(draw), strict=True))
    gen.merge = False  # peft's own unmerged layers draw the same (up to float order)
    for a, b in zip(with_kohya, images(kohya), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
