"""The rules of editing one caption, without an app: save, conflict, keep mine / take theirs, follow a move,
a change made elsewhere (lorawb.core.caption_edit; the Captions tab shows these outcomes)."""

from __future__ import annotations

import os
import shutil

import pytest

from lorawb.core.caption_edit import Conflict, OpenCaption, Saved
from lorawb.core.caption_writes import CaptionWrites
from lorawb.core.index import ProjectIndex
from tests.tui.conftest import build_project

IMG = "dataset/10_zkx_mira/img_000.png"
ME = "window-test"


@pytest.fixture
def project(tmp_path):
    return build_project(tmp_path / "proj", n=3)


def elsewhere(path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))


def test_save_writes_only_a_change_and_keeps_the_files_whitespace(project):
    cap = project.root / IMG.replace(".png", ".txt")
    cap.write_text("zkx_mira, forest\nline two\n", encoding="utf-8")
    opened = OpenCaption.open(project, IMG)
    writes = CaptionWrites(project)
    assert opened.save(opened.body, writes, ME) == Saved()  # nothing changed: nothing written
    out = opened.save("zkx_mira, forest, rain\nline two", writes, ME)
    assert isinstance(out, Saved) and out.result is not None and out.result.written
    assert cap.read_text(encoding="utf-8") == "zkx_mira, forest, rain\nline two\n"
    assert not opened.dirty("zkx_mira, forest, rain\nline two")  # the next save compares with what was written
    index = ProjectIndex(project)
    try:
        assert index.load_cached().facts[IMG].caption_text == "zkx_mira, forest, rain\nline two\n"  # told the index
    finally:
        index.close()


def test_a_caption_changed_on_disk_is_a_conflict_then_keep_mine_or_take_theirs(project):
    cap = project.root / IMG.replace(".png", ".txt")
    opened = OpenCaption.open(project, IMG)
    elsewhere(cap, "zkx_mira, theirs\n")
    out = opened.save("zkx_mira, mine", CaptionWrites(project), ME)
    assert isinstance(out, Conflict)
    assert (out.caption, out.theirs, out.mine) == (
        IMG.replace(".png", ".txt"),
        "zkx_mira, theirs\n",
        "zkx_mira, mine\n",
    )
    assert cap.read_text() == "zkx_mira, theirs\n"  # never overwritten by the save
    assert isinstance(opened.keep_mine(out.mine, CaptionWrites(project), ME), Saved)
    assert cap.read_text() == "zkx_mira, mine\n"
    elsewhere(cap, "zkx_mira, theirs again\n")
    opened.take_theirs()
    assert opened.body == "zkx_mira, theirs again"


def test_a_move_elsewhere_is_followed_and_an_unsaved_edit_stays_unsaved(project):
    opened = OpenCaption.open(project, IMG)
    edited = opened.body + ", rain"
    dest = project.dataset_dir / "rejected" / "10_zkx_mira"
    dest.mkdir(parents=True)
    for ext in (".png", ".txt"):
        shutil.move(project.root / IMG.replace(".png", ext), dest / ("img_000" + ext))
    assert opened.moved_to("dataset/rejected/10_zkx_mira/img_000.png")
    assert opened.image == "dataset/rejected/10_zkx_mira/img_000.png" and opened.dirty(edited)
    assert isinstance(opened.save(edited, CaptionWrites(project), ME), Saved)
    assert (dest / "img_000.txt").read_text().rstrip("\n").endswith(", rain")


def test_a_change_made_elsewhere_reloads_or_asks(project):
    cap = project.root / IMG.replace(".png", ".txt")
    opened = OpenCaption.open(project, IMG)
    os.utime(cap)  # touched: the same text
    assert opened.changed_outside(opened.body).kind == "unchanged"
    elsewhere(cap, "zkx_mira, theirs\n")
    assert opened.changed_outside(opened.body).kind == "reloaded" and opened.body == "zkx_mira, theirs"
    elsewhere(cap, "zkx_mira, theirs again\n")
    out = opened.changed_outside("zkx_mira, my unsaved edit")
    assert out.kind == "conflict" and out.conflict.theirs == "zkx_mira, theirs again\n"
    cap.unlink()
    out = opened.changed_outside("zkx_mira, my unsaved edit")
    assert out.kind == "conflict" and out.conflict.theirs is None and "deleted" in out.conflict.reason
    (project.root / IMG).unlink()
    assert opened.changed_outside(opened.body).kind == "gone"
