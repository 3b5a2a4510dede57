"""The README's commands work as written from a clone: the scripts it names exist and run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_script_the_readme_names_exists_and_is_executable():
    named = set(re.findall(r"scripts/([\w.-]+)", README))
    assert {"start", "test", "lorawb", "reset-sample"} <= named
    for name in named:
        path = ROOT / "scripts" / name
        assert path.is_file(), f"README names scripts/{name}, which does not exist"
        assert os.access(path, os.X_OK), f"scripts/{name} is not executable"


def test_the_readme_runs_lorawb_commands_through_the_shim_or_says_to_activate():
    # After `scripts/start` nothing is on PATH: a bare `lorawb …` command in the tour would fail.
    tour = README.split("## Five minutes with the sample project", 1)[1].split("\n## ", 1)[0].split("\n1. ", 1)[1]
    for cmd in re.findall(r"`((?:scripts/)?lorawb [^`]*)`", tour):
        assert cmd.startswith("scripts/lorawb "), cmd
    assert "source .venv/bin/activate" in README


def test_scripts_lorawb_runs_the_venvs_lorawb():
    venv = Path(sys.prefix)
    if not (venv / ".lorawb-installed").is_file():
        pytest.skip("not running from a venv made by scripts/env.sh")
    env = {**os.environ, "LORAWB_VENV": str(venv), "PATH": "/usr/bin:/bin"}  # no lorawb on PATH
    out = subprocess.run(
        [str(ROOT / "scripts" / "lorawb"), "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("lorawb ")


def test_the_tour_says_what_a_new_user_meets():
    """Keeping an inbox image asks for its dataset folder; the tour's matrix is fitted to a minute, and
    the tour says how to make the full one."""
    tour = README.split("## Five minutes with the sample project", 1)[1].split("\n## ", 1)[0]
    assert "which dataset folder" in tour
    assert "target_minutes = 1" in tour and "--minutes 0" in tour
