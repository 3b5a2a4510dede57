"""The Captions tab driven by the Pilot: keyboard editing, save, undo, bulk edits, conflicts, tables."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import DataTable, Static

from lorawb.tui.app import LorawbApp
from lorawb.tui.tabs.captions import CaptionsTab
from lorawb.tui.widgets.caption_editor import CaptionEditor
from lorawb.tui.widgets.caption_list import CaptionList
from lorawb.tui.widgets.caption_modals import BulkScreen, ConflictScreen
from tests.tui.conftest import settle

IMG0 = "dataset/10_zkx_mira/img_000.png"


def caption(project, i: int) -> str:
    return (project.dataset_dir / f"10_zkx_mira/img_{i:03d}.txt").read_text(encoding="utf-8")


def edit_elsewhere(path: Path, text: str) -> None:
    """Another program (an editor, a sync script) rewrites the caption."""
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))


def listed(app) -> int:
    return app.query_one(CaptionList).row_count


async def open_captions(pilot) -> CaptionsTab:
    await settle(pilot)
    await pilot.press("2")
    await settle(pilot)
    return pilot.app.query_one(CaptionsTab)


async def test_edit_with_keys_completion_save_and_undo(sample_like_project):
    project = sample_like_project
    before = caption(project, 0)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        assert tab.current == IMG0 and listed(app) == 12
        editor = app.query_one(CaptionEditor)
        await pilot.press("enter")  # edit the highlighted image
        assert editor.has_focus and editor.text == before.strip()
        await pilot.press("end", *", pix")
        assert editor.suggestion == "el art"  # completed from the dataset's own tags
        assert "pixel art" in str(app.query_one("#captions-candidates", Static).render())
        await pilot.press("enter")  # enter takes the completion too; it never adds a newline
        assert editor.text.endswith(", pixel art")
        await pilot.press(*", ph", "tab")
        assert editor.text.endswith(", pixel art, photo")
        await pilot.press("escape")  # save, back to the list
        await settle(pilot)
        assert caption(project, 0) == before.rstrip("\n") + ", pixel art, photo\n"  # trailing newline kept
        assert app.query_one(CaptionList).has_focus
        await pilot.press("u")
        await settle(pilot)
        assert caption(project, 0) == before
        assert editor.text == before.strip()
        await pilot.press("U")
        await settle(pilot)
        assert caption(project, 0).endswith(", pixel art, photo\n")


async def test_save_on_move_and_next_previous_by_key(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        await pilot.press("e")
        await pilot.press("end", *", rain")
        await pilot.press("ctrl+down")  # next image; the edit is saved on the way
        await settle(pilot)
        assert caption(project, 0).endswith(", rain\n")
        assert tab.current == "dataset/10_zkx_mira/img_001.png"
        assert app.query_one(CaptionEditor).has_focus
        assert app.query_one(CaptionEditor).text == caption(project, 1).strip()
        await pilot.press("end", *", snow", "ctrl+r")  # revert drops the unsaved edit
        assert app.query_one(CaptionEditor).text == caption(project, 1).strip()
        await pilot.press("ctrl+down")
        await settle(pilot)
        assert tab.current == "dataset/10_zkx_mira/img_002.png" and "snow" not in caption(project, 1)
        assert app.current_image == tab.current  # the app's selection (the Triage tab) follows
        await pilot.press("end", *", wind", "enter")  # enter: save, next image, still editing
        await settle(pilot)
        assert caption(project, 2).endswith(", wind\n") and "\n\n" not in caption(project, 2)
        assert tab.current == "dataset/10_zkx_mira/img_003.png" and app.query_one(CaptionEditor).has_focus
        await pilot.press("ctrl+up", "ctrl+up", "ctrl+up", "ctrl+up")  # stops at the first image
        await settle(pilot)
        assert tab.current == IMG0


async def test_list_follows_triage_selection_and_list(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        await pilot.press("1")  # in Triage: select another image, narrow the list
        app.select_image("dataset/10_zkx_mira/img_005.png")
        await pilot.press("2")
        await settle(pilot)
        assert tab.current == "dataset/10_zkx_mira/img_005.png"
        await pilot.press("1")
        app.image_list = tuple(f"dataset/10_zkx_mira/img_{i:03d}.png" for i in (5, 7, 9))
        await pilot.press("2")
        await settle(pilot)
        assert listed(app) == 3 and tab.current == "dataset/10_zkx_mira/img_005.png"


async def test_bulk_edit_previews_then_applies_then_undoes(sample_like_project):
    project = sample_like_project
    before = [caption(project, i) for i in range(12)]
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        await pilot.press("b")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BulkScreen)
        await pilot.press(*"masterpiece", "enter")
        await settle(pilot)
        summary = str(screen.query_one("#bulk-summary", Static).render())
        assert "add 'masterpiece' at end: would change 12 of 12 captions" in summary
        diff = str(screen.query_one("#bulk-diff", Static).render())
        assert "+zkx_mira, red outfit, forest, watercolor, masterpiece" in diff
        assert [caption(project, i) for i in range(12)] == before  # a preview writes nothing
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, BulkScreen)
        assert all(caption(project, i).endswith(", masterpiece\n") for i in range(12))
        await pilot.press("u")
        await settle(pilot)
        assert [caption(project, i) for i in range(12)] == before


async def test_bulk_edit_refuses_bad_input_and_stale_preview(sample_like_project):
    project = sample_like_project
    before = caption(project, 0)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        tab = app.query_one(CaptionsTab)
        tab.action_bulk("regex", a="(oops", b="x")
        await settle(pilot)
        screen = app.screen
        await pilot.press("enter")
        await settle(pilot)
        summary = screen.query_one("#bulk-summary", Static)
        assert "bad regex" in str(summary.render()) and summary.has_class("error")
        await pilot.press("ctrl+s")  # nothing to apply
        await settle(pilot)
        assert app.screen is screen and caption(project, 0) == before
        await pilot.press("escape")
        await settle(pilot)
        assert caption(project, 0) == before


async def test_conflict_on_save_take_theirs_or_keep_mine(sample_like_project):
    project = sample_like_project
    path = project.dataset_dir / "10_zkx_mira/img_000.txt"
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        editor = app.query_one(CaptionEditor)
        await pilot.press("e", "end", *", mine")
        edit_elsewhere(path, "zkx_mira, theirs\n")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConflictScreen)
        assert path.read_text() == "zkx_mira, theirs\n"  # never overwritten silently
        await pilot.press("c")  # compare
        text = str(app.screen.query_one("#conflict-text", Static).render())
        assert "-zkx_mira, theirs" in text and "+zkx_mira, red outfit, forest, watercolor, mine" in text
        await pilot.press("t")  # take theirs
        await settle(pilot)
        assert editor.text == "zkx_mira, theirs" and path.read_text() == "zkx_mira, theirs\n"
        assert not tab._dirty()

        await pilot.press("end", *", mine again")
        edit_elsewhere(path, "zkx_mira, theirs again\n")
        await pilot.press("ctrl+down")  # save on move meets the conflict: stays on this image
        await settle(pilot)
        assert isinstance(app.screen, ConflictScreen) and tab.current == IMG0
        await pilot.press("m")  # keep mine
        await settle(pilot)
        assert path.read_text() == "zkx_mira, theirs, mine again\n"
        app.query_one(CaptionList).focus()
        await pilot.press("u")  # undo gives theirs back
        await settle(pilot)
        assert path.read_text() == "zkx_mira, theirs again\n"


async def test_tag_table_filters_and_renames_across_the_selection(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        await pilot.press("t")
        tags = app.query_one("#captions-tag-table", DataTable)
        assert tags.has_focus
        row = [str(tags.get_row_at(i)[2]) for i in range(tags.row_count)].index("forest")
        tags.move_cursor(row=row)
        await pilot.press("enter")
        await settle(pilot)
        assert listed(app) == 3 and tab.filter.label == "has:forest"
        assert all("forest" in (tab.files[r].text or "") for r in tab.shown)
        await pilot.press("r")  # rename the tag across the list
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BulkScreen) and screen.query_one("#bulk-a").value == "forest"
        screen.query_one("#bulk-b").focus()
        await pilot.press(*"woods", "enter")
        await settle(pilot)
        assert "would change 3 of 3 captions" in str(screen.query_one("#bulk-summary", Static).render())
        await pilot.press("ctrl+s")
        await settle(pilot)
        texts = [caption(project, i) for i in range(12)]
        assert sum("woods" in t for t in texts) == 3 and not any("forest" in t for t in texts)
        await pilot.press("escape")  # back to the editor view, then clear the filter
        await pilot.press("escape")
        await settle(pilot)
        assert tab.filter is None and listed(app) == 12


async def test_composition_cell_filters_the_list(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        await pilot.press("c")
        table = app.query_one("#captions-comp-table", DataTable)
        assert table.has_focus
        assert [str(c) for c in table.get_row_at(0)] == ["forest", "1 ?", "1 ?", "1 ?", "0 !", "3"]
        table.move_cursor(row=0, column=1)  # forest x watercolor
        await pilot.press("enter")
        await settle(pilot)
        assert tab.filter.label == "forest × watercolor"
        assert tab.shown == ["dataset/10_zkx_mira/img_000.png"]


async def test_filter_query_and_palette(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        await pilot.press("slash")
        await pilot.press(*"has:beach -has:photo", "enter")
        await settle(pilot)
        assert listed(app) == 2 and "has:beach -has:photo" in str(app.query_one("#captions-status", Static).render())
        await pilot.press("slash", *"colour:red", "enter")
        await settle(pilot)
        assert listed(app) == 2  # a bad query is reported and changes nothing
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Captions: remove tag (b)" in titles and "Captions: undo (u)" in titles
        await pilot.press("ctrl+p", *"remove tag", "enter")
        await settle(pilot)
        assert isinstance(app.screen, BulkScreen)
        assert "2 images (filter: has:beach -has:photo)" in str(app.screen.query_one("#bulk-title", Static).render())
        assert tab.filter is not None


async def test_fits_80x24(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        for wid in ("#captions-list", "#captions-preview", "#captions-editor", "#captions-file"):
            region = app.query_one(wid).region
            assert region.width >= 10 and region.height >= 1 and region.bottom <= 23, wid
        await pilot.press("b")
        await settle(pilot)
        for wid in ("#bulk-op", "#bulk-a", "#bulk-diff-scroll", "#bulk-apply-btn"):
            region = app.screen.query_one(wid).region
            assert region.height >= 1 and region.bottom <= 24, wid
