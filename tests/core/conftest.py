"""Fixtures of tests/core: a project full of problem files, and a small clean one."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lorawb.core.project import Project, init_project
from tests.core.problem_files import TRIGGER, build_problem_dataset


@pytest.fixture
def problem_project(tmp_path: Path) -> Project:
    project = init_project(tmp_path / "proj", trigger=TRIGGER)
    build_problem_dataset(project.dataset_dir)
    return project


@pytest.fixture
def small_project(tmp_path: Path) -> Project:
    """Five good captioned images in 10_zkx_mira/."""
    project = init_project(tmp_path / "small", trigger=TRIGGER)
    d = project.dataset_dir / "10_zkx_mira"
    d.mkdir()
    for i in range(5):
        Image.new("RGB", (512 + 64 * i, 512), (i * 40, 0, 0)).save(d / f"img_{i}.png")
        (d / f"img_{i}.txt").write_text(f"{TRIGGER}, tag{i}", encoding="utf-8")
    return project
