"""Fixtures for driving the app headless: a small project with real images and captions."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from lorawb.core.project import Project, init_project

CONTEXTS = ["forest", "spaceship", "bar", "beach"]
STYLES = ["watercolor", "pixel art", "photo"]
COLOURS = {"forest": (40, 120, 50), "spaceship": (30, 30, 60), "bar": (120, 70, 30), "beach": (230, 210, 140)}


def make_image(path: Path, context: str, i: int, size: tuple[int, int] = (96, 96)) -> None:
    im = Image.new("RGB", size, COLOURS[context])
    d = ImageDraw.Draw(im)
    w, h = size
    d.ellipse((w * 0.35, h * 0.15, w * 0.65, h * 0.45), fill=(240, 200, 170))  # head
    d.rectangle((w * 0.38, h * 0.45, w * 0.62, h * 0.85), fill=(200, 30, 60 + 10 * i % 190))  # body
    d.rectangle((w * 0.33, h * 0.12, w * 0.67, h * 0.22), fill=(30, 160, 200))  # hair
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def build_project(root: Path, n: int = 12, trigger: str = "zkx_mira") -> Project:
    project = init_project(root, trigger=trigger)
    # the composition groups (one style the images lack: its column shows the gap)
    project.save_setting("tags.groups", {"context": CONTEXTS, "style": [*STYLES, "sketch"]})
    folder = project.dataset_dir / f"10_{trigger}"
    for i in range(n):
        context = CONTEXTS[i % len(CONTEXTS)]
        style = STYLES[i % len(STYLES)]
        img = folder / f"img_{i:03d}.png"
        make_image(img, context, i)
        img.with_suffix(".txt").write_text(f"{trigger}, red outfit, {context}, {style}\n", encoding="utf-8")
    return Project.load(root)


@pytest.fixture
def sample_like_project(tmp_path: Path) -> Project:
    return build_project(tmp_path / "proj")


async def settle(pilot, rounds: int = 5) -> None:
    """Wait until no worker is running and the screen has caught up.

    Unlike ``app.workers.wait_for_complete()`` this does not raise for workers
    that were cancelled on purpose (exclusive workers replace each other), but
    it does re-raise a worker that failed.
    """
    import asyncio

    from textual.worker import WorkerFailed

    app = pilot.app
    for _ in range(rounds):
        pending = [w for w in app.workers if not w.is_finished]
        if not pending:
            await pilot.pause()
            if not [w for w in app.workers if not w.is_finished]:
                return
            continue
        results = await asyncio.gather(*(w.wait() for w in pending), return_exceptions=True)
        for r in results:
            if isinstance(r, WorkerFailed):
                raise r
        await pilot.pause()
