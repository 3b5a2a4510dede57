"""A matrix as a person reads it: cells done, scores, ratings, the summary table, contact sheets.

``load_report`` folds a matrix folder (no torch): what `lorawb matrix show` prints, what the
Matrix tab draws and what ``export_sheets`` labels. Scores are read from scores.jsonl as the
matrix process wrote them, with the name of what measured them; when nothing could measure
them, ``Report.scorer`` is None and ``reason`` says why.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.matrix.cells import Grid, View, arrange, default_view
from lorawb.matrix.folder import MatrixFolder, MatrixStatus, Ratings, read_rows, read_status
from lorawb.matrix.plan import Plan, plan_matrix
from lorawb.matrix.scores import METRICS, NO_EMBEDDER, Summary, summarize
from lorawb.matrix.sheet import render_sheet, save_sheet

if TYPE_CHECKING:
    from lorawb.core.project import Project


def expected_scorer(plan: Plan) -> tuple[str | None, str]:
    """Which scorer the matrix process will use (no model loaded): (name or None, why none)."""
    s = plan.settings
    if s.scorer == "none":
        return None, 'scoring is off ([matrix] scorer = "none")'
    if (s.embedder or s.face_embedder) and s.scorer in ("auto", "embedder"):
        names = [f"embedder {Path(s.embedder).name}"] if s.embedder else []
        names += [f"faces {Path(s.face_embedder).name}"] if s.face_embedder else []
        return " + ".join(names), ""
    if s.scorer != "embedder" and plan.ctx.toyworld:
        return "toy-world reader", ""
    if s.scorer == "toyworld":
        return None, "the toy-world reader only reads toy-world models' images; this base model is not one"
    return None, NO_EMBEDDER


@dataclass
class Report:
    plan: Plan
    status: MatrixStatus
    scores: dict[str, dict[str, Any]]  # of the current scorer only
    ratings: Ratings
    done: set[str]
    scorer: str | None
    measures: tuple[str, ...]
    reason: str

    @property
    def folder(self) -> MatrixFolder:
        return self.plan.folder

    @functools.cached_property
    def rows(self) -> dict[str, dict[str, Any]]:
        """cells.jsonl by cell id (read when first asked: a live view does not need it every poll)."""
        return read_rows(self.folder.cells_log, "cell")

    @property
    def total(self) -> int:
        return len(self.plan.layout.cells)

    @property
    def drawn(self) -> int:
        return len(self.done & set(self.plan.layout.cells))

    def summary(self) -> Summary:
        from lorawb.matrix.calibration import read_calibration

        out = summarize(
            self.plan.layout,
            self.scores,
            self.done,
            self.scorer or "none",
            self.measures,
            self.reason,
            collapse_ratio=self.plan.settings.collapse_ratio,
        )
        st = self.plan.settings
        if st.embedder and self.scorer:
            cal = read_calibration(self.plan.project.resolve(st.embedder))
            if st.face_embedder or st.crop != "none":  # calibrated on whole images: identity is measured otherwise
                cal = {m: r for m, r in cal.items() if m not in ("identity", "prior")}
            out.calibration = cal
        return out

    def view(self) -> View:
        v = self.plan.spec.view
        return default_view(self.plan.layout, v.rows, v.cols, v.pages)

    def grid(self, view: View | None = None) -> Grid:
        return arrange(self.plan.layout, view or self.view())

    def cell_line(self, cell_id: str) -> str:
        """A cell's scores in a few characters: ``id .92 pf .80`` / ``leak .05`` / a ⚠ for a near copy."""
        s = self.scores.get(cell_id)
        if not s:
            return ""
        parts = []
        for key, short in (("identity", "id"), ("leak", "leak"), ("prompt_following", "pf")):
            v = s.get(key)
            if isinstance(v, (int, float)):
                parts.append(f"{short} {v:.2f}".replace("0.", ".", 1) if v >= 0 else f"{short} {v:.2f}")
        if s.get("flagged"):
            parts.append("⚠copy")
        return " ".join(parts)

    def title(self) -> list[str]:
        m = self.plan.spec.matrix
        lines = [
            f"matrix {self.folder.id}" + (f" · run {m.run}" if m.run else "") + f" · {self.drawn}/{self.total} cells"
        ]
        lines.append(f"prompt: {m.prompt}" + (f" · negative: {m.negative}" if m.negative else ""))
        const = ", ".join(self.plan.layout.constants.values())
        if const:
            lines.append(const)
        if self.scorer:
            lines.append(f"scores measured by the {self.scorer}")
        return lines


def load_report(folder: MatrixFolder, project: Project | None = None, plan: Plan | None = None) -> Report:
    """The matrix as it is on disk now (``plan``: reuse one made from the same matrix.toml)."""
    plan = plan or plan_matrix(folder, project)
    all_scores = read_rows(folder.scores_log, "score")
    expected, reason = expected_scorer(plan)
    used = [s.get("scorer") for s in all_scores.values() if s.get("scorer")]
    scorer = None
    if used:
        scorer = max(
            set(used), key=lambda n: max(float(s.get("time", 0)) for s in all_scores.values() if s.get("scorer") == n)
        )
    scores = {k: v for k, v in all_scores.items() if v.get("scorer") == scorer} if scorer else {}
    measures = tuple(m for m in METRICS if any(isinstance(s.get(m), (int, float)) for s in scores.values()))
    if scorer is None and expected is not None:
        reason = f"not scored yet (the {expected} scores cells as they are drawn)"
    return Report(
        plan=plan,
        status=read_status(folder),
        scores=scores,
        ratings=Ratings.load(folder),
        done=folder.done_ids(),
        scorer=scorer,
        measures=measures,
        reason=reason,
    )


def export_sheets(
    report: Report, view: View | None = None, pages: list[int] | None = None, out: Path | None = None
) -> list[Path]:
    """Write the contact sheet of each page (all by default): grid.png, or grid-<page>.png per page."""
    grid = report.grid(view)
    wanted = list(range(len(grid.pages))) if pages is None else pages
    written = []
    lines = {cid: report.cell_line(cid) for cid in report.plan.layout.cells}
    for p in wanted:
        sheet = render_sheet(
            report.folder,
            grid,
            p,
            title=report.title(),
            cell_text=lines if report.scores else None,
            ratings=report.ratings.ratings,
            max_pixels=report.plan.settings.max_sheet_pixels,
        )
        label = grid.label("pages", grid.pages[p], sep="-") if len(grid.pages) > 1 else ""
        path = out if (out is not None and len(wanted) == 1) else report.folder.sheet_path(label or None)
        if out is not None and len(wanted) > 1:
            path = out.with_name(f"{out.stem}-{p + 1}{out.suffix or '.png'}")
        written.append(save_sheet(sheet, path))
    return written
