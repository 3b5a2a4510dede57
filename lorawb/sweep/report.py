"""A sweep's answer: which setting and which checkpoint is best, and is the margin real?

Every run × checkpoint × weight of the sweep's matrices is a candidate, scored as the matrix
scores it (lorawb.matrix.report: identity on trigger prompts, leak on control prompts, what
measured them) and ranked as the matrix recommends within one run: identity net of leak,
candidates with too many near-copies of a training image last. Seeds give the error bars: the
net score of each seed alone, and their standard deviation (the seed-to-seed spread).

The verdict compares the best candidate with the best one of any *other* setting: the margin
between them against the larger of their seed-to-seed spreads. A margin inside the spread is
said to be one: those two settings are not told apart by this matrix.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.sweep.plan import find_sweep, read_members, read_plan

if TYPE_CHECKING:
    from lorawb.core.project import Project
    from lorawb.matrix.report import Report

METRICS = ("identity", "leak", "prompt_following")
NAMES = {"identity": "identity", "leak": "leak", "prompt_following": "prompt following", "net": "identity − leak"}
FLAG_SHARE = 0.25  # more than this share of a candidate's cells near-copy a training image: ranked last


@dataclass
class Candidate:
    label: str  # the setting: "learning_rate=2e-4"
    run: str
    matrix: str
    checkpoint: str  # "step 60"
    step: int | None
    weight: float
    identity: float | None
    prompt_following: float | None
    leak: float | None
    memorisation: float | None
    flagged: int
    scored: int
    net: float | None  # identity − leak, the measure the matrix recommends by
    spread: float | None  # seed-to-seed standard deviation of net (None with one seed)
    by_seed: dict[str, list[float]] = field(default_factory=dict)  # metric -> one mean per seed
    prompt_spread: float | None = None  # prompt-to-prompt standard deviation of identity (None with one prompt)
    ceiling: float | None = None  # the dataset's own leave-one-out identity (same measure and k)

    @property
    def copies(self) -> bool:
        return bool(self.scored) and self.flagged / self.scored > FLAG_SHARE

    def sd(self, metric: str) -> float | None:
        values = self.by_seed.get(metric, [])
        return statistics.stdev(values) if len(values) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Entry:
    """One run of the sweep and its matrix, as far as they got."""

    label: str
    changes: dict[str, str]
    train_job: str
    matrix_job: str
    run: str = ""  # the run folder's id, once the queue made it
    run_state: str = "queued"
    matrix: str = ""
    matrix_state: str = "queued"
    cells: str = ""  # "40/48"


@dataclass
class SweepReport:
    name: str
    folder: Path
    vary: dict[str, list[str]]
    entries: list[Entry]
    candidates: list[Candidate]  # ranked, best first
    scorer: str | None
    reason: str  # why nothing is ranked yet, when nothing is

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates and self.candidates[0].net is not None else None

    @property
    def rival(self) -> Candidate | None:
        """The best candidate of another setting."""
        best = self.best
        if best is None:
            return None
        return next((c for c in self.candidates if c.label != best.label and c.net is not None), None)

    @property
    def margin(self) -> float | None:
        best, rival = self.best, self.rival
        return best.net - rival.net if best and rival and best.net is not None and rival.net is not None else None

    @property
    def spread(self) -> float | None:
        spreads = [c.spread for c in (self.best, self.rival) if c is not None and c.spread is not None]
        return max(spreads) if spreads else None

    @property
    def beats_spread(self) -> bool | None:
        if self.margin is None or self.spread is None:
            return None
        return self.margin > self.spread

    def verdict(self) -> str:
        best, rival = self.best, self.rival
        if best is None:
            return self.reason or "nothing ranked yet"
        text = f"best: {best.label} at {best.checkpoint}, weight {best.weight:g} ({_scores(best)})"
        if rival is None:
            return text + "\nno other setting has scores yet"
        text += f"\nnext setting: {rival.label} at {rival.checkpoint}, weight {rival.weight:g} ({_scores(rival)})"
        margin, spread = self.margin, self.spread
        assert margin is not None
        if spread is None:
            return text + f"\nmargin {margin:.3f}; one seed only, so no seed-to-seed spread to weigh it against"
        if margin > spread:
            text += (
                f"\nthe margin {margin:.3f} is larger than the seed-to-seed spread ({spread:.3f}): "
                f"{best.label} is better on this matrix"
            )
            prompts = [c.prompt_spread for c in (best, rival) if c.prompt_spread is not None]
            if prompts and margin <= max(prompts):
                text += (
                    f", but within the prompt-to-prompt spread ({max(prompts):.3f}): "
                    "on some prompts the other may do better"
                )
            return text
        return (
            text + f"\nthe margin {margin:.3f} is within the seed-to-seed spread ({spread:.3f}): this matrix does "
            "not tell the two apart (more seeds, or a bigger change, would)"
        )

    def short_verdict(self) -> str:
        """The verdict in two short lines (the Train tab's Sweeps view)."""
        best, rival = self.best, self.rival
        if best is None:
            return self.reason or "nothing ranked yet"

        def one(c: Candidate) -> str:
            sd = f" ± {c.spread:.3f}" if c.spread is not None else ""
            return f"{c.label} at {c.checkpoint} w{c.weight:g}: {c.net:.3f}{sd}"

        first = f"best {one(best)}" + (f"  ·  next {one(rival)}" if rival else "")
        margin, spread = self.margin, self.spread
        if margin is None:
            return first + "\nno other setting has scores yet"
        if spread is None:
            return first + f"\nmargin {margin:.3f}; one seed only: no spread to weigh it against"
        if margin > spread:
            return first + f"\nmargin {margin:.3f} > seed spread {spread:.3f}: {best.label} is better"
        return first + f"\nmargin {margin:.3f} within the seed spread {spread:.3f}: not told apart"

    def series(self, metric: str, weight: float | None = None) -> dict[str, list[tuple[int, float, float]]]:
        """Per setting: (step, mean, seed sd) of ``metric`` at ``weight`` (the best's), by checkpoint step."""
        if weight is None:
            weight = self.best.weight if self.best else max((c.weight for c in self.candidates), default=1.0)
        out: dict[str, list[tuple[int, float, float]]] = {}
        for c in self.candidates:
            value = c.net if metric == "net" else getattr(c, metric)
            if c.weight != weight or c.step is None or value is None:
                continue
            sd = c.spread if metric == "net" else c.sd(metric)
            out.setdefault(c.label, []).append((c.step, float(value), float(sd or 0.0)))
        order = [e.label for e in self.entries]
        return {k: sorted(out[k]) for k in sorted(out, key=lambda k: order.index(k) if k in order else len(order))}


def _scores(c: Candidate) -> str:
    from lorawb.matrix.identity import of_ceiling

    parts = [of_ceiling(c.identity, c.ceiling)]
    if c.leak is not None:
        parts.append(f"leak {c.leak:.2f}")
    parts.append(f"net {c.net:.3f}" + (f" ± {c.spread:.3f}" if c.spread is not None else ""))
    return ", ".join(parts)


def load_sweep_report(project: Project, ref: str) -> SweepReport:
    """The sweep as it is on disk now (runs and matrices that exist so far)."""
    from lorawb.errors import LorawbError
    from lorawb.matrix.folder import MatrixFolder, read_status
    from lorawb.matrix.report import load_report
    from lorawb.train.runfolder import RunFolder, summarize

    folder = find_sweep(project, ref)
    plan = read_plan(folder)
    members = read_members(folder)
    entries, candidates = [], []
    scorers: set[str] = set()
    reasons: list[str] = []
    for r in plan.get("runs", []):
        e = Entry(r["label"], r.get("changes", {}), r.get("train_job", ""), r.get("matrix_job", ""))
        run_path = members.get((e.label, "train"))
        if run_path:
            s = summarize(RunFolder(Path(run_path)))
            e.run, e.run_state = Path(run_path).name, s.display_state
        matrix_path = members.get((e.label, "matrix"))
        if matrix_path:
            mf = MatrixFolder(Path(matrix_path))
            e.matrix, e.matrix_state = mf.id, read_status(mf).display_state
            try:
                report = load_report(mf, project)
            except LorawbError as exc:
                reasons.append(f"{e.label}: {exc.message}")
            else:
                e.cells = f"{report.drawn}/{report.total}"
                if report.scorer:
                    scorers.add(report.scorer)
                    candidates += rank_matrix(report, e.label, e.run)
                elif report.reason:
                    reasons.append(report.reason)
        entries.append(e)
    candidates.sort(key=_rank_key)
    reason = "" if candidates else (reasons[0] if reasons else "no matrix has scores yet (the queue runs them)")
    scorer = ", ".join(sorted(scorers)) or None
    return SweepReport(folder.name, folder, plan.get("vary", {}), entries, candidates, scorer, reason)


def _rank_key(c: Candidate) -> tuple:
    return (c.copies, c.net is None, -(c.net or 0.0), -(c.identity or 0.0), c.weight)


def rank_matrix(report: Report, label: str, run: str) -> list[Candidate]:
    """One candidate per checkpoint × weight with a LoRA, its scores from the matrix's own summary
    and its seed-to-seed spread from the cells."""
    summary = report.summary()
    out = []
    for row in summary.rows:
        if row.is_base:
            continue
        by_seed = seed_means(report, row.checkpoint, row.weight)
        nets = _nets(by_seed)
        net = row.identity - (row.leak or 0.0) if row.identity is not None else None
        out.append(
            Candidate(
                label=label,
                run=run,
                matrix=report.folder.id,
                checkpoint=row.checkpoint,
                step=_step(row.checkpoint),
                weight=row.weight,
                identity=row.identity,
                prompt_following=row.prompt_following,
                leak=row.leak,
                memorisation=row.memorisation,
                flagged=row.flagged,
                scored=row.scored,
                net=net,
                spread=statistics.stdev(nets) if len(nets) > 1 else None,
                by_seed={**by_seed, "net": nets},
                prompt_spread=row.prompt_sd,
                ceiling=summary.ceiling,
            )
        )
    return out


def seed_means(report: Report, checkpoint: str, weight: float) -> dict[str, list[float]]:
    """Per metric, the mean over each seed's cells of one checkpoint × weight (seeds in axis order)."""
    layout = report.plan.layout
    ck, wt = layout.axes["checkpoint"], layout.axes["weight"]
    seeds = layout.axes.get("seed")
    acc: dict[str, dict[int, list[float]]] = {m: {} for m in METRICS}
    for pos in layout.positions:
        cell = layout.cells[pos.cell]
        if cell.params.is_base or ck.labels[pos.index("checkpoint")] != checkpoint:
            continue
        if float(wt.values[pos.index("weight")]) != weight:
            continue
        s = report.scores.get(pos.cell)
        if not s:
            continue
        seed = pos.index("seed") if seeds is not None else 0
        for m in METRICS:
            v = s.get(m)
            if isinstance(v, (int, float)):
                acc[m].setdefault(seed, []).append(float(v))
    return {m: [statistics.fmean(vals[k]) for k in sorted(vals)] for m, vals in acc.items() if vals}


def _nets(by_seed: dict[str, list[float]]) -> list[float]:
    ident, leak = by_seed.get("identity", []), by_seed.get("leak", [])
    if not ident:
        return []
    if len(leak) != len(ident):
        leak = [0.0] * len(ident)
    return [i - x for i, x in zip(ident, leak, strict=True)]


def _step(checkpoint: str) -> int | None:
    m = re.search(r"(\d+)\s*$", checkpoint)
    return int(m.group(1)) if m else None


def format_report(r: SweepReport, top: int = 10) -> str:
    """The ranking and the verdict as plain text (`lorawb sweep report`)."""
    lines = [f"sweep {r.name}: " + ", ".join(f"{k} = {', '.join(v)}" for k, v in r.vary.items())]
    for e in r.entries:
        run = f"{e.run} {e.run_state}" if e.run else f"run queued (job {e.train_job})"
        mx = (
            f"matrix {e.matrix} {e.matrix_state} {e.cells}".rstrip()
            if e.matrix
            else f"matrix queued (job {e.matrix_job})"
        )
        lines.append(f"  {e.label:<28} {run}; {mx}")
    lines.append("")
    if not r.candidates:
        lines.append(r.reason)
        return "\n".join(lines)
    lines.append(
        f"ranked by identity − leak (scores measured by the {r.scorer}; ± is the seed-to-seed spread of the net, "
        "±prompt the prompt-to-prompt spread of identity):"
    )
    ceilings = {c.ceiling for c in r.candidates if c.ceiling is not None}
    if ceilings:
        lines.append(
            "dataset ceiling (each training image against the rest): " + ", ".join(f"{x:.2f}" for x in sorted(ceilings))
        )
    lines.append(
        f"{'#':>3}  {'setting':<28} {'checkpoint':<11} {'weight':>6} {'identity':>8} {'leak':>6} {'prompt':>6} {'net':>7} {'±':>6} {'±prompt':>7}"
    )

    def f(x: float | None, w: int = 6, p: int = 2) -> str:
        return f"{'-':>{w}}" if x is None else f"{x:>{w}.{p}f}"

    for i, c in enumerate(r.candidates[:top], 1):
        mark = " ⚠copies" if c.copies else ""
        lines.append(
            f"{i:>3}  {c.label[:28]:<28} {c.checkpoint[:11]:<11} {c.weight:>6g} {f(c.identity, 8)} {f(c.leak)} "
            f"{f(c.prompt_following)} {f(c.net, 7, 3)} {f(c.spread, 6, 3)} {f(c.prompt_spread, 7, 3)}{mark}"
        )
    if len(r.candidates) > top:
        lines.append(f"  … {len(r.candidates) - top} more (--top N)")
    lines.append("")
    lines.append(r.verdict())
    return "\n".join(lines)
