"""Resume: a stopped or killed run goes on exactly as an uninterrupted one (LoRA tensors and optimizer
state compared with torch.equal, for the cached and the uncached data path), a run killed with
``kill -9`` resumes from its last checkpoint and says which steps it trains again, and a new run
can start from an existing LoRA file (``network.init_from``, kohya's ``--network_weights``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from lorawb.core.project import Project
from lorawb.train.config import resolve_config
from lorawb.train.events import read_events
from lorawb.train.process import create_run, launch, resume_run, start_run
from lorawb.train.runfolder import summarize
from tests.conftest import wait_for
from tests.train.conftest import lora_weights, make_project, train_context

pytestmark = pytest.mark.slow

EXACT = [
    "train.max_steps=4",
    "train.grad_accum=2",
    "train.lr_scheduler=cosine",
    "train.warmup_steps=2",
    "train.noise_offset=0.05",
    "dataset.shuffle_tags=true",
    "dataset.flip=true",
    "network.dropout=0.1",
    "network.train_text_encoder=true",
]


def resume_payload(run) -> dict:
    return torch.load(run.state / "resume.pt", map_location="cpu", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and (a["epoch"], a["index"]) == (b["epoch"], b["index"])
    assert set(a["lora"]) == set(b["lora"])
    for name in a["lora"]:
        assert torch.equal(a["lora"][name], b["lora"][name]), name
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert set(sa) == set(sb) and len(sa) == len(a["lora"])
    for key in sa:
        for field in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[key][field], sb[key][field]), (key, field)
    assert a["lr_scheduler"] == b["lr_scheduler"]


@pytest.mark.parametrize("data_path", ["cached", "uncached"])
def test_stopped_and_resumed_equals_straight_bit_for_bit(tmp_path, tiny_sd1, data_path):
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=3)
    project = Project.load(root)
    extra = [] if data_path == "cached" else ["dataset.cache_latents=false"]  # images decoded by the prefetch thread
    cfg = resolve_config(project, overrides=EXACT + extra)
    straight, run = straight_and_resumed(project, cfg, stop_at=2)
    assert_same_state(resume_payload(straight), resume_payload(run))


def straight_and_resumed(project, cfg, *, stop_at: int):
    """The run straight through, and the same run stopped after step ``stop_at`` and resumed."""
    straight = start_run(project, cfg, detach=False)
    run = create_run(project, cfg, name="interrupted")

    def stop(ev):
        if ev["step"] == stop_at:
            run.stop_file.write_text("stop")

    launch(run, detach=False, progress=stop)
    assert summarize(run).state == "stopped" and resume_payload(run)["step"] == stop_at
    resume_run(run, detach=False)
    return straight, run
    from safetensors.torch import load_file

    a = load_file(str(straight.checkpoints / "zkx_mira-000004.safetensors"))
    b = load_file(str(run.checkpoints / "zkx_mira-000004.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# --- kill -9 ---------------------------------------------------------------------------------------


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_sd1, capsys):
    from lorawb.cli import main as cli

    root = make_project(tmp_path / "proj", tiny_sd1, n_images=3)
    project = Project.load(root)
    cfg = resolve_config(project, overrides=["train.max_steps=15", "save.every_n_steps=3", "train.lr_scheduler=cosine"])
    run = start_run(project, cfg, detach=True)

    def past_a_checkpoint():
        evs = read_events(run.events)
        saved = [e["step"] for e in evs if e["type"] == "checkpoint" and e.get("resumable")]
        steps = [e["step"] for e in evs if e["type"] == "step"]
        return bool(saved) and steps and steps[-1] > saved[-1] and steps[-1] < 15

    wait_for(past_a_checkpoint, every=0.005)
    os.kill(run.pid(), signal.SIGKILL)  # no chance to save anything
    wait_for(lambda: not run.is_alive())
    killed = summarize(run)
    assert killed.display_state == "dead" and killed.step < 15
    saved = killed.resumable_step
    assert saved is not None and saved % 3 == 0 and killed.step > saved
    killed_losses = {e["step"]: e["loss"] for e in read_events(run.events) if e["type"] == "step"}

    capsys.readouterr()
    assert cli(["runs", str(root)]) == 0
    listing = capsys.readouterr().out
    assert "dead" in listing and f"resumable from step {saved}: `lorawb resume {run.id}`" in listing

    assert cli(["resume", run.id, "--project", str(root)]) == 0
    err = capsys.readouterr().err
    assert f"resuming from step {saved} (the last saved state); steps {saved + 1}-{killed.step} ran after it" in err
    assert f"resumed at step {saved}" in run.log.read_text()
    s = summarize(run)
    assert (s.state, s.step) == ("finished", 15)
    statuses = [e for e in read_events(run.events) if e["type"] == "status"]
    assert any(e.get("resumed_from") == saved for e in statuses)
    # the steps trained again give exactly the losses they gave before the kill
    redone = [e for e in read_events(run.events) if e["type"] == "step"][len(killed_losses) :]
    again = {e["step"]: e["loss"] for e in redone if e["step"] <= killed.step}
    assert again and again == {k: v for k, v in killed_losses.items() if k > saved}


def test_resume_state_is_replaced_atomically(tmp_path, tiny_sd1):
    # every checkpoint writes the whole resume state through one temp file + rename
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=2)
    project = Project.load(root)
    run = start_run(
        project, resolve_config(project, overrides=["train.max_steps=4", "save.every_n_steps=2"]), detach=False
    )
    assert [p.name for p in run.state.iterdir()] == ["resume.pt"]
    events = [e for e in read_events(run.events) if e["type"] == "checkpoint"]
    assert [(e["step"], e["resumable"]) for e in events] == [(2, True), (4, True)]


# --- starting from a LoRA file --------------------------------------------------------------------


def test_init_from_a_lorawb_or_kohya_file_starts_where_it_ended(tmp_path, tiny_sd1, tiny_sdxl):
    from safetensors.torch import load_file, save_file

    from lorawb.errors import ConfigError
    from lorawb.train.kohya import convert_unet_naming, read_metadata

    for model, family in ((tiny_sd1, "sd1"), (tiny_sdxl, "sdxl")):
        root = make_project(tmp_path / family, model, n_images=2)
        net = ["network.rank=4", "network.train_text_encoder=true", "save.precision='fp32'"]
        first = start_run(
            Project.load(root), resolve_config(Project.load(root), overrides=["train.max_steps=2", *net]), detach=False
        )
        src = first.checkpoints / "zkx_mira-000002.safetensors"
        files = {"lorawb": src}
        if family == "sdxl":  # the same LoRA with diffusers-path UNet names (as some tools write SDXL files)
            import json

            config = json.loads((Path(model) / "unet" / "config.json").read_text())
            tensors = convert_unet_naming(load_file(str(src)), config, to="diffusers")
            assert any(k.startswith("lora_unet_down_blocks_") for k in tensors)
            files["diffusers-naming"] = tmp_path / "diffusers-naming.safetensors"
            save_file(tensors, str(files["diffusers-naming"]))
        want = resume_payload(first)["lora"]
        for what, path in files.items():
            with train_context(root, ["train.max_steps=1", *net, f"network.init_from='{path}'"]) as ctx:
                got = lora_weights(ctx)
                assert set(got) == set(want), what
                for name in want:
                    assert torch.equal(got[name], want[name]), (what, name)
        # alpha differs from the file's: the up weights are rescaled so the LoRA's effect is the same
        with train_context(root, ["train.max_steps=1", *net, "network.alpha=8", f"network.init_from='{src}'"]) as ctx:
            got = lora_weights(ctx)
            up = next(n for n in want if n.startswith("unet.") and "lora_B" in n)
            torch.testing.assert_close(got[up], want[up] * 2.0)
        bad_rank = ["train.max_steps=1", "network.rank=8", f"network.init_from='{src}'"]
        with pytest.raises(ConfigError, match="rank 4 in the file, 8 in this network"), train_context(root, bad_rank):
            pass
    # a run started from a file says so in its checkpoints
    second = start_run(
        Project.load(root),
        resolve_config(
            Project.load(root), overrides=["train.max_steps=1", f"network.init_from='{src}'", "network.rank=4"]
        ),
        detach=False,
    )
    assert read_metadata(second.checkpoints / "zkx_mira-000001.safetensors")["lorawb_init_from"] == src.name
    assert "started from" in second.log.read_text()
    with pytest.raises(ConfigError, match="LoRA file not found"):
        create_run(
            Project.load(root), resolve_config(Project.load(root), overrides=["network.init_from='nope.safetensors'"])
        )
