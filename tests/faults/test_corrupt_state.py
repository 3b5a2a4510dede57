"""A damaged .lorawb/state.sqlite (garbage, half a file, a header only): moved aside as
state.sqlite.corrupt-<time>, rebuilt from the files, and what was lost is said; no traceback, and the
running app survives the damage on its next key."""

from __future__ import annotations

import os

import pytest

from lorawb.tui.app import LorawbApp
from tests.faults.helpers import caption_project, captions, lorawb
from tests.tui.conftest import build_project, settle

IMG = "dataset/10_zkx_mira/img_001.png"


def damage(db, how: str) -> None:
    data = db.read_bytes()
    if how == "garbage":
        db.write_bytes(os.urandom(len(data)))
    elif how == "half":
        db.write_bytes(data[: len(data) // 2])
    else:  # the 100-byte header alone
        db.write_bytes(data[:100])
    for suffix in ("-wal", "-shm"):  # what a copy of the file alone, or a sync tool, leaves
        if os.path.exists(f"{db}{suffix}"):
            os.unlink(f"{db}{suffix}")


@pytest.mark.parametrize("how", ["garbage", "half", "header"])
def test_commands_move_a_damaged_database_aside_and_go_on(tmp_path, how):
    project = caption_project(tmp_path, n=8)
    lorawb(project, "captions", "add", "first", check=True)
    damage(project.state_dir / "state.sqlite", how)

    added = lorawb(project, "captions", "add", "second")
    assert added.returncode == 0 and "Traceback" not in added.stderr, added.stderr
    assert "moved aside as state.sqlite.corrupt-" in added.stderr and "Lost:" in added.stderr
    assert all(b"second" in text for text in captions(project).values())  # rebuilt from the files: all 8 found
    aside = [n for n in os.listdir(project.state_dir) if n.startswith("state.sqlite.corrupt-")]
    assert len([n for n in aside if not n.endswith("-wal")]) == 1  # (its WAL, if it had one, beside it)
    if how != "garbage":
        return
    undo = lorawb(project, "captions", "undo", check=True)  # the fresh database works for every command
    assert "second" in undo.stdout  # the new history is whole; the old one is what was lost
    rejected = lorawb(project, "triage", "--reject", IMG)
    assert rejected.returncode == 0, rejected.stderr
    assert (project.dataset_dir / "rejected/10_zkx_mira/img_001.png").exists()


def test_what_was_lost_is_counted_when_the_old_file_still_reads(tmp_path):
    from lorawb.core import state

    project = caption_project(tmp_path, n=8)
    lorawb(project, "triage", "--keep", IMG, check=True)
    lorawb(project, "captions", "add", "first", check=True)
    notice = state.quarantine(project.state_dir, "damaged on purpose")
    assert notice is not None and "1 keep/flag mark, 1 caption history entry" in notice


async def test_the_running_app_survives_the_damage_on_its_next_key(tmp_path):
    project = build_project(tmp_path / "proj", n=6)
    app = LorawbApp(project)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        damage(project.state_dir / "state.sqlite", "garbage")
        # The next keys: keep this image, reject the next. The first connection opened after the damage
        # meets it (each worker thread has its own); the app says what was lost and rebuilds the index.
        await pilot.press("y")
        await settle(pilot)
        current = app.current_image
        await pilot.press("x")
        await settle(pilot)
        notes = [n.message for n in app._notifications]
        assert any("moved aside as state.sqlite.corrupt-" in n and "Lost:" in n for n in notes), notes
        rejected = project.dataset_dir / "rejected" / current.split("/", 1)[1]
        if not rejected.exists():  # the decision that met the damage was lost ("try again"): do it again
            assert any("try again" in n for n in notes), notes
            await pilot.press("x")
            await settle(pilot)
        assert rejected.exists()
        assert "5 images" in app.sub_title  # the index rebuilt from the files: 6, one rejected
