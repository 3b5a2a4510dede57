"""matrices/<id>/: the folder contract of a prompt matrix, and reading it without torch.

    matrix.toml     the spec (lorawb.matrix.spec)
    cells/<id>.png  one image per cell, with its parameters in the PNG text (``parameters`` as
                    A1111 writes it, and ``lorawb`` with the whole record as JSON)
    cells.jsonl     one row per cell as it is written: every parameter that made it
    scores.jsonl    one row per scored cell (what measured it, identity, leak, ...)
    events.jsonl    the matrix process: status (starting/running/finished/stopped/failed),
                    progress, a ``cell`` event per image (lorawb.train.events' format)
    ratings.json    the user's good/bad ratings and the cells promoted to the inbox
    matrix.log      the human log; worker.out the process's own output
    grid*.png       contact sheets (``lorawb matrix export``)
    run.lock, run.pid, stop.request   as for training runs (lorawb.train.detached)

A cell is done when its PNG exists; a PNG whose row is missing from cells.jsonl (the
process was killed between the two writes) gets its row back from the PNG's text.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.core.confine import name_in
from lorawb.core.fsutil import atomic_write_text
from lorawb.core.refs import pick
from lorawb.errors import LorawbError, RunError
from lorawb.train.detached import JobFolder
from lorawb.train.events import EventTail, event_problem

if TYPE_CHECKING:
    from lorawb.core.project import Project

RATINGS = ("good", "bad")


@dataclass
class MatrixFolder(JobFolder):
    worker_name = "matrix process"
    job_name = "matrix"

    spec = property(lambda self: self.path / "matrix.toml")
    cells_dir = property(lambda self: self.path / "cells")
    cells_log = property(lambda self: self.path / "cells.jsonl")
    scores_log = property(lambda self: self.path / "scores.jsonl")
    ratings_file = property(lambda self: self.path / "ratings.json")
    log = property(lambda self: self.path / "matrix.log")

    def create(self) -> MatrixFolder:
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        return self

    def busy_hint(self) -> str:
        return f"follow it in the Matrix tab or with `lorawb matrix show {self.id}`; stop it with `lorawb matrix stop {self.id}`"

    def cell_png(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.png"

    def done_ids(self) -> set[str]:
        if not self.cells_dir.is_dir():
            return set()
        return {p.stem for p in self.cells_dir.glob("*.png")}

    def sheet_path(self, page: str | None = None) -> Path:
        return self.path / ("grid.png" if not page else f"grid-{_slug(page)}.png")


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:limit]


def new_matrix_id(matrices_dir: Path, name: str) -> str:
    """The name as a folder name (a -2, -3 suffix if taken; a time stamp when empty).

    The slug keeps letters, digits and ``_.-``: whatever the name, the folder is one inside
    matrices/ (``confine.name_in`` says so, naming ``--name``, if that ever stops being true).
    """
    base = _slug(name) or datetime.now().strftime("%Y%m%d-%H%M%S")
    mid, n = base, 2
    while (matrices_dir / mid).exists():
        mid, n = f"{base}-{n}", n + 1
    name_in(matrices_dir, mid, "--name")
    return mid


def list_matrices(matrices_dir: Path) -> list[MatrixFolder]:
    """The project's matrices, oldest first: by when their matrix.toml was written (drawing cells, rating
    or scoring them does not move a matrix in the list), then by id."""
    if not matrices_dir.is_dir():
        return []
    found = []
    for p in matrices_dir.iterdir():
        spec = p / "matrix.toml"
        if p.name.startswith(".") or not p.is_dir():
            continue
        try:
            found.append((spec.stat().st_mtime, p.name, p))
        except OSError:
            continue
    return [MatrixFolder(p) for _, _, p in sorted(found)]


def find_matrix(project: Project, ref: str) -> MatrixFolder:
    """A matrix by id, unique id prefix, its folder or matrix.toml path, or 'last' (the newest)."""
    p = Path(ref).expanduser()
    for cand in (p, project.root / p):
        if cand.is_file() and cand.name == "matrix.toml":
            return MatrixFolder(cand.parent.resolve())
        if (cand / "matrix.toml").is_file():
            return MatrixFolder(cand.resolve())
    return pick(
        list_matrices(project.matrices_dir),
        ref,
        lambda m: m.id,
        what=("matrix", "matrices"),
        where=project.matrices_dir,
        hint="`lorawb matrix list` lists them; `lorawb matrix new` makes one",
        error=RunError,
    )


# --- ratings and promotions -----------------------------------------------------------------------


@dataclass
class Ratings:
    """The user's marks on cells (kept in the matrix folder): good/bad, and promoted -> inbox path."""

    ratings: dict[str, str] = field(default_factory=dict)
    promoted: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def load(folder: MatrixFolder) -> Ratings:
        try:
            data = json.loads(folder.ratings_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return Ratings()
        if not isinstance(data, dict):
            return Ratings()
        ratings = {str(k): str(v) for k, v in (data.get("ratings") or {}).items() if v in RATINGS}
        promoted = {str(k): str(v) for k, v in (data.get("promoted") or {}).items()}
        return Ratings(ratings, promoted)

    def save(self, folder: MatrixFolder) -> None:
        data = {"ratings": dict(sorted(self.ratings.items())), "promoted": dict(sorted(self.promoted.items()))}
        atomic_write_text(folder.ratings_file, json.dumps(data, indent=1) + "\n")


def rate(folder: MatrixFolder, cell_ids: list[str], rating: str | None) -> Ratings:
    """Mark cells good or bad (None clears); written at once."""
    if rating is not None and rating not in RATINGS:
        raise LorawbError(f"unknown rating {rating!r}", hint="good, bad, or clear")
    r = Ratings.load(folder)
    for cid in cell_ids:
        if rating is None:
            r.ratings.pop(cid, None)
        else:
            r.ratings[cid] = rating
    r.save(folder)
    return r


# --- records --------------------------------------------------------------------------------------


def read_rows(path: Path, type_: str) -> dict[str, dict[str, Any]]:
    """Rows of cells.jsonl / scores.jsonl by cell id (a later row replaces an earlier one)."""
    out: dict[str, dict[str, Any]] = {}
    for row in EventTail(path, max_bytes=1 << 62).poll():
        if row.get("type") == type_ and isinstance(row.get("id"), str):
            out[row["id"]] = row
    return out


@dataclass
class MatrixStatus:
    """What events.jsonl says about the last (or current) matrix process."""

    state: str = "new"  # new | starting | running | finished | stopped | failed
    alive: bool = False
    total: int | None = None
    pending: int | None = None
    done: int = 0  # cells written by the processes this folder has seen
    seconds_per_image: float | None = None
    started: float | None = None
    updated: float | None = None
    error: str | None = None
    hint: str | None = None
    stopping: bool = False  # a stop was asked for (stop.request) and the process has not stopped yet

    @property
    def display_state(self) -> str:
        if self.state in ("running", "starting") and not self.alive:
            return "dead"
        if self.state in ("running", "starting") and self.stopping:
            return "stopping…"
        return self.state

    def apply(self, ev: dict[str, Any]) -> None:
        t = ev.get("type")
        when = ev.get("time")
        if isinstance(when, (int, float)):
            self.started = self.started if self.started is not None else when
            self.updated = when
        if t == "status":
            self.state = str(ev.get("state", self.state))
            self.error = ev.get("error")
            self.hint = ev.get("hint")
            if "total" in ev:
                self.total = ev["total"]
            if "pending" in ev:
                self.pending = ev["pending"]
        elif t == "cell":
            self.done += 1
            if self.state in ("new", "starting"):
                self.state = "running"
            s = ev.get("seconds_per_image")
            if isinstance(s, (int, float)) and s > 0:
                self.seconds_per_image = float(s)
            if self.pending:
                self.pending = max(0, self.pending - 1)


def read_status(folder: MatrixFolder) -> MatrixStatus:
    st = MatrixStatus()
    for ev in EventTail(folder.events, max_bytes=1 << 62, check=event_problem).poll():
        st.apply(ev)
    st.alive = folder.is_alive()
    st.stopping = st.alive and folder.stop_requested()
    return st


class MatrixTail:
    """Follows one matrix folder incrementally (new bytes of its logs only), for the app's grid."""

    def __init__(self, folder: MatrixFolder) -> None:
        self.folder = folder
        self.events = EventTail(folder.events, check=event_problem)
        self.cells_tail = EventTail(folder.cells_log)
        self.scores_tail = EventTail(folder.scores_log)
        self.status = MatrixStatus()
        self.rows: dict[str, dict[str, Any]] = {}
        self.scores: dict[str, dict[str, Any]] = {}
        self.done: set[str] = set()
        self._alive_at = 0.0

    def poll(self) -> bool:
        """Read what was appended; True when anything changed."""
        changed = False
        for ev in self.events.poll():
            self.status.apply(ev)
            changed = True
        for row in self.cells_tail.poll():
            if row.get("type") == "cell" and isinstance(row.get("id"), str):
                self.rows[row["id"]] = row
                changed = True
        for row in self.scores_tail.poll():
            if row.get("type") == "score" and isinstance(row.get("id"), str):
                self.scores[row["id"]] = row
                changed = True
        done = self.folder.done_ids()
        if done != self.done:
            self.done = done
            changed = True
        now = time.monotonic()
        if now - self._alive_at > 1.0:
            self._alive_at = now
            alive = self.folder.is_alive()
            stopping = alive and self.folder.stop_requested()
            changed |= alive != self.status.alive or stopping != self.status.stopping
            self.status.alive, self.status.stopping = alive, stopping
        return changed
