"""The Samples view shows every sample prompt (a page of 4 at a time) and marks the control prompts."""

from __future__ import annotations

from lorawb.train.events import EventWriter
from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.train_samples import SampleCell, SampleStrip
from tests.tui.conftest import make_image, settle
from tests.tui.test_train_tab import RUN_A, FakeTrainer, make_run, tab, wait_for, write_steps

PROMPTS = [
    "zkx_mira, forest",
    "zkx_mira, bar",
    "zkx_mira, beach",
    "zkx_mira, spaceship",
    "a woman in a forest",  # the control: no trigger, shows whether the LoRA leaks
    "zkx_mira, watercolor",
]


async def test_every_prompt_is_shown_page_by_page_and_the_control_is_marked(sample_like_project):
    project = sample_like_project
    run = make_run(project, RUN_A)
    w = EventWriter(run.events)
    w.status("running")
    trainer = FakeTrainer(run)
    write_steps(w, 1, 21)
    for i, prompt in enumerate(PROMPTS):
        rel = f"samples/000020-{i}.png"
        make_image(run.path / rel, "forest", i, size=(64, 64))
        w.sample(20, prompt, rel, index=i, seed=i)
    app = LorawbApp(project)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            await wait_for(pilot, lambda: tab(app).view is not None and len(tab(app).view.samples) == 1)
            await pilot.press("p")
            strip = app.query_one(SampleStrip)
            await wait_for(pilot, lambda: strip.shown is not None)

            def cells() -> list[tuple[str, bool]]:
                return [(str(c.query_one(".prompt").render()), c.has_class("control")) for c in strip.query(SampleCell)]

            def where() -> str:
                return str(strip.query_one(".where").render())

            assert [p for p, _ in cells()] == [f"{p}  (seed {i})" for i, p in enumerate(PROMPTS[:4])]
            assert "prompts 1-4 of 6" in where() and "1 control" in where() and "more)" not in where()
            await pilot.press("right_square_bracket")
            await settle(pilot)
            assert cells() == [
                ("control (no trigger): a woman in a forest  (seed 4)", True),
                ("zkx_mira, watercolor  (seed 5)", False),
            ]
            assert "prompts 5-6 of 6" in where()
            await pilot.press("right_square_bracket")  # the last page stays
            await settle(pilot)
            assert "prompts 5-6 of 6" in where()
            await pilot.press("left_square_bracket")
            await settle(pilot)
            assert [p for p, _ in cells()][0] == "zkx_mira, forest  (seed 0)"
    finally:
        trainer.exit()
