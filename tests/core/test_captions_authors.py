"""Who made each caption change: a window undoes its own; the CLI undoes the latest and names its author."""

from __future__ import annotations

import sqlite3

import pytest

from lorawb.cli import main
from lorawb.core import caption_history as ch
from lorawb.core import caption_ops as co
from lorawb.core import state
from lorawb.core.project import Project
from tests.core.captions_data import make_project

A, B = "app:aaaaaa", "app:bbbbbb"
IMG1, IMG2 = "dataset/10_zkx_mira/img_0001.png", "dataset/10_zkx_mira/img_0002.png"


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "p")


def text(project: Project, image: str) -> str:
    return (project.root / image).with_suffix(".txt").read_text(encoding="utf-8")


def hand_edit(project: Project, image: str, new: str, author: str) -> ch.ApplyResult:
    [cf] = co.load_captions(project, co.Selection(files=(image,)))
    return ch.apply_changeset(project, co.edit_changeset(project, cf, new), author)


def test_a_window_undoes_its_own_change_never_another_windows_later_one(project):
    one, two = text(project, IMG1), text(project, IMG2)
    hand_edit(project, IMG1, "zkx_mira, by window a\n", A)
    hand_edit(project, IMG2, "zkx_mira, by window b\n", B)  # later, in the other window
    [res] = ch.undo(project, author=A)
    assert res.author == A and res.written == ["dataset/10_zkx_mira/img_0001.txt"]
    assert text(project, IMG1) == one and text(project, IMG2) == "zkx_mira, by window b\n"
    assert ch.undo(project, author=A) == []  # nothing more of A's
    assert ch.redo(project, author=B) == []  # B undid nothing: its redo is empty
    [red] = ch.redo(project, author=A)
    assert red.written and text(project, IMG1) == "zkx_mira, by window a\n"
    # B's new edit does not drop A's redo steps
    ch.undo(project, author=A)
    hand_edit(project, IMG2, "zkx_mira, b again\n", B)
    assert [r.written for r in ch.redo(project, author=A)] == [["dataset/10_zkx_mira/img_0001.txt"]]
    assert text(project, IMG2) == "zkx_mira, b again\n" and two != text(project, IMG2)


def test_a_change_made_elsewhere_is_undone_by_its_id_and_later_edits_block_it(project):
    one = text(project, IMG1)
    first = hand_edit(project, IMG1, "zkx_mira, cli edit\n", ch.CLI)
    second = hand_edit(project, IMG1, "zkx_mira, window edit\n", A)
    assert "+zkx_mira, cli edit" in ch.entry_diff(project, first.op_id)
    blocked = ch.undo_op(project, first.op_id, author=A)
    assert not blocked.written and f"change #{second.op_id}" in blocked.conflicts[0].reason
    assert text(project, IMG1) == "zkx_mira, window edit\n"
    assert ch.entry(project, first.op_id).state == "applied"  # refused: still there to undo
    ch.undo(project, author=A)  # the later change undone, the chosen one can go now
    done = ch.undo_op(project, first.op_id, author=A)
    assert done.written and text(project, IMG1) == one
    with pytest.raises(Exception, match="already undone"):
        ch.undo_op(project, first.op_id, author=A)


def test_cli_undo_takes_the_latest_change_of_anyone_and_says_who_made_it(project, capsys):
    hand_edit(project, IMG1, "zkx_mira, by window a\n", A)
    assert main(["captions", str(project.root), "history"]) == 0
    out = capsys.readouterr().out
    assert "window aaaaaa" in out and "1 file " in out
    assert main(["captions", str(project.root), "undo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("undo edit dataset/10_zkx_mira/img_0001.png: restored 1 caption (made by window aaaaaa at ")


def test_an_existing_projects_history_is_migrated_and_still_undoes(tmp_path):
    project = make_project(tmp_path / "p")
    path = project.root / "dataset/10_zkx_mira/img_0001.txt"
    old = path.read_text(encoding="utf-8")
    path.write_text("zkx_mira, written by an older lorawb\n", encoding="utf-8")
    st = path.stat()
    # The history table as lorawb made it before authors and bytes were recorded.
    db = state.state_db_path(project.state_dir)
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE caption_ops (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
            label TEXT NOT NULL, files INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'applied');
        CREATE TABLE caption_op_files (op_id INTEGER NOT NULL REFERENCES caption_ops(id) ON DELETE CASCADE,
            path TEXT NOT NULL, old TEXT, new TEXT, newline TEXT NOT NULL, applied INTEGER NOT NULL,
            mtime_ns INTEGER, size INTEGER, PRIMARY KEY (op_id, path));
        """
    )
    conn.execute("INSERT INTO caption_ops (created, label, files) VALUES (1.0, 'old edit', 1)")
    conn.execute(
        "INSERT INTO caption_op_files VALUES (1, ?, ?, ?, '\n', 1, ?, ?)",
        ("dataset/10_zkx_mira/img_0001.txt", old, "zkx_mira, written by an older lorawb\n", st.st_mtime_ns, st.st_size),
    )
    conn.commit()
    conn.close()
    [entry] = ch.history(project)
    assert entry.author is None and ch.describe_author(entry.author).startswith("unknown")
    hand_edit(project, IMG2, "zkx_mira, new\n", A)  # a new row beside the old one
    [res] = ch.undo(project)  # the CLI: the latest, A's
    assert res.author == A
    [res] = ch.undo(project)
    assert res.label == "undo old edit" and path.read_text(encoding="utf-8") == old
