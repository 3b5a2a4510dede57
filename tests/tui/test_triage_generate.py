"""G in Triage: the character sheet drawn into the inbox by a real detached job, the candidates
appearing in the grid, sorted by their pre-sort scores, each showing its provenance and what
measured its scores."""

from __future__ import annotations

import pytest

from lorawb.core.project import Project
from lorawb.generate import job
from lorawb.generate.presort import read_scores
from lorawb.tui.app import LorawbApp
from lorawb.tui.tabs.triage import TriageTab
from tests.tui.conftest import settle
from tests.tui.test_matrix_tab import wait_until

pytestmark = pytest.mark.slow


async def test_G_fills_the_inbox_and_s_sorts_it_by_score(sample_project):
    toml = sample_project / "lorawb.toml"
    small = 'contexts = ["forest", "bar"]\nstyles = ["flat", "watercolor"]\ncount = 1\nsteps = 4\n'
    toml.write_text(toml.read_text().replace("count = 2 #", small + "# count = 2 #"))
    project = Project.load(sample_project)
    app = LorawbApp(project, images="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tab = app.query_one(TriageTab)
        assert tab.flt.area == "dataset"
        await pilot.press("G")
        await settle(pilot)
        assert tab.flt.area == "inbox"  # shown where the candidates come
        await wait_until(pilot, lambda: job.generate_status(project).state == "finished", 150, "the job")
        gen = lambda: [i for i in tab.shown if i.name.startswith("gen-")]  # noqa: E731
        await wait_until(pilot, lambda: len(gen()) == 4, 20, "the candidates in the grid")
        await pilot.press("G")  # nothing left to draw: it says so
        await settle(pilot)
        scores = read_scores(job.GenerateJob.of(project).scores_log)
        assert len(scores) == 4
        for _ in range(4):  # name → time → size → aspect → identity
            await pilot.press("s")
        await settle(pilot)
        assert tab.sort == "identity"
        shown = [i.rel.removeprefix("inbox/").removesuffix(".png") for i in gen()]
        values = [scores[s]["identity"] for s in shown]
        assert values == sorted(values, reverse=True)
        assert tab.shown[: len(shown)] == gen()  # scored candidates first, the unscored cand_* after
        await pilot.press("home")
        await settle(pilot)
        text = str(app.query_one("#triage-facts").render())
        assert "generated: seed " in text and "4 steps" in text
        assert "(toy-world reader vs the dataset (32 images))" in text
