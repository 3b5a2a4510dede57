"""Two runs' matrices side by side: the same spec drawn with each run's checkpoints, scores row by row.

After a v2 run the question is whether it beats v1 where it matters: identity, prompt following
and leak at each checkpoint × weight. ``partner`` finds the matrix to compare with (the newest
other matrix with the same spec over another run), ``compare_matrices`` lines their summaries up
by checkpoint label and weight, and ``spec_differences`` says what differs in the specs beside
the run (empty: the same spec). No torch; what `lorawb matrix compare` prints and the Matrix
tab's Compare view (``v``) shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lorawb.errors import LorawbError
from lorawb.matrix.folder import MatrixFolder, list_matrices
from lorawb.matrix.report import Report
from lorawb.matrix.spec import MatrixSpec, load_spec

if TYPE_CHECKING:
    from lorawb.core.project import Project

# What may differ between two matrices that compare two runs: the run and its checkpoints' steps,
# and how a person arranged the view.
RUN_KEYS = ("matrix.run", "axes.checkpoint", "view.rows", "view.cols", "view.pages")


def _plain(spec: MatrixSpec) -> dict[str, Any]:
    m = spec.matrix.model_dump()
    out = {f"matrix.{k}": v for k, v in m.items()}
    out.update({f"axes.{k}": v for k, v in spec.axes.items()})
    out.update({f"view.{k}": v for k, v in spec.view.model_dump().items()})
    return out


def spec_differences(a: MatrixSpec, b: MatrixSpec) -> list[str]:
    """The spec keys that differ beside the run and its checkpoints ('axes.seed: [0] vs [0, 1]')."""
    pa, pb = _plain(a), _plain(b)
    out = []
    for key in list(pa) + [k for k in pb if k not in pa]:
        if key in RUN_KEYS:
            continue
        if pa.get(key) != pb.get(key):
            out.append(f"{key}: {pa.get(key, '-')} vs {pb.get(key, '-')}")
    return out


def partner(project: Project, folder: MatrixFolder) -> MatrixFolder | None:
    """The newest other matrix with the same spec over another run (None when there is none)."""
    try:
        mine = load_spec(folder.spec)
    except (LorawbError, OSError):  # an invalid spec has no partner; its own error is shown elsewhere
        return None
    for other in reversed(list_matrices(project.matrices_dir)):
        if other.id == folder.id:
            continue
        try:
            theirs = load_spec(other.spec)
        except (LorawbError, OSError):
            continue
        if theirs.matrix.run != mine.matrix.run and not spec_differences(mine, theirs):
            return other
    return None


@dataclass(frozen=True)
class SideRow:
    """One checkpoint × weight: each matrix's summary row there (None where it has none)."""

    checkpoint: str
    weight: float
    a: Any
    b: Any


@dataclass
class MatrixComparison:
    a: Report
    b: Report
    rows: list[SideRow]
    differences: list[str] = field(default_factory=list)  # spec keys that differ beside the run

    @property
    def run_a(self) -> str:
        run = self.a.plan.ctx.run
        return run.id if run is not None else self.a.plan.spec.matrix.run or "-"

    @property
    def run_b(self) -> str:
        run = self.b.plan.ctx.run
        return run.id if run is not None else self.b.plan.spec.matrix.run or "-"


def compare_matrices(a: Report, b: Report) -> MatrixComparison:
    """Both summaries lined up by checkpoint label and weight (a row one side lacks shows '-')."""
    ra = {(r.checkpoint, float(r.weight)): r for r in a.summary().rows}
    rb = {(r.checkpoint, float(r.weight)): r for r in b.summary().rows}
    keys = list(ra) + [k for k in rb if k not in ra]
    rows = [SideRow(c, w, ra.get((c, w)), rb.get((c, w))) for c, w in keys]
    return MatrixComparison(a, b, rows, spec_differences(a.plan.spec, b.plan.spec))


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_side_by_side(c: MatrixComparison) -> str:
    """Plain text: a row per checkpoint × weight, identity / prompt / leak of A then B."""
    lines = [
        f"A {c.a.folder.id} (run {c.run_a})  vs  B {c.b.folder.id} (run {c.run_b})",
        f"scores measured by A: {c.a.scorer or c.a.reason}; B: {c.b.scorer or c.b.reason}",
    ]
    ca, cb = c.a.summary().ceiling, c.b.summary().ceiling
    if ca is not None or cb is not None:
        lines.append(f"dataset ceiling (each training image against the rest): A {_f(ca)} / B {_f(cb)}")
    if c.differences:
        lines.append("the specs differ beside the run: " + "; ".join(c.differences))
    lines.append("")
    lines.append(
        f"{'checkpoint':<12} {'weight':>6}   {'identity A / B':>14}   {'prompt A / B':>12}   {'leak A / B':>11}"
    )
    for r in c.rows:

        def pair(metric: str, row: SideRow = r) -> str:
            va = getattr(row.a, metric) if row.a else None
            vb = getattr(row.b, metric) if row.b else None
            return f"{_f(va)} / {_f(vb)}"

        lines.append(
            f"{r.checkpoint[:12]:<12} {r.weight:>6g}   {pair('identity'):>14}   {pair('prompt_following'):>12}   {pair('leak'):>11}"
        )
    lines.append("")
    lines.append(f"recommendation A: {c.a.summary().recommendation()}")
    lines.append(f"recommendation B: {c.b.summary().recommendation()}")
    return "\n".join(lines)
