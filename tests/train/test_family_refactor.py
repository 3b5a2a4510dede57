"""The family modules changed nothing for SD1/SDXL: the LoRA files a run writes have the same keys,
shapes, dtypes, metadata and values as before the refactor (tests/train/data/lora_reference.json
was written by the code before it, from these same runs: LORAWB_WRITE_REFERENCE=1 rewrites it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.train.conftest import make_project

REFERENCE = Path(__file__).parent / "data" / "lora_reference.json"
# Fields that say when, where or with which version a file was written: not what it holds.
VOLATILE = {"ss_training_started_at", "ss_training_finished_at", "modelspec.date", "lorawb_version"}
CASES = {
    "sd1_te_conv": ("tiny_sd1", ["network.train_text_encoder=true", "network.conv=true", "network.rank=4"]),
    "sd1_dora_ff": ("tiny_sd1", ["network.dora=true", "network.ff=true", "train.min_snr_gamma=5"]),
    "sdxl_te": ("tiny_sdxl", ["network.train_text_encoder=true", "network.rank=4"]),
}


def manifest(path: Path) -> dict:
    from safetensors.torch import load_file

    from lorawb.train.kohya import read_metadata

    tensors = load_file(str(path))
    meta = {k: v for k, v in read_metadata(path).items() if k not in VOLATILE}
    meta["ss_sd_model_name"] = "(model)"  # the fixture folder's name differs between sessions
    shown = {}
    for key in sorted(tensors):
        t = tensors[key].float()
        shown[key] = {
            "shape": list(tensors[key].shape),
            "dtype": str(tensors[key].dtype),
            "sum": round(float(t.sum()), 4),
            "abs": round(float(t.abs().sum()), 4),
        }
    return {"tensors": shown, "metadata": meta}


def train_once(root: Path, overrides: list[str]) -> Path:
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config
    from lorawb.train.process import create_run
    from lorawb.train.trainer import train

    project = Project.load(root)
    run = create_run(project, resolve_config(project, overrides=["train.max_steps=2", *overrides]))
    train(run)
    return sorted(run.checkpoints.glob("*.safetensors"))[-1]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_sd_lora_files_are_as_before(case, request, tmp_path):
    model_fixture, overrides = CASES[case]
    root = make_project(tmp_path / case, request.getfixturevalue(model_fixture), n_images=4)
    got = manifest(train_once(root, overrides))
    if os.environ.get("LORAWB_WRITE_REFERENCE") == "1":
        ref = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
        ref[case] = got
        REFERENCE.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    want = json.loads(REFERENCE.read_text())[case]
    assert list(got["tensors"]) == list(want["tensors"])  # the same keys, in the same order
    for key, w in want["tensors"].items():
        g = got["tensors"][key]
        assert (g["shape"], g["dtype"]) == (w["shape"], w["dtype"]), key
        assert g["sum"] == pytest.approx(w["sum"], rel=1e-3, abs=1e-3), key
        assert g["abs"] == pytest.approx(w["abs"], rel=1e-3, abs=1e-3), key
    assert got["metadata"] == want["metadata"]
