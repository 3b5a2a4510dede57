"""Fixtures of the generate tests: a small project on the tiny SD1 model with a character sheet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHEET = """
[tags.groups]
context = ["forest", "bar"]
style = ["flat", "watercolor"]

[generate]
description = "red outfit"
steps = 2
batch = 4
"""


def add_sheet(root: Path, extra: str = "") -> Path:
    """Append the tag groups and the [generate] sheet (``extra``: more [generate] keys) to lorawb.toml."""
    path = root / "lorawb.toml"
    path.write_text(path.read_text(encoding="utf-8") + SHEET + extra, encoding="utf-8")
    return root


@pytest.fixture
def gen_project(tmp_path, tiny_model):
    """A project on the tiny SD1 model: 2 dataset images, 2 contexts × 2 styles to generate."""
    from lorawb.core.project import Project
    from tests.train.conftest import make_project

    return Project.load(add_sheet(make_project(tmp_path / "p", tiny_model, n_images=2)))
