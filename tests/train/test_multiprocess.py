"""Data-parallel training for real: two CPU processes under Accelerate (gloo), launched the way a
multi-GPU run is. Every trained module (the text encoder too) has its gradients all-reduced, so the
ranks' LoRA weights stay identical, and a stop request ends both ranks after the same step."""

from __future__ import annotations

import re
import time

import pytest

from lorawb.core.project import Project
from lorawb.train.config import resolve_config
from lorawb.train.events import read_events
from lorawb.train.process import start_run, stop_run
from lorawb.train.runfolder import summarize
from tests.train.conftest import make_project

pytestmark = pytest.mark.slow

FINGERPRINT = re.compile(r"step (\d+): LoRA weights fingerprint ([0-9a-f]+)")


def fingerprints(log_text: str) -> dict[int, str]:
    return {int(step): fp for step, fp in FINGERPRINT.findall(log_text)}


def test_two_processes_keep_identical_weights_and_stop_together(tmp_path, tiny_sd1):
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=4)
    project = Project.load(root)
    overrides = [
        "train.num_processes=2",
        "train.device='cpu'",
        "train.threads=1",
        "train.max_steps=400",
        "train.batch_size=1",
        "network.train_text_encoder=true",
        "network.rank=2",
        "save.every_n_steps=2",
    ]
    run = start_run(project, resolve_config(project, overrides=overrides), detach=True)
    out = run.path / "worker.out"
    deadline = time.time() + 150
    while time.time() < deadline:
        steps = [e["step"] for e in read_events(run.events) if e["type"] == "step"]
        if steps and steps[-1] >= 3:
            break
        assert run.is_alive(), out.read_text()
        time.sleep(0.05)
    else:
        raise AssertionError("no steps: " + out.read_text()[-3000:])
    stop_run(run)
    deadline = time.time() + 120
    while run.is_alive() and time.time() < deadline:
        time.sleep(0.1)
    assert not run.is_alive(), out.read_text()[-3000:]
    s = summarize(run)
    assert s.state == "stopped" and 3 <= s.step < 400, out.read_text()[-3000:]
    assert "Traceback" not in out.read_text()

    rank0, rank1 = run.log.read_text(), (run.path / "train.rank1.log").read_text()
    assert "2 process(es)" in rank0 and "2 process(es)" in rank1
    fp0, fp1 = fingerprints(rank0), fingerprints(rank1)
    assert s.step in fp0 and s.step in fp1  # both ranks reached the stop checkpoint, at the same step
    assert fp0 == fp1 and len(fp0) >= 2  # identical UNet and text-encoder LoRA weights at every checkpoint
    assert len(set(fp0.values())) == len(fp0)  # and they did train between checkpoints
    assert "weights differ" not in rank0
    assert "stopped at step" in rank0 and "stopped at step" in rank1
