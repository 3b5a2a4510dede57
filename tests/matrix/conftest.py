"""Fixtures of the matrix tests: a drawn matrix in ``trained_project`` (tests/conftest.py).

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
