"""Small Captions-tab things a new user trips on: vi keys in the list, the conflict dialog's names, plurals."""

from __future__ import annotations

import os

from textual.widgets import Static

from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.caption_editor import CaptionEditor
from lorawb.tui.widgets.caption_list import CaptionList
from lorawb.tui.widgets.caption_modals import ConflictScreen
from tests.tui.conftest import settle
from tests.tui.test_captions_tab import open_captions


def messages(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_j_k_g_G_move_in_the_captions_list(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        clist = app.query_one(CaptionList)
        assert clist.has_focus and clist.cursor == 0
        await pilot.press("j", "j")
        await settle(pilot)
        assert clist.cursor == 2 and tab.current == "dataset/10_zkx_mira/img_002.png"
        await pilot.press("k")
        await settle(pilot)
        assert clist.cursor == 1
        await pilot.press("G")
        await settle(pilot)
        assert clist.cursor == clist.row_count - 1 and tab.current == "dataset/10_zkx_mira/img_011.png"
        await pilot.press("g")
        await settle(pilot)
        assert clist.cursor == 0 and tab.current == "dataset/10_zkx_mira/img_000.png"


async def test_conflict_dialog_names_the_caption_file_not_the_image(sample_like_project):
    project = sample_like_project
    path = project.dataset_dir / "10_zkx_mira/img_000.txt"
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        await pilot.press("e", "end", *", mine")
        path.write_text("zkx_mira, theirs\n", encoding="utf-8")
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConflictScreen)
        title = str(app.screen.query_one("#conflict-title", Static).render())
        assert title.startswith("dataset/10_zkx_mira/img_000.txt:")
        await pilot.press("c")
        diff = str(app.screen.query_one("#conflict-text", Static).render())
        assert "on disk: dataset/10_zkx_mira/img_000.txt" in diff and "yours: dataset/10_zkx_mira/img_000.txt" in diff
        assert "img_000.png" not in diff
        await pilot.press("escape")


async def test_undo_of_one_caption_says_one_caption(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        editor = app.query_one(CaptionEditor)
        await pilot.press("e", "end", *", hat")
        assert editor.text.endswith(", hat")
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        undone = [m for m in messages(app) if m.startswith("undo edit")]
        assert undone and undone[-1].endswith("restored 1 caption"), messages(app)


async def test_one_caption_without_the_trigger_lacks_it_in_the_singular(sample_like_project):
    project = sample_like_project
    (project.dataset_dir / "10_zkx_mira/img_003.txt").write_text("red outfit, forest\n", encoding="utf-8")
    app = LorawbApp(project)
    async with app.run_test(size=(120, 24)) as pilot:
        await open_captions(pilot)
        status = str(app.query_one("#captions-status", Static).render())
        assert "12 images · 12 captioned · 1 lacks zkx_mira" in status, status
