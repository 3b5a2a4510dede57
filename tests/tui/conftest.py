"""Fixtures for driving the app headless: a small project with real images and captions."""

from __future__ import annotations

import json
import os
import shutil
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


T0 = 1_764_000_000.0  # every file and event time of the projects pictured in snapshots


def freeze(root: Path) -> None:
    """Every file and folder of the project at T0 (a linked model is left alone: it is the repository's)."""
    for dirpath, dirnames, filenames in os.walk(root):  # os.walk never follows links into folders
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                os.utime(p, (T0, T0))
    os.utime(root, ns=(0, 0))


MATRIX_SPEC = """
[matrix]
prompt = "{trigger}, {context}"
controls = ["red hair, green outfit, beach"]
steps = 20
cfg = 1.5

[axes]
context = ["forest", "spaceship", "bar", "beach"]
seed = [0, 1]

[view]
cols = ["seed"]
"""


@pytest.fixture
def drawn_matrix(tmp_path) -> Project:
    """The toy world's sample with a matrix of its base model, every cell 'drawn' and scored by the test.

    (Here, not in the snapshot module: tests/toyworld/test_sample_tour_proof.py runs every test module
    that names the sample in a toured checkout, and the pictures are not part of that check.)
    """
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.plan import plan_matrix
    from lorawb.toyworld import check

    root = check.copy_sample_project(tmp_path / "toy")
    model = root / "models" / "toyworld-sd"
    if model.is_symlink():  # the repository's model, linked: its path would be in every cell's id
        target = model.resolve()
        model.unlink()
        shutil.copytree(target, model)
    project = Project.load(root)
    folder = MatrixFolder(project.matrices_dir / "tour").create()
    folder.spec.write_text(MATRIX_SPEC)
    plan = plan_matrix(folder, project)
    colours = [(40, 120, 50), (30, 30, 60), (120, 70, 30), (230, 210, 140)]
    cells, scores = [], []
    for n, cell in enumerate(plan.layout.cells.values()):
        Image.new("RGB", (32, 32), colours[n % 4]).save(folder.cell_png(cell.id))
        row = {"type": "cell", "id": cell.id, "params": cell.params.as_dict(), "seconds_per_image": 0.41}
        cells.append({**row, "device": "cpu", "batch": [cell.id], "time": T0})
        value = {"identity": 0.25 + 0.05 * (n % 5), "prompt_following": 0.75 + 0.05 * (n % 3)}
        if cell.is_control:
            value = {"leak": 0.0, "prompt_following": 0.8}
        scores.append({"type": "score", "id": cell.id, "scorer": "toy-world reader", **value, "time": T0})
    folder.cells_log.write_text("".join(json.dumps(r) + "\n" for r in cells))
    folder.scores_log.write_text("".join(json.dumps(r) + "\n" for r in scores))
    (folder.events).write_text(json.dumps({"type": "status", "state": "finished", "time": T0}) + "\n")
    freeze(project.root)
    shutil.rmtree(project.root / ".lorawb", ignore_errors=True)
    return Project.load(project.root)
