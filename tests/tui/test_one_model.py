"""One model of the project's images in every tab: the same counts, unreadable images named, one tag identity."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from lorawb.cli import main
from lorawb.tui.app import LorawbApp
from lorawb.tui.tabs.captions import CaptionsTab
from lorawb.tui.tabs.triage import TriageTab
from lorawb.tui.widgets.caption_modals import BulkScreen
from tests.tui.conftest import settle

F = "dataset/10_zkx_mira"
BROKEN = f"{F}/img_005.png"


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def twelve_with_problems(project):
    """12 images: one without a caption file, one unreadable (its caption beside it is fine)."""
    d = project.dataset_dir / "10_zkx_mira"
    (d / "img_011.txt").unlink()
    (d / "img_005.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short")
    return project


async def test_one_count_everywhere_and_the_unreadable_image_named(sample_like_project, capsys):
    project = twelve_with_problems(sample_like_project)
    app = LorawbApp(project)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        assert "12 images · 11 captioned · inbox 0 · 1 unreadable: img_005.png" in app.sub_title
        status = text_of(app, "#triage-status")
        assert "⚠1 unreadable: img_005.png" in status and len(app.query_one(TriageTab).shown) == 12
        await pilot.press("2")
        await settle(pilot)
        assert text_of(app, "#captions-status").startswith("12 images · 11 captioned")
        assert "1 unreadable: img_005.png" in text_of(app, "#captions-status")
        await pilot.press("t")
        assert "in 11 captions of 12 images" in text_of(app, "#captions-tags-head")

        app.query_one(CaptionsTab).focus_target().focus()
        await pilot.press("b")  # a bulk edit: the preview says what it touches, in the same count
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BulkScreen)
        await pilot.press(*"masterpiece", "enter")
        await settle(pilot)
        summary = str(screen.query_one("#bulk-summary", Static).render())
        assert "would change 12 captions of 12 images (11 have a caption file, 1 created)" in summary
        assert f"1 beside an unreadable image: {BROKEN} (truncated" in summary
        await pilot.press("ctrl+s")
        await settle(pilot)
        done = [str(n.message) for n in app._notifications]
        assert any("changed 12 captions of 12 images" in n and BROKEN in n for n in done)

    # The command line counts the same way and names the image too.
    assert main(["captions", str(project.root), "add", "best quality", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert "would change 12 of 12 captions" in out and f"1 beside an unreadable image: {BROKEN}" in out


async def test_one_tag_identity_in_the_tabs(sample_like_project):
    project = sample_like_project
    d = project.dataset_dir / "10_zkx_mira"
    for i, spelling in enumerate(["blue_hair", "Blue Hair", "blue hair"]):
        (d / f"img_00{i}.txt").write_text(f"zkx_mira, {spelling}, forest\n", encoding="utf-8")
    app = LorawbApp(project)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        triage = app.query_one(TriageTab)
        await pilot.press("t", *"Blue_Hair", "enter")  # Triage's has-tag filter
        await settle(pilot)
        assert [i.rel for i in triage.shown] == [f"{F}/img_00{i}.png" for i in range(3)]
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("t")
        table = app.query_one("#captions-tag-table", DataTable)
        rows = [(str(table.get_row_at(i)[2]), str(table.get_row_at(i)[0])) for i in range(table.row_count)]
        blue = [(name, n) for name, n in rows if name.replace("_", " ").lower() == "blue hair"]
        assert len(blue) == 1 and blue[0][1] == "3"
