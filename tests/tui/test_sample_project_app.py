"""The README's first command: the workbench opened on sample_project/ shows it in every tab."""

from __future__ import annotations

from textual.widgets import TabbedContent

from lorawb.core.project import Project
from lorawb.tui.app import LorawbApp
from tests.tui.conftest import settle


async def test_sample_project_opens_and_every_tab_shows_it(sample_project):
    project = Project.load(sample_project)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.title == "sample_project"
        assert "zkx_mira · 32 images · 32 captioned · inbox 7" in app.sub_title
        assert len(app.image_list) == 32
        for key, tab in (("2", "captions"), ("3", "train"), ("4", "matrix"), ("1", "triage")):
            await pilot.press(key)
            await settle(pilot)
            assert app.query_one(TabbedContent).active == f"tab-{tab}"
        await pilot.press("2")
        await settle(pilot)
        assert app.current_image is not None and app.current_image.startswith("dataset/10_zkx_mira/")
