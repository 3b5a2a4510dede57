"""The README tour changes sample_project/; the tests and `scripts/reset-sample` must not care.

The tests build their own sample from the generator (the ``sample_pristine`` fixture). Here
that is proved: the sample's tests run in a copy of the repository whose sample_project/ was
toured (an image rejected, a caption edited, lorawb.toml broken), and `scripts/reset-sample`'s
code puts a toured sample back byte for byte.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lorawb.toyworld import sample

ROOT = Path(__file__).resolve().parents[2]
REJECT = f"dataset/{sample.FOLDER}/mira_01_forest.png"


def _tour(project: Path) -> None:
    """What the README tour does to the sample, and worse: reject, edit, break lorawb.toml."""
    subprocess.run(
        [sys.executable, "-m", "lorawb", "triage", str(project), "--reject", REJECT],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert (project / "dataset" / "rejected" / sample.FOLDER / "mira_01_forest.png").is_file()
    (project / "dataset" / sample.FOLDER / "mira_02_forest.txt").write_text("zkx_mira, edited in the tour\n")
    (project / "inbox" / "cand_01.png").unlink()
    (project / "runs" / "20261201-000000-tour").mkdir(parents=True)


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for sub in ("dataset", "inbox"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[p.relative_to(root).as_posix()] = p.read_bytes()
    out["lorawb.toml"] = (root / "lorawb.toml").read_bytes()
    return out


def test_reset_puts_a_toured_sample_back(sample_project, sample_pristine):
    _tour(sample_project)
    (sample_project / ".lorawb").mkdir(exist_ok=True)
    assert _files(sample_project) != _files(sample_pristine)
    removed = sample.reset_sample_project(sample_project)
    assert sample_project / "dataset" in removed and sample_project / ".lorawb" in removed
    assert _files(sample_project) == _files(sample_pristine)
    assert not (sample_project / ".lorawb").exists()
    assert (sample_project / "runs" / "20261201-000000-tour").is_dir()  # runs are the user's
    assert (sample_project / sample.MODEL_DIR / "model_index.json").is_file()  # the model is never touched
    sample.reset_sample_project(sample_project, everything=True)
    assert not (sample_project / "runs").exists()


def test_reset_refuses_a_folder_that_is_not_the_sample(tmp_path):
    (tmp_path / "dataset").mkdir()
    with pytest.raises(FileNotFoundError):
        sample.reset_sample_project(tmp_path)
    assert (tmp_path / "dataset").is_dir()


@pytest.mark.slow
def test_the_sample_tests_pass_in_a_checkout_whose_sample_was_toured(tmp_path, sample_project):
    """Every non-slow test that names the sample runs green in a repository copy with a toured sample_project/."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("lorawb", "tests", "themes"):
        # snapshots too: a test that names the sample may compare one
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    toured = repo / "sample_project"
    shutil.copytree(sample_project, toured, symlinks=True)
    _tour(toured)
    (toured / "lorawb.toml").write_text('[train]\nbatch_size = "four"\n')  # and a broken config
    me = Path(__file__).name
    files = sorted(
        p.relative_to(repo).as_posix()
        for p in (repo / "tests").rglob("test_*.py")
        if p.name != me
        and re.search(r"sample_pristine|sample_project\b|trained_sample|committed_model_dir", p.read_text())
    )
    assert "tests/toyworld/test_sample_project.py" in files and "tests/tui/test_sample_project_app.py" in files
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-o",
            "addopts=",
            "-q",
            "-x",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
        ]
        + files,
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed[1]) >= 10, proc.stdout[-2000:]
