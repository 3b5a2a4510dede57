"""Scores of matrix cells, what measured them, and the checkpoint × weight summary.

Per cell (each a number in 0..1 where higher means "more of it", or None when nothing
measured it):

- ``identity``: how much the cell looks like the dataset's character. Embedder: mean of the
  top-k cosine similarities to the dataset's images. Toy-world reader: the share of the
  character's invariant attributes (those most dataset images agree on) that it draws.
- ``memorisation``: similarity to the single nearest training image (embedder only),
  ``flagged`` at or above ``[matrix] memorisation_threshold``: a near copy is overfit.
- ``prompt_following``: how well the cell shows its prompt without the trigger. CLIP: the
  cosine similarity of image and text embeddings (CLIP's raw scale, about 0.2-0.35 for a
  good match); toy-world reader: the share of the prompt's attributes it draws.
- ``leak`` (control prompts, with a LoRA): how far the LoRA moved the image away from the
  weight-0 image of the same prompt and seed: 1 - cosine similarity (embedder), or the share
  of attributes read differently (toy-world reader).

With neither an embedder nor a toy-world model nothing is measured, and ``NoScorer.reason``
says so; no number is ever made up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lorawb.core import layout as files
from lorawb.matrix.cells import Cell, Layout
from lorawb.words import plural

if TYPE_CHECKING:
    from PIL import Image

    from lorawb.core.project import Project
    from lorawb.matrix.resolve import Context
    from lorawb.matrix.settings import MatrixSettings

METRICS = ("identity", "prompt_following", "leak", "memorisation")
BaseLookup = Callable[[str], "Image.Image | None"]


def dataset_images(project: Project) -> list[Path]:
    """The character's images: everything under dataset/ except rejected/."""
    if not project.dataset_dir.is_dir():
        return []
    return list(files.walk_images(project.dataset_dir))


class NoScorer:
    """Nothing can measure the cells: says why and what would."""

    name = "none"
    measures: tuple[str, ...] = ()

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def score(self, cells: Sequence[Cell], images: Sequence[Any], base: BaseLookup) -> list[dict[str, Any]]:
        return []


NO_EMBEDDER = (
    "no embedder configured: identity, leak, memorisation and prompt following are not measured "
    "(set [matrix] embedder in lorawb.toml to a local CLIP or DINOv2 folder)"
)


class ToyScorer:
    """The toy-world attribute reader as the judge (toy-world base models only)."""

    name = "toy-world reader"
    measures = ("identity", "prompt_following", "leak")

    def __init__(self, dataset: Sequence[Path], share: float = 0.75, characters: Any = None) -> None:
        from lorawb.toyworld import reader

        self.reader = reader
        self.characters = characters  # lorawb.matrix.bleed.CharacterScores, with several characters
        readings = [reader.read(p).as_dict() for p in dataset]
        self.character: dict[str, str] = {}
        for attr in reader.READ:
            values = [r[attr] for r in readings]
            if not values:
                continue
            top = max(set(values), key=values.count)
            if values.count(top) / len(values) >= share:
                self.character[attr] = top
        self.reason = "" if self.character else "the reader finds no attribute the dataset's images agree on"

    def score(self, cells: Sequence[Cell], images: Sequence[Any], base: BaseLookup) -> list[dict[str, Any]]:
        from lorawb.toyworld import world

        out = []
        for cell, image in zip(cells, images, strict=True):
            joint = len(cell.characters) > 1
            reading = self.reader.read(self.reader.halves(image)[0] if joint else image).as_dict()
            row: dict[str, Any] = {} if joint else {"reading": reading}
            if not cell.is_control and self.character:
                row["identity"] = sum(reading[k] == v for k, v in self.character.items()) / len(self.character)
            if cell.characters and self.characters is not None:
                row.update(self.characters.toy(cell.characters, cell.params.prompt, image))
            want = world.parse_prompt(cell.plain_prompt)
            row["prompt_following"] = sum(reading[k] == v for k, v in want.items()) / len(want) if want else None
            if cell.is_control and not cell.params.is_base:
                ref = base(cell.base_id)
                if ref is not None:
                    base_reading = self.reader.read(ref).as_dict()
                    row["leak"] = sum(reading[k] != base_reading[k] for k in reading) / len(reading)
            out.append(row)
        return out


