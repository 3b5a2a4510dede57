"""Symbolic links in dataset/: scans stay inside what the project means, writes stay inside the project.

A link to /, to the project (or above it) or into /proc is not followed and is named by the doctor;
at most ``layout.LINKED_FOLDERS`` folders are entered through links; a link loop keeps working; a
folder linked from elsewhere is read but never written through, unless it is the dataset folder the
user linked on purpose (``lorawb init --link``), and then only inside it.
"""

from __future__ import annotations

import os
import stat

import pytest

from lorawb.cli import main
from lorawb.core import caption_history as ch
from lorawb.core import caption_ops as co
from lorawb.core import layout
from lorawb.core.doctor import diagnose, render_text
from lorawb.core.index import ProjectIndex
from lorawb.core.project import Project, init_project
from lorawb.core.triage import Triage, TriageError
from lorawb.core.watch import ProjectWatcher
from tests.faults.helpers import TRIGGER, caption_project, captions

N = 8


def _add(project, tag="masterpiece") -> ch.ApplyResult:
    return ch.apply_changeset(project, co.build_changeset(project, co.AddTag(tag)))


def test_links_to_the_whole_machine_are_not_followed_and_the_doctor_names_them(tmp_path):
    project = caption_project(tmp_path, n=N)
    links = {
        "5_rootlink": "/",
        "5_project": str(project.root),
        "5_proc": "/proc/self",
        "5_sys": "/sys",
    }
    for name, target in links.items():
        os.symlink(target, project.dataset_dir / name)
    report = diagnose(project)
    assert report.image_files == N  # the project's images, and nothing from the rest of the disk
    assert {rel for rel, _ in report.links_not_followed} == set(links)
    text = render_text(report)
    assert "5_rootlink: it leads to / (the whole disk)" in text
    assert "5_proc: it leads into /proc" in text
    cs = co.build_changeset(project, co.AddTag("x"))  # `captions add x --dry-run` plans the project's captions
    assert len(cs.changes) == N and all(c.path.is_relative_to(project.dataset_dir) for c in cs.changes)


def test_a_link_loop_keeps_working(tmp_path):
    project = caption_project(tmp_path, n=N)
    folder = project.dataset_dir / "10_zkx_mira"
    os.symlink(folder, folder / "loop")  # a folder that holds itself
    os.symlink("..", folder / "up")  # back up to dataset/
    report = diagnose(project)
    assert report.image_files == N and report.duplicates == []
    assert [rel for rel, _ in report.links_not_followed] == ["10_zkx_mira/up"]
    assert len(_add(project).written) == N


def test_at_most_the_limit_of_linked_folders_is_entered_and_the_doctor_says_so(tmp_path, monkeypatch):
    project = caption_project(tmp_path, n=2)
    elsewhere = tmp_path / "elsewhere"
    for i in range(6):
        (elsewhere / f"f{i}").mkdir(parents=True)
        (elsewhere / f"f{i}" / "a.png").write_bytes(b"")
    os.symlink(elsewhere, project.dataset_dir / "5_big")
    monkeypatch.setattr(layout, "LINKED_FOLDERS", 3)
    found = list(layout.walk_images(project.dataset_dir, errors=(errors := [])))
    assert len([p for p in found if "5_big" in p.parts]) == 2  # 5_big itself and two of its folders
    assert [why for _, why in errors] == [f"{layout.LINK_NOT_FOLLOWED}: {layout.LIMIT_REACHED}"]  # said once


def test_a_folder_linked_from_elsewhere_is_read_but_never_written(tmp_path):
    project = caption_project(tmp_path, n=N)
    outside = tmp_path / "someone-elses"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"")
    (outside / "x.txt").write_text(f"{TRIGGER}, theirs")
    os.symlink(outside, project.dataset_dir / "5_theirs")
    result = _add(project)
    assert len(result.written) == N
    assert [c.rel for c in result.conflicts] == ["dataset/5_theirs/x.txt"]
    assert "outside the project" in result.conflicts[0].reason
    assert (outside / "x.txt").read_text() == f"{TRIGGER}, theirs"
    triage = Triage(project)
    try:
        with pytest.raises(TriageError, match="outside the project"):
            triage.reject("dataset/5_theirs/x.png")
    finally:
        triage.close()
    assert sorted(p.name for p in outside.iterdir()) == ["x.png", "x.txt"]  # nothing moved into rejected/


def test_a_dataset_linked_on_purpose_is_written_only_inside(tmp_path):
    images = tmp_path / "my-images"
    (images / "10_zkx_mira").mkdir(parents=True)
    for i in range(3):
        (images / "10_zkx_mira" / f"a{i}.png").write_bytes(b"")
        (images / "10_zkx_mira" / f"a{i}.txt").write_text(f"{TRIGGER}, {i}")
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.png").write_bytes(b"")
    (other / "b.txt").write_text(f"{TRIGGER}, other")
    os.symlink(other, images / "5_other")
    project = init_project(tmp_path / "p", trigger=TRIGGER, images=images, link=True)
    assert project.dataset_dir.is_symlink()
    result = _add(Project.load(project.root))
    assert len(result.written) == 3 and all(
        "masterpiece" in (images / "10_zkx_mira" / f"a{i}.txt").read_text() for i in range(3)
    )
    assert [c.rel for c in result.conflicts] == ["dataset/5_other/b.txt"]  # a link inside the linked folder
    assert (other / "b.txt").read_text() == f"{TRIGGER}, other"


def test_init_does_not_copy_the_whole_disk(tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    os.symlink("/", images / "root")
    assert main(["init", str(tmp_path / "p"), "--images", str(images)]) == 0
    assert sorted(p.name for p in (tmp_path / "p" / "dataset").iterdir()) == ["a.png"]
    assert captions(Project.load(tmp_path / "p")) == {}


def test_the_polling_watcher_does_not_walk_into_a_link_to_root(tmp_path):
    project = caption_project(tmp_path, n=2)
    os.symlink("/", project.dataset_dir / "5_rootlink")
    os.symlink(project.dataset_dir / "10_zkx_mira", project.dataset_dir / "10_zkx_mira" / "loop")
    index = ProjectIndex(project)
    watcher = ProjectWatcher(project, index, lambda batch: None, polling=True)  # not started: its polling stat
    for link in ("5_rootlink", "10_zkx_mira/loop"):
        assert stat.S_ISLNK(watcher._poll_stat(str(project.dataset_dir / link)).st_mode)
    assert stat.S_ISDIR(watcher._poll_stat(str(project.dataset_dir / "10_zkx_mira")).st_mode)
    index.close()
