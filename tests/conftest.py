"""Shared fixtures. Tests use real files in tmp_path; torch runs on one thread."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LORAWB_THREADS", "1")


@pytest.fixture(scope="session")
def sample_pristine(tmp_path_factory) -> Path:
    """The sample project as scripts/make_sample_project.py makes it, built once per session. Do not change it.

    Tests never read the repository's sample_project/ (the README tour changes it); only its
    committed toy model is linked in (the generator does not make it).
    """
    from lorawb.toyworld import check

    return check.copy_sample_project(tmp_path_factory.mktemp("sample") / "sample_project")


@pytest.fixture
def sample_project(sample_pristine, tmp_path) -> Path:
    """A copy of the pristine sample project for one test to change."""
    from lorawb.toyworld import check

    return check.copy_sample_project(tmp_path / "sample_project", source=sample_pristine)


@pytest.fixture(scope="session")
def trained_sample(tmp_path_factory, sample_pristine):
    """The sample project copied and trained once per session with its own settings (sampling off).

    Returns (project folder, last checkpoint). Shared by the LoRA and the matrix end-to-end tests.
    """
    from lorawb.toyworld import check

    project = check.copy_sample_project(tmp_path_factory.mktemp("e2e") / "sample_project", source=sample_pristine)
    lora = check.train_project(project, ["sample.every_n_steps=0", "sample.at_start=false"])
    return project, lora


@pytest.fixture(scope="session")
def sample_results(trained_sample):
    """(base, with the sample LoRA) as the toy world's reader counts them: 8 seeds, the model's guidance 1.5.

    Computed once per session: the LoRA end-to-end test and the prior-preservation one compare with it.
    """
    from lorawb.toyworld import check, sample

    project, lora = trained_sample
    return check.check_lora(project / sample.MODEL_DIR, lora, seeds=list(range(8)), cfg=1.5)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from lorawb.toyworld.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd1", family="sd1", seed=0)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    from lorawb.toyworld.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sdxl", family="sdxl", seed=0)


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory) -> Path:
    """A tiny Flux.1-dev (guidance-distilled) diffusers folder, built from configs."""
    from lorawb.toyworld.tiny_transformers import build_tiny_transformer

    return build_tiny_transformer(tmp_path_factory.mktemp("models") / "tiny-flux", "flux", variant="dev")


@pytest.fixture(scope="session")
def tiny_chroma(tmp_path_factory) -> Path:
    from lorawb.toyworld.tiny_transformers import build_tiny_transformer

    return build_tiny_transformer(tmp_path_factory.mktemp("models") / "tiny-chroma", "chroma")


@pytest.fixture(scope="session")
def tiny_flux2_klein(tmp_path_factory) -> Path:
    """A tiny Flux.2 Klein base (not distilled) diffusers folder, built from configs."""
    from lorawb.toyworld.tiny_transformers import build_tiny_transformer

    return build_tiny_transformer(tmp_path_factory.mktemp("models") / "tiny-klein", "flux2_klein")


@pytest.fixture(scope="session")
def tiny_zimage(tmp_path_factory) -> Path:
    from lorawb.toyworld.tiny_transformers import build_tiny_transformer

    return build_tiny_transformer(tmp_path_factory.mktemp("models") / "tiny-zimage", "zimage")


@pytest.fixture(scope="session")
def tiny_qwenimage(tmp_path_factory) -> Path:
    from lorawb.toyworld.tiny_transformers import build_tiny_transformer

    return build_tiny_transformer(tmp_path_factory.mktemp("models") / "tiny-qwenimage", "qwenimage")


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory) -> Path:
    """A tiny SD3.5 Medium (MMDiT-X: a dual-attention first block, RMS q/k norms) diffusers folder."""
    from lorawb.toyworld.tiny_transformers import build_tiny_transformer

    return build_tiny_transformer(tmp_path_factory.mktemp("models") / "tiny-sd3", "sd3")


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


def wait_for(what, timeout: float = 120.0, every: float = 0.02):
    """Poll ``what`` until it returns something true (returned); fail after ``timeout`` seconds.

    For conditions another process makes true (a detached worker's checkpoint, a queue runner's end).
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {getattr(what, '__name__', what)}")


def watcher_threads() -> list[threading.Thread]:
    """File-watcher threads alive now (ours and watchdog's)."""
    from watchdog.utils import BaseThread

    return [
        t for t in threading.enumerate() if t.is_alive() and (isinstance(t, BaseThread) or t.name == "lorawb-watch")
    ]


@pytest.fixture(autouse=True)
def no_leaked_watchers():
    """Every test stops the file watchers it started (the app stops its own on exit)."""
    before = set(watcher_threads())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = [t for t in watcher_threads() if t not in before]
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"file watcher threads still running after the test: {left}")
        time.sleep(0.01)  # polling a condition with a deadline: threads end on their own time