class EmbedderScorer:
    """Cosine similarities of embeddings from a local CLIP / DINOv2 folder."""

    def __init__(
        self,
        embedder: Any,
        dataset: Sequence[Path],
        root: Path,
        cache_dir: Path,
        settings: MatrixSettings,
        characters: Any = None,
    ):
        from lorawb.matrix.embedder import dataset_embeddings

        self.characters = characters  # lorawb.matrix.bleed.CharacterScores, with several characters
        self.embedder = embedder
        self.name = embedder.name
        self.measures = ("identity", "memorisation", "leak") + (("prompt_following",) if embedder.has_text else ())
        self.top_k = settings.top_k
        self.threshold = settings.memorisation_threshold
        self.rels = [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in dataset]
        self.dataset = dataset_embeddings(embedder, cache_dir, root, dataset)
        self._base: dict[str, np.ndarray] = {}
        self._text: dict[str, np.ndarray] = {}
        self.reason = "" if len(self.rels) else "the dataset has no images to compare with"

    def _text_vec(self, text: str) -> np.ndarray:
        if text not in self._text:
            self._text[text] = self.embedder.texts([text])[0]
        return self._text[text]

    def score(self, cells: Sequence[Cell], images: Sequence[Any], base: BaseLookup) -> list[dict[str, Any]]:
        vecs = self.embedder.images(list(images))
        out = []
        for cell, e, image in zip(cells, vecs, images, strict=True):
            if cell.params.is_base:
                self._base[cell.id] = e
            row: dict[str, Any] = {}
            if len(self.dataset):
                sims = self.dataset @ e
                k = min(self.top_k, len(sims))
                best = int(np.argmax(sims))
                if not cell.is_control:
                    row["identity"] = float(np.sort(sims)[-k:].mean())
                row["memorisation"] = float(sims[best])
                row["nearest"] = self.rels[best]
                row["flagged"] = bool(sims[best] >= self.threshold)
            if self.embedder.has_text and cell.plain_prompt:
                row["prompt_following"] = float(e @ self._text_vec(cell.plain_prompt))
            if cell.characters and self.characters is not None and len(self.dataset):
                row.update(
                    self.characters.embedder(
                        cell.characters, cell.params.prompt, image, e, self.embedder.images, self.dataset, self.top_k
                    )
                )
            if cell.is_control and not cell.params.is_base:
                ref = self._base.get(cell.base_id)
                if ref is None:
                    img = base(cell.base_id)
                    if img is not None:
                        ref = self._base[cell.base_id] = self.embedder.images([img])[0]
                if ref is not None:
                    row["leak"] = float(max(0.0, 1.0 - float(e @ ref)))
            out.append(row)
        return out


Scorer = NoScorer | ToyScorer | EmbedderScorer


def make_scorer(
    project: Project, ctx: Context, settings: MatrixSettings, dataset: Sequence[Path] | None = None
) -> Scorer:
    """The embedder when one is set (and ``scorer`` allows), else the toy reader for toy models, else none.

    ``dataset``: the images identity is measured against (default: the project's dataset).
    """
    dataset = list(dataset) if dataset is not None else dataset_images(project)
    chars = None
    from lorawb.core.characters import characters_of

    if len(characters_of(project.config)) > 1:
        from lorawb.matrix.bleed import CharacterScores

        chars = CharacterScores(characters_of(project.config), project.dataset_dir, dataset)
    want = settings.scorer
    if want == "none":
        return NoScorer('scoring is off ([matrix] scorer = "none")')
    if settings.embedder and want in ("auto", "embedder"):
        from lorawb.matrix.embedder import load_embedder

        embedder = load_embedder(project.resolve(settings.embedder), settings.device)
        return EmbedderScorer(
            embedder, dataset, project.root, project.state_dir / "matrix" / "embeddings", settings, chars
        )
    if want == "embedder":
        return NoScorer(NO_EMBEDDER)
    if ctx.toyworld:
        return ToyScorer(dataset, characters=chars)
    if want == "toyworld":
        return NoScorer("the toy-world reader only reads toy-world models' images; this base model is not one")
    return NoScorer(NO_EMBEDDER)


# --- summary --------------------------------------------------------------------------------------


