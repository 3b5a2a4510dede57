"""The tabs work together: a caption saved in Captions keeps Triage's selection, and back."""

from __future__ import annotations

from lorawb.tui.app import LorawbApp
from tests.tui.conftest import settle


async def test_caption_edit_keeps_the_triage_selection(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        await pilot.press("right", "right")
        await settle(pilot)
        chosen = app.current_image
        assert chosen is not None and chosen != app.image_list[0]
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("e", "end", *", night", "ctrl+s")
        await settle(pilot)
        caption = (sample_like_project.root / chosen).with_suffix(".txt").read_text(encoding="utf-8")
        assert caption.rstrip("\n").endswith(", night")
        await pilot.press("escape", "1")
        await settle(pilot)
        assert app.current_image == chosen
