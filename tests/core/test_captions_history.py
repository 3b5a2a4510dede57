"""Applying change sets, conflicts with changes made on disk, and undo/redo that survives a restart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorawb.core import caption_history as ch
from lorawb.core import caption_ops as co
from lorawb.core.fsutil import decode_bytes, detect_newline
from lorawb.core.project import Project
from tests.core.captions_data import TRIGGER, make_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "p")


def snapshot(project: Project) -> dict[str, bytes]:
    """Every caption file's bytes."""
    root = project.dataset_dir
    return {
        p.relative_to(project.root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.suffix in (".txt", ".caption")
    }


def texts(project: Project) -> dict[str, tuple[str, str]]:
    """Every caption's text and newline style: what undo must restore (a BOM or cp1252 comes back as UTF-8)."""
    return {k: (decode_bytes(v)[0], detect_newline(decode_bytes(v)[0])) for k, v in snapshot(project).items()}


def bump(path: Path, text: str) -> None:
    """Another program edits the file (and its mtime surely moves)."""
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_apply_keeps_encoding_bom_and_newline_style_and_records(project):
    before = snapshot(project)
    cs = co.build_changeset(project, co.AddTag("masterpiece", at="after-trigger", trigger=TRIGGER))
    res = ch.apply_changeset(project, cs)
    assert res.op_id is not None and not res.conflicts
    assert len(res.written) == len(cs) == 300
    after = snapshot(project)
    crlf = "dataset/5_extra/img_0027.txt"
    assert before[crlf].endswith(b"\r\n") and after[crlf].endswith(b"\r\n") and after[crlf].count(b"\r\n") == 1
    bom = "dataset/5_extra/img_0006.txt"
    assert before[bom].startswith(b"\xef\xbb\xbf") and after[bom].startswith(b"\xef\xbb\xbf")  # the BOM stays
    cp = "dataset/10_zkx_mira/img_0010.txt"  # cp1252 in, cp1252 out (it can hold the new text)
    op = co.AddTag("masterpiece", at="after-trigger", trigger=TRIGGER)
    assert after[cp] == op.rewrite(before[cp].decode("cp1252")).encode("cp1252")
    assert "café".encode("cp1252") in after[cp]
    assert (
        project.dataset_dir / "10_zkx_mira/img_0049.txt"
    ).read_text() == "zkx_mira, masterpiece"  # created, trigger first
    assert not list(project.dataset_dir.rglob(".*.tmp"))
    hist = ch.history(project)
    assert [(h.label, h.files, h.state) for h in hist] == [("add 'masterpiece' at after-trigger", 300, "applied")]


def test_apply_never_overwrites_a_change_made_on_disk(project):
    cs = co.build_changeset(project, co.ReplaceTag("rain", "snow"))
    victim = cs.changes[3]
    bump(victim.path, "edited elsewhere, rain")
    touched = cs.changes[4]  # same content, new mtime: not a conflict
    os.utime(touched.path, ns=(0, touched.mtime_ns + 7_000_000_000))
    res = ch.apply_changeset(project, cs)
    assert [c.rel for c in res.conflicts] == [victim.rel]
    assert "changed on disk" in res.conflicts[0].reason
    assert victim.path.read_text() == "edited elsewhere, rain"
    assert len(res.written) == len(cs) - 1 and touched.rel in res.written
    # A deleted file is a conflict too, and so is a caption created since it was read as missing.
    cs2 = co.build_changeset(project, co.SetTrigger("qvr_lena"))
    gone = next(c for c in cs2.changes if c.old is not None)
    gone.path.unlink()
    new = next(c for c in cs2.changes if c.old is None)
    new.path.write_text("made by a tagger")
    res2 = ch.apply_changeset(project, cs2)
    assert {c.rel: c.reason for c in res2.conflicts} == {
        gone.rel: "deleted on disk by another program",
        new.rel: "created on disk by another program",
    }
    assert not gone.path.exists() and new.path.read_text() == "made by a tagger"


def test_undo_restores_every_file_and_redo_reapplies(project):
    before, before_bytes = texts(project), snapshot(project)
    cs = co.build_changeset(project, co.ReplaceTag("red scarf", "blue scarf"))
    ch.apply_changeset(project, cs)
    applied = snapshot(project)
    [res] = ch.undo(project)
    assert res.label == "undo replace 'red scarf' with 'blue scarf'" and len(res.written) == len(cs)
    assert texts(project) == before
    assert snapshot(project) == before_bytes  # byte for byte: BOMs, cp1252, CRLF as they were
    assert ch.history(project)[0].state == "undone"
    [red] = ch.redo(project)
    assert len(red.written) == len(cs) and snapshot(project) == applied
    assert ch.redo(project) == []


def test_undo_deletes_a_caption_file_the_operation_created(project):
    img = "dataset/10_zkx_mira/img_0049.txt"
    ch.apply_changeset(project, co.build_changeset(project, co.AddTag("x")))
    assert (project.root / img).read_text() == "x"
    ch.undo(project)
    assert not (project.root / img).exists()


def test_several_steps_back_and_a_new_edit_ends_redo_but_the_history_keeps_them(project):
    before = texts(project)
    for op in (co.AddTag("one"), co.AddTag("two"), co.RemoveTag("rain")):
        assert ch.apply_changeset(project, co.build_changeset(project, op)).written
    results = ch.undo(project, 2)
    assert [r.label for r in results] == ["undo remove 'rain'", "undo add 'two' at end"]
    text = (project.dataset_dir / "10_zkx_mira/img_0001.txt").read_text()
    assert "one" in text and "two" not in text and "rain" in text
    ch.apply_changeset(project, co.build_changeset(project, co.AddTag("three")))
    hist = ch.history(project)
    assert [(h.label, h.state) for h in hist] == [
        ("add 'three' at end", "applied"),
        ("remove 'rain'", "superseded"),
        ("add 'two' at end", "superseded"),
        ("add 'one' at end", "applied"),
    ]
    assert ch.redo(project) == []
    assert len(ch.undo(project, 10)) == 2
    assert texts(project) == before
    assert ch.undo(project) == []


def test_undo_refuses_files_changed_since_and_reverts_the_rest(project):
    cs = co.build_changeset(project, co.AddTag("masterpiece"))
    ch.apply_changeset(project, cs)
    mine = cs.changes[0].path
    bump(mine, "someone else's caption")
    [res] = ch.undo(project)
    assert [c.rel for c in res.conflicts] == [cs.changes[0].rel]
    assert "changed on disk" in res.conflicts[0].reason
    assert mine.read_text() == "someone else's caption"
    assert len(res.written) == len(cs) - 1
    assert "masterpiece" not in cs.changes[1].path.read_text()
    # Redo goes back over the reverted files only; the refused one is still refused.
    [red] = ch.redo(project)
    assert len(red.written) == len(cs) - 1 and not red.conflicts
    assert mine.read_text() == "someone else's caption"


def test_undo_after_a_restart(project):
    """The history lives in .lorawb/state.sqlite: a new process (the CLI, the app restarted) can undo."""
    before = (project.dataset_dir / "10_zkx_mira/img_0001.txt").read_text()
    ch.apply_changeset(project, co.build_changeset(project, co.AddTag("one")))
    ch.apply_changeset(project, co.build_changeset(project, co.AddTag("two")))
    code = (
        "import sys; from lorawb.core.project import Project; from lorawb.core import caption_history as ch;"
        "r = ch.undo(Project.load(sys.argv[1]), 2); print(sum(len(x.written) for x in r), len(r))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(project.root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.split() == ["600", "2"]
    assert (project.dataset_dir / "10_zkx_mira/img_0001.txt").read_text() == before
    # And the reopened history says so.
    assert [h.state for h in ch.history(Project.load(project.root))] == ["undone", "undone"]


def test_history_is_bounded(project, monkeypatch):
    monkeypatch.setattr(ch, "HISTORY_LIMIT", 3)
    for i in range(5):
        ch.apply_changeset(project, co.build_changeset(project, co.AddTag(f"t{i}"), co.parse_where("in:5_extra")))
    assert [h.label for h in ch.history(project)] == ["add 't4' at end", "add 't3' at end", "add 't2' at end"]
    conn = ch.connect(project)
    try:
        n = conn.execute("SELECT COUNT(DISTINCT op_id) FROM caption_op_files").fetchone()[0]
    finally:
        conn.close()
    assert n == 3  # the forgotten operations' file rows went with them
    # Big operations are forgotten sooner: the file versions kept are bounded too (never the newest).
    monkeypatch.setattr(ch, "HISTORY_ROWS", 150)
    ch.apply_changeset(project, co.build_changeset(project, co.AddTag("t5"), co.parse_where("in:5_extra")))
    assert [h.label for h in ch.history(project)] == ["add 't5' at end"]
    ch.apply_changeset(project, co.build_changeset(project, co.AddTag("t6")))
    assert [h.label for h in ch.history(project)] == ["add 't6' at end"]


def test_edit_changeset_for_one_caption(project):
    cf = co.read_caption(project.root, project.dataset_dir / "10_zkx_mira/img_0001.png")
    cs = co.edit_changeset(project, cf, "zkx_mira, typed by hand\n")
    assert len(cs) == 1 and cs.label == "edit dataset/10_zkx_mira/img_0001.png"
    res = ch.apply_changeset(project, cs)
    assert res.written == ["dataset/10_zkx_mira/img_0001.txt"]
    assert cf.path.read_text() == "zkx_mira, typed by hand\n"
    ch.undo(project)
    assert cf.path.read_text() == cf.text


def test_atomic_write_many(tmp_path):
    """The batch writer under the caption engine: veto, mode kept, per-file errors, no temp files left."""
    from lorawb.core.fsutil import atomic_write_many

    files = [tmp_path / f"f{i}.txt" for i in range(300)]
    for f in files:
        f.write_text("old")
    files[1].chmod(0o640)
    (tmp_path / "f2.txt").unlink()
    (tmp_path / "f2.txt").mkdir()  # a rename over a folder fails
    errors: dict[int, str] = {}
    done = atomic_write_many(
        [(f, f"new {i}".encode()) for i, f in enumerate(files)], before_replace=lambda i: i != 0, errors=errors
    )
    assert sorted(done) == [i for i in range(300) if i not in (0, 2)]
    assert files[0].read_text() == "old" and files[3].read_text() == "new 3"
    assert list(errors) == [2] and errors[2].startswith("cannot write:")
    assert files[1].stat().st_mode & 0o777 == 0o640
    st = files[5].stat()
    assert (done[5].st_mtime_ns, done[5].st_size) == (st.st_mtime_ns, st.st_size)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
