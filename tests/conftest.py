"""Shared fixtures. Tests use real files in tmp_path; torch runs on one thread."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LORAWB_THREADS", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def trained_sample(tmp_path_factory):
    """The sample project copied and trained once per session with its own settings (sampling off).

    Returns (project folder, last checkpoint). Shared by the LoRA and the matrix end-to-end tests.
    """
    from lorawb.toyworld import check

    project = check.copy_sample_project(tmp_path_factory.mktemp("e2e") / "sample_project")
    lora = check.train_project(project, ["sample.every_n_steps=0", "sample.at_start=false"])
    return project, lora
