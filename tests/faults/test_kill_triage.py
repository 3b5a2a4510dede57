"""kill -9 during a triage move: the image and its caption end up together, the decision is recorded,
and undo moves them back.

The kill lands between the image's move and its caption's (``move:1``, the worst place: before
the journal, the image sat in rejected/ without its caption and the log had no line for undo),
or before the first file moved (``move:0``: the reject is dropped).
"""

from __future__ import annotations

import signal

from tests.faults.helpers import caption_project, leftovers, lorawb

IMG = "dataset/10_zkx_mira/img_003.png"
REJ = "dataset/rejected/10_zkx_mira/img_003.png"


def _files(project) -> set[str]:
    return {
        p.relative_to(project.root).as_posix()
        for p in project.dataset_dir.rglob("img_003.*")
        if "outfits" not in p.parent.name
    }


def test_reject_killed_between_image_and_caption_is_finished_then_undone(tmp_path):
    project = caption_project(tmp_path, n=8)
    caption = (project.root / IMG).with_suffix(".txt").read_bytes()
    assert lorawb(project, "triage", "--reject", IMG, kill_at="move:1").returncode == -signal.SIGKILL
    assert _files(project) == {REJ, IMG.replace(".png", ".txt")}  # the kill split the pair

    listed = lorawb(project, "triage", "--list", "rejected", check=True)
    assert "finished an interrupted triage reject" in listed.stderr
    assert _files(project) == {REJ, REJ.replace(".png", ".txt")}
    assert REJ in listed.stdout

    lorawb(project, "triage", "--undo", check=True)  # the recorded decision is what undo takes back
    assert _files(project) == {IMG, IMG.replace(".png", ".txt")}
    assert (project.root / IMG).with_suffix(".txt").read_bytes() == caption
    assert leftovers(project) == []


def test_reject_killed_before_anything_moved_is_dropped(tmp_path):
    project = caption_project(tmp_path, n=8)
    assert lorawb(project, "triage", "--reject", IMG, kill_at="move:0").returncode == -signal.SIGKILL
    undo = lorawb(project, "triage", "--undo")
    assert "moved nothing yet: dropped" in undo.stderr
    assert _files(project) == {IMG, IMG.replace(".png", ".txt")}
