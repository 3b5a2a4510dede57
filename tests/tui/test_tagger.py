"""Auto-tagging from the app: the sample project's inbox tagged from Triage, the diff read before applying, undone."""

from __future__ import annotations

import pytest
from textual.widgets import Select, Static

from lorawb.core.project import Project
from lorawb.toyworld.sample import make_sample_project
from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.tag_modal import TagScreen
from tests.tui.conftest import settle


@pytest.fixture
def sample(tmp_path) -> Project:
    return Project.load(make_sample_project(tmp_path / "sample_project", write_toml=True))


def diff_text(screen: TagScreen) -> str:
    return str(screen.query_one("#tag-diff", Static).render())


async def preview_inbox_replace(pilot) -> TagScreen:
    """From Triage: the inbox, `a`, mode replace, F5: the dialog with its diff (nothing written yet)."""
    await settle(pilot)
    await pilot.press("i", "a")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, TagScreen)
    screen.query_one("#tag-mode", Select).value = "replace"
    await pilot.press("f5")
    await settle(pilot)
    return screen


async def test_triage_tags_the_inbox_shows_the_diff_then_applies_and_undoes(sample: Project):
    inbox = sample.inbox_dir
    before = {p.name: p.read_bytes() for p in inbox.glob("*.txt")}
    app = LorawbApp(sample)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await preview_inbox_replace(pilot)
        text = diff_text(screen)
        assert "+zkx_mira, red hair, forest, outlined, arms up" in text
        assert "+zkx_mira, green outfit, bar, flat, arms up" in text
        assert "x blue hair  (dropped: invariant: the trigger carries it)" in text
        summary = str(screen.query_one("#tag-summary", Static).render())
        assert "2 of 7 captions change" in summary and "7 read by the model" in summary
        assert {p.name: p.read_bytes() for p in inbox.glob("*.txt")} == before  # the preview wrote nothing
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not isinstance(app.screen, TagScreen)
        assert (inbox / "cand_03.txt").read_text() == "zkx_mira, red hair, forest, outlined, arms up\n"
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        assert {p.name: p.read_bytes() for p in inbox.glob("*.txt")} == before


async def test_captions_tab_offers_its_list_and_escape_closes(sample: Project):
    app = LorawbApp(sample)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TagScreen)
        assert [(label, len(images)) for label, images in screen.scopes] == [("the list", 32), ("this image", 1)]
        # At 80x24 the whole form, a diff area and the buttons are on screen.
        for wid in ("#tag-scope", "#tag-mode", "#tag-model", "#tag-max", "#tag-exclude", "#tag-apply-btn"):
            region = screen.query_one(wid).region
            assert region.height >= 1 and region.bottom <= 24 and region.right <= 80, wid
        assert screen.query_one("#tag-diff-scroll").region.height >= 8
        await pilot.press("f5")
        await settle(pilot)
        assert "nothing to change" in diff_text(screen)  # fill: every dataset image has its caption
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, TagScreen)
