"""kill -9 during a matrix promotion: the next command finishes it (every image in the inbox with its
caption, the ratings' record), or drops it when no image was written; undo takes the captions back.

The promotion is the real ``apply_promotion`` on a hand-made plan (four drawn cells as PNG files):
what is under test is the write and its recovery, not the matrix (tests/matrix draws real ones).
"""

from __future__ import annotations

import json
import signal

import pytest
from PIL import Image

from tests.faults.helpers import caption_project, leftovers, lorawb, python

N = 4
PROMOTE = """
import sys
from pathlib import Path
from lorawb.core.caption_ops import Change, ChangeSet, rel_to
from lorawb.core.project import Project
from lorawb.matrix.folder import MatrixFolder
from lorawb.matrix.promote import Promotion, apply_promotion

project = Project.load(Path(sys.argv[1]))
plan = Promotion(MatrixFolder(project.matrices_dir / "m"))
changes = []
for i in range(int(sys.argv[2])):
    dest = project.inbox_dir / f"m-c{i}.png"
    plan.copies.append((f"c{i}", plan.folder.cell_png(f"c{i}"), dest))
    cap = dest.with_suffix(".txt")
    changes.append(Change(rel_to(project.root, dest), rel_to(project.root, cap), cap, None, f"zkx_mira, context {i}"))
plan.changes = ChangeSet("promote matrix cells from m", changes, len(changes), "inbox")
apply_promotion(project, plan)
"""


@pytest.fixture
def project(tmp_path):
    project = caption_project(tmp_path, n=2)
    cells = project.matrices_dir / "m" / "cells"
    cells.mkdir(parents=True)
    for i in range(N):
        Image.new("RGB", (32, 32), (60 * i, 0, 0)).save(cells / f"c{i}.png")
    return project


def _inbox(project) -> list[str]:
    return sorted(p.name for p in project.inbox_dir.iterdir())


def test_promotion_killed_after_two_images_is_finished_then_undone(project):
    killed = python(PROMOTE, str(project.root), str(N), kill_at="promote:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _inbox(project) == ["m-c0.png", "m-c1.png"]  # two images, no captions: what a kill left before

    history = lorawb(project, "captions", "history", check=True)
    assert "finished an interrupted promotion" in history.stderr
    assert _inbox(project) == sorted([f"m-c{i}.png" for i in range(N)] + [f"m-c{i}.txt" for i in range(N)])
    assert (project.inbox_dir / "m-c3.txt").read_text() == "zkx_mira, context 3"
    promoted = json.loads((project.matrices_dir / "m" / "ratings.json").read_text())["promoted"]
    assert promoted == {f"c{i}": f"inbox/m-c{i}.png" for i in range(N)}
    assert leftovers(project) == []

    lorawb(project, "captions", "undo", check=True)  # the captions come off; the images stay for triage
    assert _inbox(project) == [f"m-c{i}.png" for i in range(N)]


def test_promotion_killed_before_its_first_image_is_dropped(project):
    assert python(PROMOTE, str(project.root), str(N), kill_at="promote:0").returncode == -signal.SIGKILL
    status = lorawb(project, "triage", check=True)
    assert "had written nothing yet: dropped" in status.stderr
    assert _inbox(project) == [] and not (project.matrices_dir / "m" / "ratings.json").exists()
