"""The trainer end to end on the tiny models (CPU): events, samples, kohya checkpoints that
diffusers loads completely, SDXL, text-encoder LoRA, validation, stop + resume equality,
detached runs, the lock, and the errors a user meets."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from lorawb.core.project import Project
from lorawb.errors import ModelError, RunError
from lorawb.train.config import load_run_config, resolve_config
from lorawb.train.events import read_events
from lorawb.train.process import create_run, launch, resume_run, start_run, stop_run
from lorawb.train.runfolder import summarize
from tests.train.conftest import make_project

pytestmark = pytest.mark.slow


def start(root: Path, overrides: list[str], detach: bool = False, progress=None):
    project = Project.load(root)
    return start_run(project, resolve_config(project, overrides=overrides), detach=detach, progress=progress)


def of_type(run, kind: str) -> list[dict]:
    return [e for e in read_events(run.events) if e["type"] == kind]


# --- SD1: one short run shared by several tests ---------------------------------------------------


@pytest.fixture(scope="module")
def sd1_run(tmp_path_factory, tiny_sd1):
    root = make_project(tmp_path_factory.mktemp("sd1") / "proj", tiny_sd1, n_images=6)
    overrides = [
        "train.max_steps=4",
        "train.learning_rate=5e-3",  # large, so 4 steps visibly change the output
        "network.rank=4",
        "network.train_text_encoder=true",
        "sample.every_n_steps=2",
        "sample.prompts=['{trigger}, forest', '{trigger}, beach']",
        "save.every_n_steps=2",
        "dataset.validation_split=0.34",
        "train.val_every_n_steps=2",
    ]
    steps: list[dict] = []
    run = start(root, overrides, progress=steps.append)
    return run, steps


def test_short_run_writes_events_samples_and_checkpoints(sd1_run):
    run, progress = sd1_run
    steps = of_type(run, "step")
    assert [e["step"] for e in steps] == [1, 2, 3, 4] and [e["step"] for e in progress] == [1, 2, 3, 4]
    for e in steps:
        assert e["max_steps"] == 4 and e["loss"] > 0 and e["lr"] == pytest.approx(5e-3) and e["epoch"] >= 1
    states = [e["state"] for e in of_type(run, "status")]
    assert states[0] == "starting" and states[-2:] == ["running", "finished"]
    samples = of_type(run, "sample")
    assert [(s["step"], s["prompt"]) for s in samples] == [
        (2, "zkx_mira, forest"),
        (2, "zkx_mira, beach"),
        (4, "zkx_mira, forest"),
        (4, "zkx_mira, beach"),
    ]
    from PIL import Image

    for s in samples:
        with Image.open(run.path / s["path"]) as im:
            assert im.size == (32, 32)
    ckpts = of_type(run, "checkpoint")
    assert [c["path"] for c in ckpts] == [
        "checkpoints/zkx_mira-000002.safetensors",
        "checkpoints/zkx_mira-000004.safetensors",
    ]
    assert all((run.path / c["path"]).is_file() for c in ckpts)
    vals = of_type(run, "val")
    assert [v["step"] for v in vals] == [2, 4] and all(v["val_loss"] > 0 for v in vals)
    assert (run.state / "resume.pt").is_file() and not run.is_alive() and not run.pid_file.exists()
    log = run.log.read_text()
    assert "base model" in log and "finished 4 steps" in log
    s = summarize(run)
    assert (s.state, s.step, s.max_steps, len(s.checkpoints)) == ("finished", 4, 4, 2)


def test_checkpoint_is_kohya_format_with_metadata(sd1_run):
    import torch
    from safetensors.torch import load_file

    from lorawb.train.kohya import read_metadata

    run, _ = sd1_run
    path = run.checkpoints / "zkx_mira-000004.safetensors"
    sd = load_file(str(path))
    layers = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in sd}
    assert all(k.startswith(("lora_unet_", "lora_te_")) for k in layers)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" in layers
    # kohya's SD1 text-encoder names keep the text_model level (transformers 5 dropped it)
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in layers
    assert not any(k.startswith(("lora_te1_", "lora_te_encoder_")) for k in layers)
    for layer in layers:
        down, up, alpha = sd[f"{layer}.lora_down.weight"], sd[f"{layer}.lora_up.weight"], sd[f"{layer}.alpha"]
        assert down.shape[0] == 4 and up.shape[1] == 4 and down.dtype == torch.float16
        assert alpha.dtype == torch.float32 and alpha.dim() == 0 and float(alpha) == 16.0
    # the text-encoder LoRA really trained
    assert float(sd["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"].abs().max()) > 0
    meta = read_metadata(path)
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_network_dim"] == "4"
    assert meta["ss_network_alpha"] == "16.0" and meta["ss_base_model_version"] == "sd_v1"
    assert meta["ss_output_name"] == "zkx_mira" and meta["lorawb_trigger"] == "zkx_mira"
    assert meta["ss_steps"] == "4" and meta["ss_resolution"] == "(32, 32)" and meta["ss_learning_rate"] == "0.005"
    assert meta["ss_num_train_images"] == "8"  # 4 training images x 2 repeats (2 held out)
    freq = json.loads(meta["ss_tag_frequency"])
    assert freq["2_zkx_mira"]["zkx_mira"] == 4
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"


def _loaded_layers(pipe, te_count: int) -> dict[str, object]:
    """Kohya layer name -> LoRA weights of what diffusers actually loaded into the pipeline."""
    from lorawb.families.ldm import UnetLayout
    from lorawb.train.kohya import extract_lora, te_key, unet_key

    out = {}
    adapter = next(iter(pipe.unet.peft_config))
    layout = UnetLayout(pipe.unet.config) if te_count == 2 else None  # kohya's SDXL names are LDM paths
    out.update({unet_key(n, layout): w for n, w in extract_lora(pipe.unet, adapter).items()})
    tes = [pipe.text_encoder] + ([pipe.text_encoder_2] if te_count == 2 else [])
    for i, te in enumerate(tes):
        out.update({te_key(n, i, te_count): w for n, w in extract_lora(te, adapter).items()})
    return out


def _assert_fully_loaded(pipe, path: Path, te_count: int) -> None:
    import torch
    from safetensors.torch import load_file

    sd = load_file(str(path))
    in_file = {k.split(".")[0] for k in sd}
    loaded = _loaded_layers(pipe, te_count)
    assert set(loaded) == in_file  # every layer in the file was consumed, and nothing else
    for layer, w in loaded.items():
        assert torch.equal(w.down.half(), sd[f"{layer}.lora_down.weight"])
        assert torch.equal(w.up.half(), sd[f"{layer}.lora_up.weight"])
        assert w.alpha == pytest.approx(float(sd[f"{layer}.alpha"]))


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())


def test_diffusers_load_lora_weights_consumes_every_key_and_changes_output(sd1_run, tiny_sd1):
    import diffusers
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    run, _ = sd1_run
    path = run.checkpoints / "zkx_mira-000004.safetensors"
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    pipe.set_progress_bar_config(disable=True)

    def draw():
        g = torch.Generator().manual_seed(0)
        return pipe("zkx_mira, forest", num_inference_steps=3, guidance_scale=1.5, generator=g, output_type="np").images

    before = draw()
    diffusers.utils.logging.set_verbosity_warning()  # an in-process run turned warnings off
    records = _Records()
    logging.getLogger("diffusers").addHandler(records)
    try:
        pipe.load_lora_weights(str(path))
    finally:
        logging.getLogger("diffusers").removeHandler(records)
    assert records.records == []  # no "unexpected keys" or "could not load" complaints
    _assert_fully_loaded(pipe, path, te_count=1)
    after = draw()
    assert float(np.abs(after - before).max()) > 1e-3


# --- SDXL ------------------------------------------------------------------------------------------


def test_sdxl_run_with_text_encoders_loads_into_sdxl_pipeline(tmp_path, tiny_sdxl):
    import diffusers
    from diffusers import StableDiffusionXLPipeline

    from lorawb.train.kohya import read_metadata

    root = make_project(tmp_path / "xl", tiny_sdxl, n_images=4)
    run = start(
        root,
        [
            "train.max_steps=2",
            "network.rank=4",
            "network.train_text_encoder=true",
            "network.text_encoder_lr=1e-3",
            "model.prediction_type='v_prediction'",
            "train.min_snr_gamma=5",
            "sample.prompts=['{trigger}, bar']",
            "network.conv=true",
            "network.ff=true",
        ],
    )
    assert [e["state"] for e in of_type(run, "status")][-1] == "finished"
    assert len(of_type(run, "sample")) == 1  # samples at the end when every_n_steps is 0
    ckpt = run.path / of_type(run, "checkpoint")[-1]["path"]
    meta = read_metadata(ckpt)
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0" and meta["ss_text_encoder_lr"] == "0.001"
    assert meta["ss_v_parameterization"] == "True"
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    diffusers.utils.logging.set_verbosity_warning()
    records = _Records()
    logging.getLogger("diffusers").addHandler(records)
    try:
        pipe.load_lora_weights(str(ckpt))
    finally:
        logging.getLogger("diffusers").removeHandler(records)
    assert records.records == []
    _assert_fully_loaded(pipe, ckpt, te_count=2)
    keys = {k.split(".")[0] for k in read_keys(ckpt)}
    # kohya's own SDXL names (the LDM layout): attention, feed-forward and LoCon convolutions
    assert "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q" in keys  # the tiny UNet's down_blocks.1
    assert any(k.startswith("lora_unet_output_blocks_") and k.endswith("_ff_net_2") for k in keys)
    assert any(k.endswith("_0_in_layers_2") for k in keys) and any(k.endswith("_0_op") for k in keys)
    assert not any(k.startswith(("lora_unet_down_blocks", "lora_unet_up_blocks", "lora_unet_mid_block")) for k in keys)
    assert any(k.startswith("lora_te1_text_model_encoder_layers_") for k in keys)
    assert any(k.startswith("lora_te2_text_model_encoder_layers_") for k in keys)


def read_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return list(fh.keys())


# --- stop and resume ------------------------------------------------------------------------------

RESUME_OVERRIDES = [
    "train.max_steps=6",
    "train.grad_accum=2",
    "train.lr_scheduler=cosine",
    "train.warmup_steps=2",
    "train.noise_offset=0.05",
    "train.min_snr_gamma=5",
    "dataset.shuffle_tags=true",
    "dataset.tag_dropout=0.2",
    "dataset.flip=true",
    "network.dropout=0.1",
]


def test_stop_then_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, tiny_sd1):
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=5)
    project = Project.load(root)
    cfg = resolve_config(project, overrides=RESUME_OVERRIDES)

    straight: list[dict] = []
    start_run(project, cfg, detach=False, progress=straight.append)

    run = create_run(project, cfg, name="interrupted")
    first: list[dict] = []

    def stop_at_3(ev):
        first.append(ev)
        if ev["step"] == 3:
            run.stop_file.write_text("stop")  # what `lorawb stop` does

    launch(run, detach=False, progress=stop_at_3)
    assert [e["state"] for e in of_type(run, "status")][-1] == "stopped"
    assert (run.checkpoints / "zkx_mira-000003.safetensors").is_file()
    second: list[dict] = []
    resume_run(run, detach=False, progress=second.append)

    assert [e["step"] for e in first] == [1, 2, 3] and [e["step"] for e in second] == [4, 5, 6]
    got = [(e["step"], e["loss"], e["lr"], e["epoch"]) for e in first + second]
    want = [(e["step"], e["loss"], e["lr"], e["epoch"]) for e in straight]
    assert got == want
    statuses = [e for e in of_type(run, "status")]
    assert [e["state"] for e in statuses][-3:] == ["stopped", "running", "finished"] or [e["state"] for e in statuses][
        -4:
    ] == ["stopped", "starting", "running", "finished"]
    assert any(e.get("resumed_from") == 3 for e in statuses)
    with pytest.raises(RunError, match="already finished"):
        resume_run(run, detach=False)


# --- processes and the lock -----------------------------------------------------------------------


def test_detached_run_lives_in_its_own_session_and_finishes(tmp_path, tiny_sd1):
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=4)
    run = start(root, ["train.max_steps=3"], detach=True)
    assert run.is_alive()  # the launcher handed its lock to the worker: alive from the start
    assert summarize(run).display_state == "starting"
    deadline = time.time() + 150
    pid = None
    while time.time() < deadline and run.is_alive():
        pid = pid or run.pid()
        if pid:
            try:
                assert os.getsid(pid) != os.getsid(0)  # a new session: survives the terminal closing
            except ProcessLookupError:
                pass
        time.sleep(0.3)
    assert not run.is_alive(), (run.path / "worker.out").read_text()
    assert pid is not None
    s = summarize(run)
    assert (s.state, s.step) == ("finished", 3), (run.path / "worker.out").read_text()
    with pytest.raises(RunError, match="not running"):
        stop_run(run)


def test_second_trainer_on_a_run_is_refused(tmp_path, tiny_sd1):
    from lorawb.train.trainer import run_lock, train

    root = make_project(tmp_path / "proj", tiny_sd1)
    project = Project.load(root)
    run = create_run(project, resolve_config(project))
    with run_lock(run):
        assert run.is_alive()
        with pytest.raises(RunError, match="already running"):
            train(run)
        with pytest.raises(RunError, match="still running"):
            resume_run(run, detach=False)
        with pytest.raises(RunError, match="already running"):
            launch(run, detach=True)
    assert not run.is_alive()


# --- errors ---------------------------------------------------------------------------------------


def test_missing_model_is_refused_before_a_run_exists(tmp_path):
    root = make_project(tmp_path / "proj", tmp_path / "no-such-model")
    with pytest.raises(ModelError) as err:
        start(root, [])
    assert err.value.path == tmp_path / "no-such-model" and "not found" in err.value.message
    assert not any((root / "runs").iterdir())
    with pytest.raises(ModelError, match="no base model set"):
        start(root, ["model.path=''"])


def test_pickle_checkpoints_are_refused_unless_allowed(tmp_path):
    from lorawb.train.config import ModelSection
    from lorawb.train.modelpath import check_model_path

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04pickle")
    root = make_project(tmp_path / "proj", ckpt)
    with pytest.raises(ModelError, match="pickle") as err:
        start(root, [])
    assert "--allow-pickle" in (err.value.hint or "")
    assert check_model_path(ModelSection(path=str(ckpt), allow_pickle=True)) == ckpt
    folder = tmp_path / "bin-model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="pickle"):
        check_model_path(ModelSection(path=str(folder)))


def test_lora_file_given_as_base_model_is_named(sd1_run, tmp_path):
    from lorawb.train.config import ModelSection
    from lorawb.train.modelpath import detect_family

    run, _ = sd1_run
    with pytest.raises(ModelError, match="is a LoRA"):
        detect_family(run.checkpoints / "zkx_mira-000004.safetensors")
    assert ModelSection  # imported for symmetry with the other checks


def test_model_gone_at_start_records_failed_with_path(tmp_path, tiny_sd1):
    import shutil

    from lorawb.train.trainer import train

    model = tmp_path / "model"
    shutil.copytree(tiny_sd1, model)
    root = make_project(tmp_path / "proj", model)
    project = Project.load(root)
    run = create_run(project, resolve_config(project))
    shutil.rmtree(model)
    with pytest.raises(ModelError):
        train(run)
    failed = of_type(run, "status")[-1]
    assert failed["state"] == "failed" and str(model) in failed["error"] and failed["hint"]
    assert "run failed" in run.log.read_text()


def test_nan_loss_stops_the_run_and_says_so(tmp_path, tiny_sd1, monkeypatch):
    import torch

    from lorawb.train import trainer

    def nan_loss(ctx, batch, timesteps=None):
        return torch.tensor(float("nan"), requires_grad=True)

    monkeypatch.setattr(trainer, "diffusion_loss", nan_loss)
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=2)
    with pytest.raises(trainer.TrainingError, match="nan"):
        start(root, [])
    run = Project.load(root).runs_dir
    (folder,) = list(run.iterdir())
    failed = read_events(folder / "events.jsonl")[-1]
    assert failed["state"] == "failed" and "nan at step 1" in failed["error"] and "learning_rate" in failed["hint"]


def test_epochs_decide_length_and_checkpoints(tmp_path, tiny_sd1):
    # 3 images x 2 repeats in batches of 2: 3 steps an epoch
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=3)
    run = start(root, ["train.max_steps=0", "train.epochs=2", "save.every_n_epochs=1", "save.keep_last=1"])
    steps = of_type(run, "step")
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6] and steps[-1]["max_steps"] == 6
    assert [e["epoch"] for e in steps] == [1, 1, 1, 2, 2, 2]
    assert [(c["step"], c["epoch"]) for c in of_type(run, "checkpoint")] == [(3, 1), (6, 2)]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["zkx_mira-000006.safetensors"]  # keep_last=1


def test_samples_carry_their_parameters_and_each_sample_step_has_a_contact_sheet(sd1_run, capsys):
    """Samples carry what matrix cells carry (A1111 `parameters` and the JSON record, one writer),
    naming the checkpoint saved at their step; each sample step has a labelled sheet."""
    from PIL import Image

    from lorawb.core.pngtext import png_record
    from lorawb.train.monitor import RunMonitor

    run, _ = sd1_run
    cfg = load_run_config(run.config)
    sample = of_type(run, "sample")[1]  # step 2, "zkx_mira, beach"
    with Image.open(run.path / sample["path"]) as im:
        text = dict(im.text)
    record = png_record(run.path / sample["path"])
    p = record["params"]
    assert (record["run"], record["step"], record["checkpoint"]) == (
        run.id,
        2,
        "checkpoints/zkx_mira-000002.safetensors",
    )
    assert (run.path / record["checkpoint"]).is_file()  # the LoRA the sample was drawn with
    assert (p["prompt"], p["seed"], p["steps"], p["sampler"], p["width"], p["height"]) == (
        "zkx_mira, beach",
        0,
        2,
        "ddim",
        32,
        32,
    )
    assert p["cfg"] == sample["cfg"] and p["base"] == cfg.model.path and p["negative"] == cfg.sample.negative
    assert text["parameters"].splitlines() == [
        "zkx_mira, beach <lora:zkx_mira-000002:1>",
        f"Steps: 2, Sampler: DDIM, CFG scale: {sample['cfg']:g}, Seed: 0, Size: 32x32, Model: "
        + Path(cfg.model.path).name,
    ]
    sheets = of_type(run, "sheet")
    assert [(s["step"], s["path"]) for s in sheets] == [
        (2, "samples/000002-sheet.png"),
        (4, "samples/000004-sheet.png"),
    ]
    with Image.open(run.path / sheets[0]["path"]) as im:
        assert im.width > 128 and im.height > 2 * 128  # two prompts (rows) of 32 px samples, enlarged
    m = RunMonitor(run)
    m.catch_up()
    assert [s.sheet for s in m.snapshot().samples] == [run.path / s["path"] for s in sheets]
    from lorawb.cli import main

    assert main(["watch", str(run.path), "--once"]) == 0
    assert "samples/000004-sheet.png" in capsys.readouterr().out.replace("\n", "")


def test_a_stop_asked_right_after_a_detached_start_is_kept(tmp_path, tiny_sd1):
    """`lorawb stop` between the launch and the worker taking its lock (the queue and the app do this)
    stops the run: the launcher clears stale requests, the worker no longer deletes a fresh one."""
    from lorawb.train.process import stop_run

    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    project = Project.load(root)
    run = start_run(project, resolve_config(project, overrides=["train.max_steps=500"]), detach=True)
    stop_run(run)  # the worker is still importing torch
    deadline = time.time() + 120
    while run.is_alive() and time.time() < deadline:
        time.sleep(0.1)
    s = summarize(run)
    assert s.state == "stopped" and s.step < 500, (s.state, s.step)
