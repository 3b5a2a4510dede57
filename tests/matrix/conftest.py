"""Fixtures of the matrix tests: a project on the tiny SD1 model with a 2-checkpoint run, and a drawn matrix.

The session builds them once; tests that change files work on a copy (``lora_project``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMALL_SPEC = """
[matrix]
run = "{run}"
prompt = "{{trigger}}, {{context}}"
controls = ["red outfit, beach"]
steps = {steps}
cfg = 1.5
batch = {batch}

[axes]
checkpoint = [1, 2]
weight = [0, 1]
context = ["forest", "bar"]
seed = [0, 1]
"""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from lorawb.toyworld.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd1", family="sd1", seed=0)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory, tiny_model) -> Path:
    """A project on the tiny model with one run of 2 steps and a checkpoint at each step."""
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config
    from lorawb.train.process import create_run, launch
    from tests.train.conftest import make_project

    root = make_project(tmp_path_factory.mktemp("mx") / "proj", tiny_model, n_images=4)
    project = Project.load(root)
    cfg = resolve_config(
        project, None, ["train.max_steps=2", "save.every_n_steps=1", "network.rank=4", "network.alpha=4"]
    )
    run = create_run(project, cfg, "mx")
    launch(run, detach=False)
    return root


def write_matrix(root: Path, name: str, steps: int = 2, batch: int = 8, extra: str = "") -> Path:
    from lorawb.train.runfolder import list_runs

    run = list_runs(root / "runs")[-1]
    folder = root / "matrices" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "matrix.toml").write_text(
        SMALL_SPEC.format(run=run.id, steps=steps, batch=batch) + extra, encoding="utf-8"
    )
    return folder


@pytest.fixture(scope="session")
def drawn_project(tmp_path_factory, trained_project) -> Path:
    """``trained_project`` copied, with matrix ``small`` drawn in this process (18 images)."""
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.runner import run_matrix

    root = tmp_path_factory.mktemp("drawn") / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    assert run_matrix(MatrixFolder(write_matrix(root, "small"))) == "finished"
    return root


@pytest.fixture
def lora_project(tmp_path, drawn_project) -> Path:
    """A private copy of ``drawn_project`` to change."""
    root = tmp_path / "proj"
    shutil.copytree(drawn_project, root, symlinks=True)
    return root
