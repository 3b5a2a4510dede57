"""The sample strip survives samples arriving one prompt at a time, faster than it can mount cells."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from textual.app import App, ComposeResult
from textual.widgets import Static

from lorawb.train.monitor import SampleImage, SampleStep
from lorawb.tui.widgets.train_samples import SampleCell, SampleStrip
from tests.tui.conftest import settle


class StripApp(App):
    image_mode = "halfcell"

    def __init__(self, project) -> None:
        super().__init__()
        self.project = project

    def compose(self) -> ComposeResult:
        yield SampleStrip(id="strip")


async def test_rapid_updates_with_changing_counts(sample_like_project):
    root: Path = sample_like_project.root
    paths = []
    for i in range(4):
        p = root / f"s{i}.png"
        Image.new("RGB", (32, 32), (60 * i, 20, 20)).save(p)
        paths.append(p)
    images = [
        SampleImage(step=10, index=i, prompt=f"zkx_mira, context {i}", path=p, seed=i) for i, p in enumerate(paths)
    ]
    app = StripApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        strip = app.query_one(SampleStrip)
        # Samples land one prompt at a time: 1, 2, 3, 4 images, each show() before the last mount finished.
        for n in range(1, 5):
            strip.show(SampleStep(10, tuple(images[:n])), 1, 1, True)
        strip.show(SampleStep(20, tuple(images[:2])), 2, 2, True)
        await settle(pilot)
        cells = list(strip.query(SampleCell))
        assert len(cells) == 2
        prompts = [str(c.query_one(".prompt", Static).render()) for c in cells]
        assert prompts == ["zkx_mira, context 0  (seed 0)", "zkx_mira, context 1  (seed 1)"]
