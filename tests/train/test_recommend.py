"""The model's recommended resolution and bucket step: init, the form, the doctor and the trainer follow or warn."""

from __future__ import annotations

import json

import pytest

from lorawb.cli import main
from lorawb.core.buckets import one_bucket_warning
from lorawb.core.project import Project
from lorawb.train.doctor import doctor
from lorawb.train.events import read_events
from lorawb.train.modelpath import Recommendation, recommend, recommended_bucket_step, resolution_warning
from tests.train.conftest import make_project


def test_recommendation_from_lorawb_model_json_else_unet_size_times_vae_scale(tiny_sd1, tmp_path):
    rec = recommend(tiny_sd1)
    assert (rec.resolution, rec.bucket_step, rec.source) == (32, 8, "lorawb_model.json")
    # a diffusers folder without lorawb's file: the UNet's sample_size x the VAE's scale factor
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_sd1, bare)
    (bare / "lorawb_model.json").unlink()
    unet = json.loads((bare / "unet" / "config.json").read_text())
    vae = json.loads((bare / "vae" / "config.json").read_text())
    scale = 2 ** (len(vae["block_out_channels"]) - 1)
    rec = recommend(bare)
    assert rec.resolution == unet["sample_size"] * scale == 32
    assert rec.source == f"unet sample_size {unet['sample_size']} x VAE scale {scale}"
    assert recommend(tmp_path / "nothing") is None


def test_bucket_step_and_the_warning_thresholds():
    assert [recommended_bucket_step(r) for r in (512, 768, 1024)] == [64, 64, 64]
    assert recommended_bucket_step(32, vae_scale=2) == 8
    rec = Recommendation(32, 8, "lorawb_model.json")
    assert resolution_warning(48, rec) is None and resolution_warning(32, rec) is None
    text = resolution_warning(512, rec)
    assert "512 is 16x the model's 32" in text and "256x the pixels" in text
    assert "project.resolution = 32" in text and "dataset.bucket_step = 8" in text
    assert "draws poorly" in resolution_warning(8, Recommendation(512, 64, "x"))


def test_one_bucket_is_reported_only_for_different_shapes():
    assert one_bucket_warning([(32, 32), (40, 32), (32, 48)], [(32, 32)] * 3).startswith("all 3 images land in one")
    assert one_bucket_warning([(32, 32), (64, 64)], [(32, 32)] * 2) is None  # all square: one bucket is right
    assert one_bucket_warning([(32, 32), (40, 32)], [(32, 32), (40, 24)]) is None


def test_init_with_a_model_takes_its_resolution_and_bucket_step(tiny_sd1, tmp_path, capsys):
    assert main(["init", str(tmp_path / "p"), "--model", str(tiny_sd1)]) == 0
    out = capsys.readouterr().out
    assert "resolution 32, bucket step 8 (lorawb_model.json)" in out
    project = Project.load(tmp_path / "p")
    assert project.config.project.resolution == 32 and project.config.project.min_resolution == 16
    assert project.config.dataset["bucket_step"] == 8
    assert project.resolve(project.config.model["path"]) == tiny_sd1
    assert "# the model's recommendation (lorawb_model.json)" in project.config_path.read_text()
    assert main(["init", str(tmp_path / "q"), "--model", str(tmp_path / "none")]) == 2
    assert "not a base model" in capsys.readouterr().err and not (tmp_path / "q").exists()


def test_doctor_warns_of_a_far_resolution_and_of_one_bucket(tiny_sd1, tmp_path, capsys):
    root = make_project(tmp_path / "p", tiny_sd1, n_images=4)  # 32x32, 40x32, 32x48, 36x36
    project = Project.load(root)
    assert doctor(project).training_warnings == []
    project.save_setting("project.resolution", 512)
    report = doctor(Project.load(root))
    assert any("512 is 16x the model's 32" in w for w in report.training_warnings)
    project = Project.load(root)
    project.save_setting("project.resolution", 32)
    project.save_setting("dataset.bucket_step", 32)
    assert main(["doctor", str(root)]) == 1  # 32 px images are below min_resolution: problems
    assert "all 4 images land in one bucket, 32x32 (1:1)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_far_from_the_models_resolution_warns_with_an_estimated_time_per_step(tiny_sd1, tmp_path, capsys):
    root = make_project(tmp_path / "p", tiny_sd1, n_images=4)
    sets = ["--set", "train.max_steps=1", "--set", "dataset.resolution=64", "--set", "dataset.bucket_step=64"]
    assert main(["train", str(root), *sets]) == 0
    assert "warning: resolution 64 is 2x the model's 32" in capsys.readouterr().err
    (run,) = (root / "runs").iterdir()
    warnings = [e for e in read_events(run / "events.jsonl") if e["type"] == "warning"]
    kinds = {e["kind"]: e for e in warnings}
    assert kinds["resolution"]["estimate_s"] > 0 and "a step is estimated at" in kinds["resolution"]["text"]
    assert "one bucket" in kinds["buckets"]["text"]
    log = (run / "train.log").read_text()
    assert "a step is estimated at" in log and "land in one bucket" in log
