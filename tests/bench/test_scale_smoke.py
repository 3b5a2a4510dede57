"""CI smoke test of bench/scale.py: it runs end to end on a generated project and prints every figure.

Never fails on time (the figures are for people; the machine running CI is whatever it is).
N is 200 by default so the test stays near a minute on two loaded cores; LORAWB_SCALE_SMOKE_N=1000
runs the 1,000-image variant.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = [
    "cpu ref",
    "disk ref",
    "cold scan",
    "warm rescan",
    "bulk tag add",
    "its undo",
    "tag statistics",
    "composition table",
    "near-dup hashing",
    "app start -> Triage painted",
    "move selection 100 images",
    "Captions editor keystroke",
    "Triage filter change",
    "watcher: outside write",
    "app peak RSS",
]


@pytest.mark.bench
def test_scale_bench_runs_and_prints_every_figure(tmp_path):
    n = int(os.environ.get("LORAWB_SCALE_SMOKE_N", "200"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), str(n), "--keep", str(tmp_path / "big")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index(f"| figure (N = {n})") :]
    for name in ROWS:
        line = next((ln for ln in table.splitlines() if ln.startswith(f"| {name}")), None)
        assert line is not None, f"{name!r} missing from:\n{table}"
        assert re.search(r"\d", line.split("|")[2]), line  # a measured figure, not an empty cell
    # The cold scan decoded every image file once, the warm rescan none.
    cold = next(ln for ln in table.splitlines() if ln.startswith("| cold scan"))
    m = re.search(r"decoded (\d+) of (\d+) files", cold)
    assert m and m.group(1) == m.group(2), cold
    assert "decoded 0" in next(ln for ln in table.splitlines() if ln.startswith("| warm rescan"))
    # The generated project: n images in kohya folders, an inbox of n/5, 5 % near-duplicate groups found.
    hashing = next(ln for ln in table.splitlines() if ln.startswith("| near-dup hashing"))
    assert f"{n + n // 5} images" in hashing and f"{n * 5 // 100} groups" in hashing, hashing
