"""Nothing lost, nothing surprising: quitting with an unsaved edit asks; each window undoes its own changes."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from lorawb.core import caption_history as ch
from lorawb.core import caption_ops as co
from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.caption_editor import CaptionEditor
from lorawb.tui.widgets.caption_list import CaptionList
from lorawb.tui.widgets.caption_modals import ConflictScreen
from lorawb.tui.widgets.history_modal import HistoryScreen
from lorawb.tui.widgets.unsaved_modal import UnsavedScreen
from tests.tui.conftest import settle
from tests.tui.test_captions_tab import caption, edit_elsewhere, open_captions

IMG1 = "dataset/10_zkx_mira/img_001.png"


async def type_unsaved(pilot, text: str = ", unsaved") -> None:
    await pilot.press("e", "end", *text)
    assert pilot.app.query_one("#captions").unsaved() == "img_000.txt"


async def test_quit_with_an_unsaved_edit_asks_and_save_writes_it(sample_like_project):
    project = sample_like_project
    before = caption(project, 0)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        await type_unsaved(pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert isinstance(app.screen, UnsavedScreen) and app.is_running
        assert "img_000.txt has an unsaved edit" in str(app.screen.query_one("#unsaved-title", Static).render())
        assert caption(project, 0) == before  # nothing written yet
        await pilot.press("s")
        await settle(pilot)
    assert caption(project, 0) == before.rstrip("\n") + ", unsaved\n"
    assert app.return_code == 0


async def test_quit_with_an_unsaved_edit_discard_leaves_the_file(sample_like_project):
    project = sample_like_project
    before = caption(project, 0)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        await type_unsaved(pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert isinstance(app.screen, UnsavedScreen)
        await pilot.press("d")
        await settle(pilot)
    assert caption(project, 0) == before
    assert ch.history(project) == []


async def test_quit_with_an_unsaved_edit_cancel_keeps_editing(sample_like_project):
    project = sample_like_project
    before = caption(project, 0)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        await type_unsaved(pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert app.is_running and not isinstance(app.screen, UnsavedScreen)
        assert tab.unsaved() == "img_000.txt" and app.query_one(CaptionEditor).text.endswith(", unsaved")
        assert caption(project, 0) == before
        # the command palette's "Quit the application" runs the same action: it asks too
        await app.run_action("quit")
        await settle(pilot)
        assert isinstance(app.screen, UnsavedScreen)
        await pilot.press("c")
        await settle(pilot)
        assert app.is_running and caption(project, 0) == before


async def test_quit_save_that_meets_a_conflict_does_not_quit(sample_like_project):
    project = sample_like_project
    path = project.dataset_dir / "10_zkx_mira/img_000.txt"
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        tab = await open_captions(pilot)
        await type_unsaved(pilot)
        tab.query_one(CaptionEditor)  # the edit is on screen
        app.stop_watching()  # the save, not the watcher, meets the other program's change
        edit_elsewhere(path, "zkx_mira, theirs\n")
        await pilot.press("ctrl+q")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert app.is_running and isinstance(app.screen, ConflictScreen)
        assert path.read_text(encoding="utf-8") == "zkx_mira, theirs\n"
        await pilot.press("escape")


async def test_quit_without_an_edit_quits_at_once(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert not isinstance(app.screen, UnsavedScreen)
    assert app.return_code == 0


async def test_u_undoes_this_windows_change_not_a_later_one_made_elsewhere(sample_like_project):
    project = sample_like_project
    before0, before1 = caption(project, 0), caption(project, 1)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        await pilot.press("e", "end", *", mine", "escape")  # this window's edit of img_000
        await settle(pilot)
        assert caption(project, 0) == before0.rstrip("\n") + ", mine\n"
        # then another window (or the CLI) edits img_001
        [cf] = co.load_captions(project, co.Selection(files=(IMG1,)))
        other = ch.apply_changeset(project, co.edit_changeset(project, cf, "zkx_mira, other window\n"), "app:0ther0")
        app.query_one(CaptionList).focus()
        await pilot.press("u")
        await settle(pilot)
        assert caption(project, 0) == before0  # ours, undone
        assert caption(project, 1) == "zkx_mira, other window\n"  # theirs, untouched
        await pilot.press("u")
        await settle(pilot)
        assert caption(project, 1) == "zkx_mira, other window\n"
        notes = [str(n.message) for n in app._notifications]
        assert any("nothing of this window's to undo; 1 change made elsewhere: H shows" in n for n in notes), notes

        # H: the history, by author; the other window's change chosen, its diff shown, then undone
        await pilot.press("H")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        table = screen.query_one("#history-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0][0] == str(other.op_id) and rows[0][2] == "window 0ther0"
        assert rows[1][2] == "this window" and rows[1][4].endswith("(undone)")
        await pilot.press("enter")  # the newest: the other window's
        await settle(pilot)
        diff = str(screen.query_one("#history-diff", Static).render())
        assert "+zkx_mira, other window" in diff and "dataset/10_zkx_mira/img_001.txt" in diff
        assert caption(project, 1) == "zkx_mira, other window\n"  # seeing the diff writes nothing
        await pilot.press("u")  # confirm
        await settle(pilot)
        assert not isinstance(app.screen, HistoryScreen)
        assert caption(project, 1) == before1
        assert caption(project, 0) == before0


async def test_two_windows_on_one_project_each_undo_their_own(sample_like_project):
    """Two app instances at once (two terminals on one project): A's u never reverts B's later edit."""
    project = sample_like_project
    before0 = caption(project, 0)
    win_a, win_b = LorawbApp(project), LorawbApp(project)
    assert win_a.author != win_b.author
    async with win_a.run_test(size=(80, 24)) as pa, win_b.run_test(size=(80, 24)) as pb:
        await open_captions(pa)
        await open_captions(pb)
        await pa.press("e", "end", *", from a", "escape")  # A edits img_000
        await settle(pa)
        await pb.press("j")  # B edits img_001, later
        await settle(pb)
        await pb.press("e", "end", *", from b", "escape")
        await settle(pb)
        assert caption(project, 1).endswith(", from b\n")
        win_a.query_one(CaptionList).focus()
        await pa.press("u")
        await settle(pa)
        assert caption(project, 0) == before0
        assert caption(project, 1).endswith(", from b\n")  # B's edit stays
        entries = ch.history(project)
        assert [(e.author, e.state) for e in entries] == [(win_b.author, "applied"), (win_a.author, "undone")]


async def test_editing_line_one_in_the_app_keeps_line_two_the_bom_and_crlf_and_u_gives_the_bytes_back(
    sample_like_project,
):
    project = sample_like_project
    path = project.dataset_dir / "10_zkx_mira/img_000.txt"
    before = b"\xef\xbb\xbfzkx_mira, caf\xc3\xa9, forest\r\nzkx_mira, alt caption\r\n"
    path.write_bytes(before)
    cp = project.dataset_dir / "10_zkx_mira/img_001.txt"
    cp_before = "zkx_mira, café, beach\n".encode("cp1252")
    cp.write_bytes(cp_before)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_captions(pilot)
        editor = app.query_one(CaptionEditor)
        await pilot.press("e")
        assert editor.text == "zkx_mira, café, forest\nzkx_mira, alt caption"
        editor.move_cursor((0, len(editor.document.get_line(0))))  # the end of line one
        await pilot.press(*", hat", "escape")
        await settle(pilot)
        assert path.read_bytes() == b"\xef\xbb\xbfzkx_mira, caf\xc3\xa9, forest, hat\r\nzkx_mira, alt caption\r\n"
        await pilot.press("j", "e", "end", *", hat", "escape")  # a cp1252 caption stays cp1252
        await settle(pilot)
        assert cp.read_bytes() == "zkx_mira, café, beach, hat\n".encode("cp1252")
        await pilot.press("u")
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        assert path.read_bytes() == before and cp.read_bytes() == cp_before
