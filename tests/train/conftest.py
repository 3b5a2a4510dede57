"""Fixtures for training tests: the tiny models (built once per session) and small projects."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONTEXTS = ["forest", "spaceship", "bar", "beach"]
SIZES = [(32, 32), (40, 32), (32, 48), (36, 36)]


@pytest.fixture(scope="session")
def tiny_sd1(tmp_path_factory) -> Path:
    from lorawb.toyworld.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd1", family="sd1", seed=0)


def write_images(folder: Path, n: int, trigger: str = "zkx_mira", start: int = 0) -> list[Path]:
    """Small procedural images (a figure on a coloured ground) with trigger-first tag captions."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        w, h = SIZES[i % len(SIZES)]
        im = Image.new("RGB", (w, h), (40 + 25 * (i % 8), 120, 200 - 20 * (i % 8)))
        d = ImageDraw.Draw(im)
        d.ellipse((w // 2 - 6, 4, w // 2 + 6, 16), fill=(240, 200, 160))
        d.rectangle((w // 2 - 5, 16, w // 2 + 5, h - 6), fill=(200, 30, 30))
        p = folder / f"img_{i:03d}.png"
        im.save(p)
        p.with_suffix(".txt").write_text(f"{trigger}, red outfit, {CONTEXTS[i % 4]}, watercolor", encoding="utf-8")
        out.append(p)
    return out


def make_project(root: Path, model: Path | str, n_images: int = 6) -> Path:
    """A project trained at 32 px on ``model``: fast defaults, no samples or saves unless asked (use overrides)."""
    from lorawb.core.project import init_project

    init_project(root, trigger="zkx_mira")
    write_images(root / "dataset" / "2_zkx_mira", n_images)
    text = f'''
[project]
name = "test"
trigger = "zkx_mira"
resolution = 32

[model]
path = "{model}"

[dataset]
bucket_step = 8

[train]
max_steps = 4
batch_size = 2
learning_rate = 1e-3

[sample]
every_n_steps = 0
prompts = []
steps = 2
cfg = 1.5

[save]
every_n_steps = 0
'''
    (root / "lorawb.toml").write_text(text, encoding="utf-8")
    return root


@contextlib.contextmanager
def train_context(root: Path, overrides: list[str]):
    """The trainer's Context for a new run of the project at ``root`` (to drive steps one by one)."""
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config
    from lorawb.train.events import EventWriter
    from lorawb.train.process import create_run
    from lorawb.train.trainer import StopFlag, build_context, run_lock, run_log

    project = Project.load(root)
    run = create_run(project, resolve_config(project, overrides=overrides))
    with run_lock(run), EventWriter(run.events) as events, run_log(run) as log:
        from lorawb.train.config import load_run_config

        ctx = build_context(run, load_run_config(run.config), events, log, StopFlag(run))
        try:
            yield ctx
        finally:
            ctx.batches.close()


def lora_weights(ctx) -> dict:
    """Every trainable LoRA weight of a Context, by name, copied."""
    from lorawb.train.lora import trainable_state

    return trainable_state(ctx.denoiser, ctx.text_encoders)