def _mean(xs: list[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


@dataclass
class SummaryRow:
    checkpoint: str  # "base" for weight 0
    weight: float
    cells: int = 0  # cells of this checkpoint × weight
    done: int = 0
    identity: float | None = None
    prompt_following: float | None = None
    leak: float | None = None
    memorisation: float | None = None
    flagged: int = 0
    scored: int = 0

    @property
    def is_base(self) -> bool:
        return self.checkpoint == "base"

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Summary:
    scorer: str
    measures: tuple[str, ...]
    rows: list[SummaryRow] = field(default_factory=list)
    reason: str = ""

    def best(self) -> SummaryRow | None:
        """The recommended checkpoint × weight: the most identity net of leak, not flagged for memorisation."""
        cands = [r for r in self.rows if not r.is_base and r.identity is not None]
        ok = [r for r in cands if not (r.scored and r.flagged / r.scored > 0.25)] or cands
        if not ok:
            return None
        return max(ok, key=lambda r: (round(r.identity - (r.leak or 0.0), 6), r.identity, -r.weight))  # type: ignore[operator]

    def recommendation(self) -> str:
        if not self.measures:
            return self.reason or NO_EMBEDDER
        best = self.best()
        if best is None:
            return f"no recommendation yet: no cell with a LoRA has an identity score ({self.scorer})"
        parts = [f"identity {best.identity:.2f}"]
        if best.leak is not None:
            parts.append(f"leak {best.leak:.2f}")
        if best.memorisation is not None:
            parts.append(f"nearest training image {best.memorisation:.2f}")
        if best.prompt_following is not None:
            parts.append(f"prompt {best.prompt_following:.2f}")
        flag = (
            f"; {plural(best.flagged, 'cell')} near-{'copies' if best.flagged == 1 else 'copy'} a training image"
            if best.flagged
            else ""
        )
        return (
            f"{best.checkpoint} at weight {best.weight:g}: "
            + ", ".join(parts)
            + f" (measured by the {self.scorer}){flag}"
        )


def summarize(
    layout: Layout,
    scores: dict[str, dict[str, Any]],
    done: set[str],
    scorer: str,
    measures: Sequence[str],
    reason: str = "",
) -> Summary:
    """Per checkpoint × weight: done cells and mean scores (identity on trigger cells, leak on controls)."""
    groups: dict[tuple[str, float], dict[str, Any]] = {}
    order: list[tuple[str, float]] = []
    ck = layout.axes["checkpoint"]
    wt = layout.axes["weight"]
    for pos in layout.positions:
        cell = layout.cells[pos.cell]
        weight = float(wt.values[pos.index("weight")])
        label = "base" if cell.params.is_base else ck.labels[pos.index("checkpoint")]
        if cell.params.stack and "loras" in layout.axes:
            label = layout.axes["loras"].labels[pos.index("loras")]  # weights other than 1 are in the label
            weight = 1.0
        key = (label, 0.0 if cell.params.is_base else weight)
        if key not in groups:
            groups[key] = {"cells": set()}
            order.append(key)
        groups[key]["cells"].add(pos.cell)
    out = Summary(scorer=scorer, measures=tuple(measures), reason=reason)
    for key in order:
        ids = groups[key]["cells"]
        row = SummaryRow(checkpoint=key[0], weight=key[1], cells=len(ids), done=len(ids & done))
        vals: dict[str, list[float]] = {m: [] for m in METRICS}
        for cid in ids:
            s = scores.get(cid)
            if not s or s.get("scorer") != scorer:
                continue
            row.scored += 1
            row.flagged += int(bool(s.get("flagged")))
            for m in METRICS:
                v = s.get(m)
                if isinstance(v, (int, float)):
                    vals[m].append(float(v))
        row.identity = _mean(vals["identity"])
        row.prompt_following = _mean(vals["prompt_following"])
        row.leak = _mean(vals["leak"])
        row.memorisation = _mean(vals["memorisation"])
        out.rows.append(row)
    out.rows.sort(key=lambda r: (not r.is_base, order.index((r.checkpoint, r.weight)) if not r.is_base else 0))
    return out


@dataclass
class ValueRow:
    value: str
    cells: int
    identity: float | None
    prompt_following: float | None


def _setting(layout: Layout, pos: Any, cell: Cell) -> tuple[str, float]:
    """A cell's checkpoint × weight as the summary rows name it (a loras axis value: its label, weight 1)."""
    if cell.params.stack and "loras" in layout.axes:
        return layout.axes["loras"].labels[pos.index("loras")], 1.0
    return layout.axes["checkpoint"].labels[pos.index("checkpoint")], float(
        layout.axes["weight"].values[pos.index("weight")]
    )


def by_axis_value(
    layout: Layout, scores: dict[str, dict[str, Any]], scorer: str, axis: str, row: SummaryRow | None = None
) -> list[ValueRow]:
    """Mean scores per value of ``axis`` (a slot: does the character hold in every context?),
    over the cells of one checkpoint × weight (``row``), or over every cell with a LoRA."""
    from lorawb.matrix.cells import NO_VALUE

    ax = layout.axes[axis]
    vals: dict[int, dict[str, list[float]]] = {}
    for pos in layout.positions:
        cell = layout.cells[pos.cell]
        i = pos.index(axis)
        if i == NO_VALUE or cell.is_control:
            continue
        if row is None:
            if cell.params.is_base:
                continue
        elif row.is_base != cell.params.is_base or (
            not row.is_base and _setting(layout, pos, cell) != (row.checkpoint, row.weight)
        ):
            continue
        s = scores.get(pos.cell)
        bucket = vals.setdefault(i, {"identity": [], "prompt_following": [], "n": []})
        bucket["n"].append(1.0)
        if s and s.get("scorer") == scorer:
            for m in ("identity", "prompt_following"):
                if isinstance(s.get(m), (int, float)):
                    bucket[m].append(float(s[m]))
    return [
        ValueRow(ax.labels[i], len(v["n"]), _mean(v["identity"]), _mean(v["prompt_following"]))
        for i, v in sorted(vals.items())
    ]


def format_table(summary: Summary) -> str:
    """The checkpoint × weight table as plain text (``lorawb matrix show``)."""
    head = f"{'checkpoint':<14} {'weight':>6} {'cells':>9} {'identity':>8} {'prompt':>7} {'leak':>6} {'nearest':>8} {'flag':>5}"
    lines = [head]

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for r in summary.rows:
        lines.append(
            f"{r.checkpoint[:14]:<14} {r.weight:>6g} {f'{r.done}/{r.cells}':>9} {f(r.identity):>8} "
            f"{f(r.prompt_following):>7} {f(r.leak):>6} {f(r.memorisation):>8} {r.flagged if r.scored else '-':>5}"
        )
    return "\n".join(lines)
