"""How long a matrix will take, from a measured speed (never a guess).

The speed comes, in order, from this matrix's own earlier cells, another matrix on the same
base model, or the training run's samples (the trainer draws them one image per call, with
the run's steps and size; a matrix batches, so it is usually faster than that estimate).
Speeds are scaled by sampling steps and pixels. No torch here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lorawb.matrix.folder import MatrixFolder, list_matrices, read_rows
from lorawb.train.config import load_run_config
from lorawb.train.events import read_events
from lorawb.words import plural

if TYPE_CHECKING:
    from lorawb.core.project import Project
    from lorawb.matrix.cells import Layout
    from lorawb.train.runfolder import RunFolder


@dataclass(frozen=True)
class Speed:
    seconds_per_image: float  # at the matrix's own steps and size
    source: str  # where it was measured
    caveat: str = ""  # why the matrix may differ from it


def _cells_speed(folder: MatrixFolder) -> tuple[float, int, int] | None:
    """(median seconds per image, steps, pixels) of a matrix's drawn cells."""
    rows = list(read_rows(folder.cells_log, "cell").values())[-200:]
    secs = [float(r["seconds_per_image"]) for r in rows if isinstance(r.get("seconds_per_image"), (int, float))]
    if not secs:
        return None
    p = rows[-1]["params"]
    return statistics.median(secs), int(p["steps"]), int(p["width"]) * int(p["height"])


def _run_sample_speed(run: RunFolder) -> tuple[float, int, int] | None:
    """(median seconds per sample image, sample steps, pixels) from a run's sample events."""
    by_step: dict[int, list[float]] = {}
    for ev in read_events(run.events):
        if ev.get("type") == "sample" and isinstance(ev.get("time"), (int, float)):
            by_step.setdefault(int(ev.get("step", 0)), []).append(float(ev["time"]))
    gaps = [b - a for times in by_step.values() for a, b in zip(times, times[1:], strict=False) if b > a]
    if not gaps:
        return None
    cfg = load_run_config(run.config)
    width = cfg.sample.width or cfg.dataset.resolution
    height = cfg.sample.height or cfg.dataset.resolution
    return statistics.median(gaps), cfg.sample.steps, width * height


def measured_speed(
    project: Project, folder: MatrixFolder | None, layout: Layout, run: RunFolder | None
) -> Speed | None:
    """Seconds per image for this matrix's cells, scaled from the nearest measurement (``folder``: None
    for a matrix not written yet)."""
    cells = list(layout.cells.values())
    if not cells:
        return None
    p = cells[0].params
    steps, pixels = p.steps, p.width * p.height

    def scaled(found: tuple[float, int, int]) -> float:
        secs, s, px = found
        return secs * (steps / max(1, s)) * (pixels / max(1, px))

    own = _cells_speed(folder) if folder is not None else None
    if own is not None:
        return Speed(scaled(own), "this matrix's cells so far")
    for other in reversed(list_matrices(project.matrices_dir)):
        if folder is not None and other.path == folder.path:
            continue
        rows = read_rows(other.cells_log, "cell")
        if rows and next(iter(rows.values()))["params"].get("base") == p.base:
            found = _cells_speed(other)
            if found is not None:
                return Speed(scaled(found), f"matrix {other.id}")
    if run is not None:
        found = _run_sample_speed(run)
        if found is not None:
            return Speed(scaled(found), f"run {run.id}'s samples", "one image per call; batches are faster")
    return None


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def describe_estimate(pending: int, speed: Speed | None) -> str:
    if pending == 0:
        return "nothing to draw: every cell exists"
    if speed is None:
        return "time: not measured yet (no samples or cells to time; the matrix measures its speed as it goes)"
    return (
        f"estimated {format_duration(pending * speed.seconds_per_image)} for {plural(pending, 'image')} "
        f"({speed.seconds_per_image:.2f} s each, measured on {speed.source}"
        + (f": {speed.caveat})" if speed.caveat else ")")
    )


def check_size(pending: int, max_cells: int, speed: Speed | None, yes: bool = False) -> None:
    """Refuse to start a matrix bigger than ``max_cells`` images unless the user said yes."""
    if yes or pending <= max_cells:
        return
    from lorawb.errors import RunError

    raise RunError(
        f"this matrix would draw {plural(pending, 'image')} (more than [matrix] max_cells = {max_cells}); "
        + describe_estimate(pending, speed),
        hint="trim an axis (fewer checkpoints, weights, slot values or seeds), or pass --yes to draw them all",
    )
