"""kill -9 during a bulk caption edit (and during its undo): every caption is old or new, the next
command finishes the edit so the history can undo it, and no temp file stays behind.

The kill lands at a chosen point through lorawb's own test hook (``LORAWB_TEST_KILL_AT``): before
the first rename, every temp file written (no caption changed yet: the edit is dropped), and
between two renames in the middle (finished). (``journaled:0``, just after the intent, is the
same case for recovery.)
"""

from __future__ import annotations

import signal

import pytest

from lorawb.core import caption_history as ch
from lorawb.core import caption_ops as co
from tests.faults.helpers import TRIGGER, caption_project, captions, leftovers, lorawb

ADD = ("captions", "add", "masterpiece", "--at", "after-trigger")


def _after(project) -> dict[str, bytes]:
    """What the finished edit writes: the change set the command builds, computed here (nothing written)."""
    cs = co.build_changeset(project, co.AddTag("masterpiece", at="after-trigger", trigger=TRIGGER))
    assert len(cs.changes) == len(captions(project))
    return {c.rel: ch.new_bytes(c) for c in cs.changes}


@pytest.mark.parametrize("kill_at", ["rename:23"])
def test_edit_killed_in_the_rename_phase_is_finished_then_undone(tmp_path, kill_at):
    project = caption_project(tmp_path)
    before = captions(project)
    after = _after(project)

    killed = lorawb(project, *ADD, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL
    now = captions(project)
    assert all(now[k] in (before[k], after[k]) for k in before)  # each old or new, none half
    assert leftovers(project)  # the kill left its temp files (the hook kills after they were written)

    history = lorawb(project, "captions", "history", check=True)
    assert "finished an interrupted caption edit" in history.stderr
    assert "masterpiece" in history.stdout
    assert captions(project) == after  # the edit was finished...
    assert leftovers(project) == []  # ...and its temp files removed

    lorawb(project, "captions", "undo", check=True)
    assert captions(project) == before  # ...and undone, byte for byte


@pytest.mark.parametrize("kill_at", ["rename:0"])
def test_edit_killed_before_any_file_changed_is_dropped(tmp_path, kill_at):
    project = caption_project(tmp_path)
    before = captions(project)
    assert lorawb(project, *ADD, kill_at=kill_at).returncode == -signal.SIGKILL
    undo = lorawb(project, "captions", "undo")
    assert "nothing was written" in undo.stderr
    assert "nothing to undo" in (undo.stdout + undo.stderr).lower()
    assert captions(project) == before and leftovers(project) == []


def test_undo_killed_mid_way_is_finished(tmp_path):
    project = caption_project(tmp_path)
    before = captions(project)
    lorawb(project, *ADD, check=True)
    after = captions(project)
    assert lorawb(project, "captions", "undo", kill_at="rename:17").returncode == -signal.SIGKILL
    assert sum(captions(project)[k] == before[k] for k in before) == 17
    redo = lorawb(project, "captions", "redo", check=True)  # the undo is finished first, then redone
    assert "finished an interrupted undo" in redo.stderr
    assert captions(project) == after and leftovers(project) == []


async def test_the_app_finishes_an_interrupted_edit_when_it_starts(tmp_path):
    from lorawb.tui.app import LorawbApp
    from tests.tui.conftest import settle

    project = caption_project(tmp_path, n=20, images=True)
    after = _after(project)
    assert lorawb(project, *ADD, kill_at="rename:7").returncode == -signal.SIGKILL
    app = LorawbApp(project)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        notes = [n.message for n in app._notifications]
        assert any("finished an interrupted caption edit" in n for n in notes), notes
    assert captions(project) == after and leftovers(project) == []
    assert ch.history(project)[0].label.startswith("add 'masterpiece'")  # undoable like any edit
