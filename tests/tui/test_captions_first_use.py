"""The caption editor as a new user meets it: completion from the whole project, tab never saves a
half word, a visible editing state with one rule for keys, caption-wide Home/End, revert keeps the
cursor, the history keeps undone changes, and the composition is the dataset's."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.caption_editor import CaptionEditor
from lorawb.tui.widgets.caption_list import CaptionList
from lorawb.tui.widgets.history_modal import HistoryScreen
from tests.tui.conftest import make_image, settle
from tests.tui.test_captions_tab import caption, open_captions


def with_inbox(project, n: int = 2):
    for i in range(n):
        img = project.inbox_dir / f"cand_{i}.png"
        make_image(img, "beach", i)
        img.with_suffix(".txt").write_text("zkx_mira, beach\n", encoding="utf-8")
    return project


def hint(app) -> str:
    return str(app.query_one("#captions-candidates", Static).render())


async def test_completion_in_the_inbox_offers_the_datasets_tags(sample_like_project):
    app = LorawbApp(with_inbox(sample_like_project))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("i")  # Triage shows the inbox
        await settle(pilot)
        tab = await open_captions(pilot)
        assert tab.current.startswith("inbox/")
        editor = app.query_one(CaptionEditor)
        await pilot.press("e", "end", *", wat")
        assert editor.suggestion == "ercolor"  # a tag only the dataset's captions have
        await pilot.press("tab")
        assert editor.text.endswith(", watercolor")


async def test_tab_with_nothing_to_complete_stays_and_saves_nothing(sample_like_project):
    project = sample_like_project
    before = caption(project, 0)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        editor = app.query_one(CaptionEditor)
        await pilot.press("e", "end", *", zzq", "tab")
        await settle(pilot)
        assert editor.has_focus and editor.text.endswith(", zzq")
        assert caption(project, 0) == before  # the half-typed word was not saved


async def test_editing_is_visible_and_keys_type_until_esc(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        editor = app.query_one(CaptionEditor)
        assert "editing" not in str(editor.border_title)
        await pilot.press("e", "enter")  # save and next: still editing, and it says so
        await settle(pilot)
        assert tab.current == "dataset/10_zkx_mira/img_001.png"
        assert editor.has_focus and "editing" in str(editor.border_title) and editor.has_class("-editing")
        assert "keys type here" in hint(app) and "esc" in hint(app)
        await pilot.press("end", "3")  # the rule: while editing, keys type (no tab switch)
        assert app.active_tab == "captions" and editor.text.endswith("3")
        await pilot.press("backspace", "escape")
        await settle(pilot)
        assert app.query_one(CaptionList).has_focus and "editing" not in str(editor.border_title)
        await pilot.press("3")
        assert app.active_tab == "train"


async def test_home_end_go_by_the_caption_and_revert_keeps_the_cursor(sample_like_project):
    project = sample_like_project
    text = "zkx_mira, " + ", ".join(f"a rather long tag number {i}" for i in range(6))
    (project.dataset_dir / "10_zkx_mira/img_000.txt").write_text(text + "\n", encoding="utf-8")
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        editor = app.query_one(CaptionEditor)
        await pilot.press("e", "ctrl+home")
        assert editor.cursor_location == (0, 0)
        assert editor.wrapped_document.height > 2  # wrapped over several rows on screen
        await pilot.press("end")
        assert editor.cursor_location == (0, len(text))  # the caption's end, not the first row's
        await pilot.press("home")
        assert editor.cursor_location == (0, 0)
        await pilot.press("ctrl+end")
        assert editor.cursor_location == editor.document.end
        editor.move_cursor((0, 12))
        await pilot.press("x", "ctrl+r")  # revert the unsaved edit
        await settle(pilot)
        assert editor.text == text and editor.cursor_location == (0, 13)


async def test_history_keeps_a_change_that_was_undone_before_a_new_edit(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        await pilot.press("e", "end", *", rain", "escape")
        await settle(pilot)
        await pilot.press("u")  # undone...
        await settle(pilot)
        await pilot.press("down", "e", "end", *", snow", "escape")  # ...then another edit
        await settle(pilot)
        await pilot.press("H")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        table = app.screen.query_one("#history-table", DataTable)
        labels = [str(table.get_row_at(i)[-1]) for i in range(table.row_count)]
        assert labels == [
            "edit dataset/10_zkx_mira/img_001.png",
            "edit dataset/10_zkx_mira/img_000.png (undone), replaced by a later edit",
        ]


async def test_the_composition_is_the_datasets_whatever_the_list_shows(sample_like_project):
    app = LorawbApp(with_inbox(sample_like_project))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        tab = await open_captions(pilot)
        assert tab.current.startswith("inbox/")
        await pilot.press("c")
        await settle(pilot)
        assert tab.comp is not None and tab.comp.total == 12  # the dataset's captions, not the inbox's 2
        head = str(app.query_one("#captions-comp-head", Static).render())
        assert "the dataset's 12 captions" in head and "not the list's" in head
        assert "name no context" not in head and "all name a context, a style" in head
        table = app.query_one("#captions-comp-table", DataTable)
        assert [str(c) for c in table.get_row_at(0)] == ["forest", "1 ?", "1 ?", "1 ?", "0 !", "3"]
