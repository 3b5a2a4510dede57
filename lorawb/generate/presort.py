"""Pre-sorted triage: each generated candidate's identity and prompt-following scores.

The person is the discriminator; the scores only put the likeliest keeps first. They are
measured by the matrix's scorers (lorawb.matrix.scores: the project's embedder from
``[matrix] embedder``, or the toy world's reader for toy-world models; with neither, nothing
is measured and the reason is recorded), against a reference:

- the images in ``refs/`` when there are any;
- else the dataset's images (a v1 → v2 round: the kept candidates of v0);
- else the other candidates: the candidates are split in two halves and each half is scored
  against the quarter of the other half that best follows the prompt (the consensus of what
  drew the description; no candidate is compared with itself). Measured on the sample
  (bench/generate_toy.py), the consensus of every other candidate put the *off*-model ones
  first, because the base model draws the character in a minority of its images.

``identity`` is the scorer's identity against that reference; ``prompt_following`` its measure
of the prompt without the trigger (the description and what varies). Rows go to
``.lorawb/generate/scores.jsonl`` with the scorer's name and the reference; Triage reads them
(``read_scores``, no torch) to sort the inbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.core import layout as files
from lorawb.train.events import EventWriter
from lorawb.words import plural

if TYPE_CHECKING:
    from lorawb.core.project import Project

METRICS = {"identity": "identity", "prompt": "prompt_following"}  # Triage's sort names → score keys
CONSENSUS = "the other candidates (consensus)"


def reference_images(project: Project, refs: str) -> tuple[list[Path], str]:
    """(the images identity is measured against, what to call them)."""
    folder = project.resolve(refs)
    found = list(files.walk_images(folder)) if folder.is_dir() else []
    if found:
        return found, f"{_rel(project, folder)}/ ({plural(len(found), 'image')})"
    dataset = list(files.walk_images(project.dataset_dir)) if project.dataset_dir.is_dir() else []
    if dataset:
        return dataset, f"the dataset ({plural(len(dataset), 'image')})"
    return [], CONSENSUS


def _rel(project: Project, path: Path) -> str:
    try:
        return path.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        return str(path)


@dataclass
class Scored:
    """What one scoring pass did: how many, by what, against what (or why nothing was measured)."""

    scored: int
    scorer: str
    reference: str
    reason: str = ""

    def describe(self) -> str:
        if not self.scored:
            return f"not scored: {self.reason}" if self.reason else "nothing to score"
        text = f"{plural(self.scored, 'candidate')} scored by the {self.scorer} against {self.reference}"
        return text + (f" ({self.reason})" if self.reason else "")


def score_candidates(project: Project, records: Sequence[dict[str, Any]], ctx: Any, out: Path) -> Scored:
    """Score the candidates of ``records`` whose PNG exists; rows appended to ``out`` (scores.jsonl)."""
    from lorawb.matrix.scores import make_scorer
    from lorawb.matrix.settings import matrix_settings

    settings = matrix_settings(project)
    present = [r for r in records if (project.root / r["file"]).is_file()]
    if not present:
        return Scored(0, "", "")
    reference, label = reference_images(project, project.config.generate.refs)
    if reference:
        groups = [(present, reference)]
    else:  # the consensus: each half against the other half's candidates that best follow the prompt
        follows = _prompt_following(project, present, ctx, settings)
        halves = [present[0::2], present[1::2]]
        groups = [
            (halves[0], _paths(project, _best(halves[1], follows))),
            (halves[1], _paths(project, _best(halves[0], follows))),
        ]
    scored, name, reason = 0, "", ""
    with EventWriter(out) as w:
        for mine, against in groups:
            if not mine:
                continue
            scorer = make_scorer(project, ctx, settings, dataset=against)
            name = scorer.name
            if not scorer.measures:  # recorded, so Triage says why there is no number
                w.emit("scorer", scorer=name, reference=label, reason=scorer.reason, scored=0)
                return Scored(0, name, label, scorer.reason)
            reason = reason or scorer.reason
            rows = scorer.score([_cell(r) for r in mine], [_open(project, r) for r in mine], lambda _id: None)
            for rec, row in zip(mine, rows, strict=True):
                row.pop("reading", None)
                w.emit("score", id=rec["id"], scorer=name, reference=label, **row)
                scored += 1
        w.emit("scorer", scorer=name, reference=label, reason=reason, scored=scored)
    return Scored(scored, name, label, reason)


def _prompt_following(project: Project, records: Sequence[dict[str, Any]], ctx: Any, settings: Any) -> dict[str, float]:
    """Each candidate's prompt following (empty when the scorer does not measure it)."""
    from lorawb.matrix.scores import make_scorer

    scorer = make_scorer(project, ctx, settings, dataset=_paths(project, records))
    if "prompt_following" not in scorer.measures:
        return {}
    rows = scorer.score([_cell(r) for r in records], [_open(project, r) for r in records], lambda _id: None)
    return {
        r["id"]: float(row["prompt_following"])
        for r, row in zip(records, rows, strict=True)
        if isinstance(row.get("prompt_following"), (int, float))
    }


