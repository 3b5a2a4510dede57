"""The app opens on a project, shows real data in every tab, switches tabs, themes and image modes."""

from __future__ import annotations

from textual.widgets import DataTable, TabbedContent

from lorawb.tui.app import LorawbApp
from tests.tui.conftest import settle


async def test_app_opens_and_switches_every_tab(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "12 images" in app.sub_title and "zkx_mira" in app.sub_title
        assert app.title == "proj"
        for key, tab in (("2", "captions"), ("3", "train"), ("4", "matrix"), ("1", "triage")):
            await pilot.press(key)
            await pilot.pause()
            assert app.query_one(TabbedContent).active == f"tab-{tab}"
        assert len(app.image_list) == 12


async def test_theme_and_image_mode_cycle(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "lorawb-dark"
        await pilot.press("ctrl+t")
        assert app.theme != "lorawb-dark" and app.theme.startswith("lorawb")
        mode = app.image_mode
        await pilot.press("ctrl+g")
        assert app.image_mode != mode


async def test_bad_theme_file_is_reported_not_fatal(sample_like_project):
    themes = sample_like_project.root / ".lorawb" / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text("name = 'broken'\nprimary = 'not-a-colour'\n")
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert any("broken.toml" in p for p in app.theme_problems)
        assert "broken" not in app.available_themes


async def test_matrix_tab_lists_matrices_and_names_a_bad_spec(sample_like_project):
    m = sample_like_project.matrices_dir / "m1"
    (m / "cells").mkdir(parents=True)
    (m / "matrix.toml").write_text('[matrix]\nprompt = "{trigger}, {context}"\n\n[axes]\nweight = [0.5, 1.0]\n')
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        table = app.query_one("#matrix-list", DataTable)
        assert table.row_count == 1
        row = table.get_row_at(0)
        assert (
            str(row[0]) == "m1"
            and str(row[2]) == "invalid"
            and str(row[4]) == "line 2: matrix.prompt: {context} has no axis"
        )
        assert "invalid matrix.toml" in str(app.query_one("#matrix-head").render())


async def test_command_palette_lists_tab_commands(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Go to Captions (2)" in titles and "Cycle image mode (^g)" in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"Go to Train")
        await pilot.press("enter")
        await pilot.pause()
        assert app.active_tab == "train"


async def test_messages_built_from_text_keep_their_brackets(sample_like_project):
    """`set [triage] keep_folder` is text, never Rich markup: in notifications and in the Ask hint."""
    from textual.widgets import Label

    from lorawb.tui.tabs.triage import Ask

    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.notify("set [triage] keep_folder in lorawb.toml [b]not bold[/b]")
        app.query_one("#triage").notify("a tag [red] from a caption")
        await pilot.pause()
        from textual.widgets._toast import Toast

        shown = [Toast(n).render().plain for n in app._notifications]  # what each toast draws
        assert "set [triage] keep_folder in lorawb.toml [b]not bold[/b]" in shown
        assert "a tag [red] from a caption" in shown
        app.push_screen(Ask("Keep in [which] folder?", hint="set [triage] keep_folder in lorawb.toml"))
        await pilot.pause(0.2)
        labels = [str(label.render()) for label in app.screen.query(Label)]
        assert "set [triage] keep_folder in lorawb.toml" in labels and "Keep in [which] folder?" in labels