def _best(records: Sequence[dict[str, Any]], follows: dict[str, float]) -> list[dict[str, Any]]:
    """The quarter of ``records`` that best follows the prompt (all of them without prompt scores):
    the consensus is of what drew the description, not of whatever the base model draws most."""
    if not follows:
        return list(records)
    ranked = sorted(records, key=lambda r: -follows.get(r["id"], 0.0))
    return ranked[: max(2, len(ranked) // 4)]


def _paths(project: Project, records: Iterable[dict[str, Any]]) -> list[Path]:
    return [project.root / r["file"] for r in records]


def _cell(rec: dict[str, Any]) -> Any:
    from lorawb.matrix.cells import Cell, Params

    values = tuple((k, v) for k, v in rec.get("values", {}).items())
    return Cell(Params.from_dict(rec["params"]), slots=values, plain_prompt=rec.get("plain_prompt", ""))


def _open(project: Project, rec: dict[str, Any]) -> Any:
    from lorawb.core.dataset import load_image

    return load_image(project.root / rec["file"]).convert("RGB")


# --- reading them back (Triage; no torch) ---------------------------------------------------------


def read_scores(path: Path) -> dict[str, dict[str, Any]]:
    """The latest score row of each candidate id (the file's last pass wins)."""
    from lorawb.matrix.folder import read_rows

    return read_rows(path, "score") if path.is_file() else {}


def last_pass(path: Path) -> dict[str, Any]:
    """What the last scoring pass said: scorer, reference, reason."""
    from lorawb.train.events import read_events

    rows = [e for e in read_events(path) if e.get("type") == "scorer"] if path.is_file() else []
    return rows[-1] if rows else {}


def sort_by_score(items: Sequence[Any], scores: dict[str, dict[str, Any]], metric: str, reverse: bool = False) -> list:
    """Items (anything with a ``rel``) with the highest ``metric`` first; unscored ones after them,
    by name. ``reverse``: the lowest first (the off-model ones, to reject quickly)."""
    key = METRICS[metric]

    def value(item: Any) -> float | None:
        v = scores.get(Path(item.rel).stem, {}).get(key)
        return float(v) if isinstance(v, (int, float)) else None

    scored = [i for i in items if value(i) is not None]
    rest = sorted((i for i in items if value(i) is None), key=lambda i: i.rel.lower())
    scored.sort(key=lambda i: (-value(i), i.rel.lower()) if not reverse else (value(i), i.rel.lower()))  # type: ignore[operator]
    return scored + rest


SCORE_SORTS = tuple(METRICS)  # Triage's sorts by score, after its own


class GeneratedFiles:
    """The project's generated candidates as Triage shows them: records and scores, read again when
    their files change (a stat per look), by the candidate's id (its file stem)."""

    def __init__(self, project: Project) -> None:
        from lorawb.core.project import STATE_DIR

        folder = project.root / STATE_DIR / "generate"
        self.records_path = folder / "candidates.jsonl"
        self.scores_path = folder / "scores.jsonl"
        self._cache: dict[str, tuple[int, Any]] = {}

    def _read(self, what: str, path: Path, read: Any) -> Any:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return {}
        hit = self._cache.get(what)
        if hit is None or hit[0] != stamp:
            hit = self._cache[what] = (stamp, read(path))
        return hit[1]

    def scores(self) -> dict[str, dict[str, Any]]:
        return self._read("scores", self.scores_path, read_scores)

    def last_pass(self) -> dict[str, Any]:
        return self._read("pass", self.scores_path, last_pass)

    def records(self) -> dict[str, dict[str, Any]]:
        from lorawb.matrix.folder import read_rows

        return self._read("records", self.records_path, lambda p: read_rows(p, "candidate"))

    def describe(self, rel: str) -> str:
        """Two lines for a generated candidate (how it was drawn; its scores and what measured them), else ""."""
        cid = Path(rel).stem
        rec = self.records().get(cid)
        if rec is None:
            return ""
        p = rec.get("params", {})
        parts = [f"seed {p.get('seed')}"]
        if rec.get("pose"):
            parts.append(f"pose {rec['pose']}")
        if rec.get("reference"):
            parts.append(f"ref {rec['reference']}")
        helper = rec.get("helper") or {}
        if helper:
            parts.append(f"{helper.get('kind')} {float(helper.get('scale', 1.0)):g}")
        if p.get("lora"):
            parts.append(f"LoRA {Path(p['lora']['path']).stem} @{float(p.get('weight', 0)):g}")
        parts.append(f"{p.get('steps')} steps, cfg {float(p.get('cfg', 0)):g}")
        lines = ["generated: " + " · ".join(parts)]
        row = self.scores().get(cid)
        if row:
            measured = [
                f"{word} {row[key]:.2f}" for word, key in METRICS.items() if isinstance(row.get(key), (int, float))
            ]
            what = f"{row.get('scorer')} vs {row.get('reference')}"
            lines.append(" · ".join(measured) + f" ({what})" if measured else f"not measured ({what})")
        else:
            info = self.last_pass()
            lines.append(f"not scored: {info['reason']}" if info.get("reason") else "not scored yet")
        return "\n".join(lines)

    def sort_note(self, metric: str) -> str:
        """What the sort by ``metric`` rests on (said when the sort is chosen)."""
        info = self.last_pass()
        scored = len(self.scores())
        if not scored:
            why = (
                info.get("reason") or "no candidate has been scored yet (lorawb generate scores them when it finishes)"
            )
            return f"sort by {metric}: {why}; unscored images keep their name order"
        return f"sort by {metric}: {plural(scored, 'candidate')} scored by the {info.get('scorer')} against {info.get('reference')}, best first (S: worst first)"
