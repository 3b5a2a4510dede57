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

import base64
import statistics
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

METRICS = ("identity", "prompt_following", "leak", "memorisation", "prior")
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
    measures = ("identity", "prompt_following", "leak", "prior", "diversity")

    def __init__(self, dataset: Sequence[Path], share: float = 0.75, characters: Any = None) -> None:
        from lorawb.toyworld import reader

        self.reader = reader
        self.characters = characters  # lorawb.matrix.bleed.CharacterScores, with several characters
        readings = [reader.read(p).as_dict() for p in dataset]
        self.character = self.agreed(readings, share)
        self.share = share
        self.reason = "" if self.character else "the reader finds no attribute the dataset's images agree on"
        self.sources = {m: self.name for m in self.measures}
        self.ceiling = self._leave_one_out(readings)

    @staticmethod
    def agreed(readings: Sequence[dict[str, str]], share: float) -> dict[str, str]:
        """The attributes at least ``share`` of ``readings`` agree on (the character)."""
        from lorawb.toyworld import reader

        out: dict[str, str] = {}
        for attr in reader.READ:
            values = [r[attr] for r in readings]
            if not values:
                continue
            top = max(set(values), key=values.count)
            if values.count(top) / len(values) >= share:
                out[attr] = top
        return out

    def _leave_one_out(self, readings: list[dict[str, str]]) -> float | None:
        """Each dataset image read against the character the other images agree on."""
        vals = []
        for i, r in enumerate(readings):
            rest = self.agreed(readings[:i] + readings[i + 1 :], self.share)
            if rest:
                vals.append(sum(r[k] == v for k, v in rest.items()) / len(rest))
        return float(np.mean(vals)) if vals else None

    def _share(self, reading: dict[str, str]) -> float:
        return sum(reading[k] == v for k, v in self.character.items()) / len(self.character)

    def score(self, cells: Sequence[Cell], images: Sequence[Any], base: BaseLookup) -> list[dict[str, Any]]:
        from lorawb.toyworld import world

        out = []
        for cell, image in zip(cells, images, strict=True):
            joint = len(cell.characters) > 1
            reading = self.reader.read(self.reader.halves(image)[0] if joint else image).as_dict()
            row: dict[str, Any] = {} if joint else {"reading": reading}
            if self.character:
                row["prior" if cell.is_control else "identity"] = self._share(reading)
                if self.ceiling is not None:
                    row["ceiling"] = self.ceiling
            if cell.characters and self.characters is not None:
                row.update(self.characters.toy(cell.characters, cell.params.prompt, image))
                row.pop("ceiling", None)  # identity is now the character's own: the dataset's ceiling is not its
            want = world.parse_prompt(cell.plain_prompt)
            row["prompt_following"] = sum(reading[k] == v for k, v in want.items()) / len(want) if want else None
            if cell.is_control and not cell.params.is_base:
                ref = base(cell.base_id)
                if ref is not None:
                    base_reading = self.reader.read(ref).as_dict()
                    row["leak"] = sum(reading[k] != base_reading[k] for k in reading) / len(reading)
            out.append(row)
        return out


def encode_vec(v: np.ndarray) -> str:
    """An embedding in a score row: float16, base64 (diversity is measured from them later)."""
    return base64.b64encode(np.asarray(v, np.float16).tobytes()).decode("ascii")


def decode_vec(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.float16).astype(np.float32)


class EmbedderScorer:
    """Cosine similarities of embeddings from a local CLIP / DINOv2 folder, and/or faces (lorawb.matrix.faces).

    Identity, memorisation and prior preservation are measured by the identity judge
    (lorawb.matrix.identity: faces when a face model is set, else the image embedder on the whole image,
    the subject region or the face box); leak, prompt following and diversity by the image embedder.
    """

    def __init__(
        self,
        embedder: Any,
        dataset: Sequence[Path],
        root: Path,
        cache_dir: Path,
        settings: MatrixSettings,
        faces: Any = None,
        characters: Any = None,
    ):
        from lorawb.matrix.identity import IdentityJudge

        self.characters = characters  # lorawb.matrix.bleed.CharacterScores, with several characters
        self.embedder = embedder
        self.judge = IdentityJudge(embedder, faces, settings.crop, settings.top_k)
        self.judge.load_dataset(dataset, root, cache_dir)
        whole = ("leak", "diversity") + (("prompt_following",) if embedder is not None and embedder.has_text else ())
        self.measures = ("identity", "memorisation", "prior") + (whole if embedder is not None else ())
        self.sources = {m: self.judge.name for m in ("identity", "memorisation", "prior")}
        if embedder is not None:
            self.sources.update({m: embedder.name for m in whole})
        names = dict.fromkeys(self.sources.values())
        self.name = " + ".join(names)
        self.top_k = settings.top_k
        self.threshold = settings.memorisation_threshold
        self.rels = self.judge.rels
        self.dataset = self.judge.vectors
        ceiling = self.judge.ceiling(cache_dir.parent)
        self.ceiling = ceiling.value
        self._base: dict[str, np.ndarray] = {}
        self._text: dict[str, np.ndarray] = {}
        if not len(self.rels):
            self.reason = "the dataset has no images to compare with"
        elif not len(self.dataset):
            self.reason = "no face found in any dataset image: identity by faces has nothing to compare with"
        else:
            self.reason = ""

    def _text_vec(self, text: str) -> np.ndarray:
        if text not in self._text:
            self._text[text] = self.embedder.texts([text])[0]
        return self._text[text]

    def score(self, cells: Sequence[Cell], images: Sequence[Any], base: BaseLookup) -> list[dict[str, Any]]:
        from lorawb.matrix.identity import NO_FACE

        whole = self.embedder.images(list(images)) if self.embedder is not None else [None] * len(images)
        out = []
        for cell, image, e in zip(cells, images, whole, strict=True):
            row: dict[str, Any] = {}
            if e is not None:
                if cell.params.is_base:
                    self._base[cell.id] = e
                row["vec"] = encode_vec(e)
            if len(self.dataset):
                if self.judge.by_faces or self.judge.crop != "none" or e is None:
                    vecs, boxes = self.judge.embed(image)
                else:
                    vecs, boxes = e[None], [None]
                matches = [self.judge.match(v) for v in vecs]
                if self.judge.by_faces:
                    row["faces"] = [
                        {"box": [round(x, 1) for x in b], "identity": m[0], "nearest": m[1]}
                        for b, m in zip(boxes, matches, strict=True)
                        if b is not None
                    ]
                if not matches:
                    row["face"] = NO_FACE
                else:
                    best = max(range(len(matches)), key=lambda i: matches[i][0] or -2.0)
                    ident, near, rel = matches[best]
                    row["prior" if cell.is_control else "identity"] = ident
                    row["memorisation"] = near
                    row["nearest"] = rel
                    row["flagged"] = bool(near is not None and near >= self.threshold)
                if self.ceiling is not None:
                    row["ceiling"] = self.ceiling
            if e is not None and self.embedder.has_text and cell.plain_prompt:
                row["prompt_following"] = float(e @ self._text_vec(cell.plain_prompt))
            if cell.characters and self.characters is not None:
                row.pop("ceiling", None)  # identity is now the character's own: the dataset's ceiling is not its
                if e is not None and len(self.dataset) and not self.judge.by_faces and self.judge.crop == "none":
                    row.update(
                        self.characters.embedder(
                            cell.characters,
                            cell.params.prompt,
                            image,
                            e,
                            self.embedder.images,
                            self.dataset,
                            self.top_k,
                        )
                    )
                else:
                    row["unmeasured"] = "per-character scores with faces or a crop"
            if e is not None and cell.is_control and not cell.params.is_base:
                ref = self._base.get(cell.base_id)
                if ref is None:
                    img = base(cell.base_id)
                    if img is not None:
                        ref = self._base[cell.base_id] = self.embedder.images([img])[0]
                if ref is not None:
                    row["leak"] = float(max(0.0, 1.0 - float(e @ ref)))
            if len(set(self.sources.values())) > 1:
                row["by"] = self.sources
            out.append(row)
        return out


Scorer = NoScorer | ToyScorer | EmbedderScorer


def make_scorer(
    project: Project, ctx: Context, settings: MatrixSettings, dataset: Sequence[Path] | None = None
) -> Scorer:
    """The embedder or face model when one is set (and ``scorer`` allows), else the toy reader for toy
    models, else none.

    ``dataset``: the images identity is measured against (default: the project's dataset).
    """
    dataset = list(dataset) if dataset is not None else dataset_images(project)
    want = settings.scorer
    if want == "none":
        return NoScorer('scoring is off ([matrix] scorer = "none")')
    chars = None
    from lorawb.core.characters import characters_of

    if len(characters_of(project.config)) > 1:
        from lorawb.matrix.bleed import CharacterScores

        chars = CharacterScores(characters_of(project.config), project.dataset_dir, dataset)
    from lorawb.errors import ConfigError

    if settings.crop == "face" and not settings.face_embedder:
        raise ConfigError(
            '[matrix] crop = "face" needs a face detector',
            path=project.config_path,
            hint='set [matrix] face_embedder to an InsightFace-format folder, or crop = "subject"',
        )
    if settings.crop != "none" and not settings.embedder:
        raise ConfigError(
            f'[matrix] crop = "{settings.crop}" crops for an image embedder, and none is set',
            path=project.config_path,
            hint='set [matrix] embedder, or crop = "none" (faces are cropped by the detector already)',
        )
    if (settings.embedder or settings.face_embedder) and want in ("auto", "embedder"):
        embedder = faces = None
        if settings.embedder:
            from lorawb.matrix.embedder import load_embedder

            embedder = load_embedder(project.resolve(settings.embedder), settings.device)
        if settings.face_embedder:
            from lorawb.matrix.faces import FaceModel

            faces = FaceModel(project.resolve(settings.face_embedder))
        return EmbedderScorer(
            embedder,
            dataset,
            project.root,
            project.state_dir / "matrix" / "embeddings",
            settings,
            faces=faces,
            characters=chars,
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


def _sd(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) > 1 else None


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
    prior: float | None = None  # PRES: control prompts' similarity to the dataset (the base row's beside it)
    diversity: float | None = None  # DIV: mean pairwise distance across seeds of one prompt
    collapsed: bool = False  # diversity below collapse_ratio × the base model's
    flagged: int = 0
    scored: int = 0
    no_face: int = 0  # cells where the face model found no face (identity not measured there)
    net: float | None = None  # identity − leak: what the recommendation ranks by
    seed_sd: float | None = None  # spread of net across seeds (each seed's cells averaged)
    prompt_sd: float | None = None  # spread of identity across trigger prompts (each prompt's seeds averaged)
    seeds: int = 0
    prompts: int = 0

    @property
    def is_base(self) -> bool:
        return self.checkpoint == "base"

    @property
    def spread(self) -> float | None:
        """The larger of the seed and prompt spreads: differences inside it are not told apart."""
        xs = [x for x in (self.seed_sd, self.prompt_sd) if x is not None]
        return max(xs) if xs else None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# Below this rank correlation with the toy world's truth a score is shown with a caveat.
WEAK_CORRELATION = 0.5


@dataclass
class Summary:
    scorer: str
    measures: tuple[str, ...]
    rows: list[SummaryRow] = field(default_factory=list)
    reason: str = ""
    ceiling: float | None = None  # the dataset's leave-one-out identity, same measure and k
    per_character: bool = False  # identities are each character's own (a character axis): no one ceiling
    sources: dict[str, str] = field(default_factory=dict)  # metric -> what measured it
    calibration: dict[str, float] = field(default_factory=dict)  # metric -> rank correlation with the truth

    def source(self, metric: str) -> str:
        return self.sources.get(metric, self.scorer)

    @property
    def base(self) -> SummaryRow | None:
        return next((r for r in self.rows if r.is_base), None)

    def caveats(self) -> list[str]:
        """Scores whose calibration against the toy world's truth is weak (lorawb.matrix.calibration)."""
        out = []
        for metric, rho in self.calibration.items():
            if metric in self.measures and abs(rho) < WEAK_CORRELATION:
                name = metric.replace("_", " ")
                out.append(f"{name} follows the truth weakly (ρ {rho:.2f} on the toy world): a hint only")
        return out

    def ranked(self) -> list[SummaryRow]:
        """Rows with a LoRA and an identity, best first: identity net of leak; mostly-flagged rows last."""
        cands = [r for r in self.rows if not r.is_base and r.identity is not None]

        def key(r: SummaryRow) -> tuple:
            copies = bool(r.scored and r.flagged / r.scored > 0.25)
            return (copies, -round(r.identity - (r.leak or 0.0), 6), -(r.identity or 0.0), r.weight)  # type: ignore[operator]

        return sorted(cands, key=key)

    def best(self) -> SummaryRow | None:
        """The recommended checkpoint × weight: the most identity net of leak, not flagged for memorisation."""
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def runner_up(self) -> SummaryRow | None:
        ranked = self.ranked()
        return ranked[1] if len(ranked) > 1 else None

    def within_spread(self) -> tuple[float, float] | None:
        """(margin, spread) when the runner-up's net is within the best's or its own spread, else None."""
        best, second = self.best(), self.runner_up()
        if best is None or second is None or best.net is None or second.net is None:
            return None
        spreads = [x for x in (best.spread, second.spread) if x is not None]
        if not spreads:
            return None
        margin, spread = best.net - second.net, max(spreads)
        return (margin, spread) if margin <= spread else None

    def tie_text(self) -> str:
        """ "step 100 at weight 1 is within the spread …" when the runner-up is; else empty."""
        tie, second = self.within_spread(), self.runner_up()
        if tie is None or second is None:
            return ""
        return (
            f"{second.checkpoint} at weight {second.weight:g} is within the spread "
            f"(margin {tie[0]:.3f} ≤ {tie[1]:.3f}): this matrix does not tell them apart"
        )

    def headline(self, tie: bool = True) -> str:
        """The recommendation in one short line (the matrix list and the tab's header)."""
        from lorawb.matrix.identity import of_ceiling

        if not self.measures:
            return self.reason or NO_EMBEDDER
        best = self.best()
        if best is None:
            return self.recommendation()
        text = f"{best.checkpoint} at weight {best.weight:g}: {of_ceiling(best.identity, self.ceiling)}"
        if best.leak is not None:
            text += f", leak {best.leak:.2f}"
        second = self.runner_up()
        if tie and self.within_spread() is not None and second is not None:
            text += f" · {second.checkpoint} w{second.weight:g} within the spread"
        return text

    def recommendation(self) -> str:
        from lorawb.matrix.identity import of_ceiling

        if not self.measures:
            return self.reason or NO_EMBEDDER
        best = self.best()
        if best is None:
            why = f"no cell with a LoRA has an identity score ({self.scorer})"
            if any(r.no_face for r in self.rows):
                why = f"no face found in the cells with a LoRA ({self.source('identity')})"
            return f"no recommendation yet: {why}"
        parts = [of_ceiling(best.identity, self.ceiling)]
        if best.leak is not None:
            parts.append(f"leak {best.leak:.2f}")
        base = self.base
        if best.prior is not None:
            parts.append(
                f"PRES {best.prior:.2f}" + (f" (base {base.prior:.2f})" if base and base.prior is not None else "")
            )
        if best.diversity is not None:
            parts.append(
                f"DIV {best.diversity:.2f}"
                + (f" (base {base.diversity:.2f})" if base and base.diversity is not None else "")
                + (" collapsed" if best.collapsed else "")
            )
        if best.memorisation is not None:
            parts.append(f"nearest training image {best.memorisation:.2f}")
        if best.prompt_following is not None:
            parts.append(f"prompt {best.prompt_following:.2f}")
        flag = (
            f"; {plural(best.flagged, 'cell')} near-{'copies' if best.flagged == 1 else 'copy'} a training image"
            if best.flagged
            else ""
        )
        text = (
            f"{best.checkpoint} at weight {best.weight:g}: "
            + ", ".join(parts)
            + f" (measured by the {self.scorer}){flag}"
        )
        text += "; " + spread_text(best)
        second = self.runner_up()
        if self.tie_text():
            text += "; " + self.tie_text()
        elif second is not None and best.spread is None and second.spread is None:
            text += "; one seed and one prompt: no spread to tell the candidates apart by"
        return text


def spread_text(r: SummaryRow) -> str:
    parts = []
    if r.seed_sd is not None:
        parts.append(f"± {r.seed_sd:.3f} across {r.seeds} seeds")
    if r.prompt_sd is not None:
        parts.append(f"± {r.prompt_sd:.3f} across {r.prompts} prompts")
    return "spread " + ", ".join(parts) if parts else "no spread (one seed, one prompt)"


def _pairwise_distance(items: list[Any]) -> float | None:
    """Mean pairwise distance: 1 − cosine of embeddings, or the share of attributes read differently."""
    if len(items) < 2:
        return None
    ds = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = items[i], items[j]
            if isinstance(a, dict):
                ds.append(sum(a[k] != b.get(k) for k in a) / max(1, len(a)))
            else:
                na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
                ds.append(1.0 - float(a @ b) / max(na * nb, 1e-12))
    return float(np.mean(ds))


def _appearance(s: dict[str, Any]) -> Any:
    if isinstance(s.get("vec"), str):
        return decode_vec(s["vec"])
    if isinstance(s.get("reading"), dict):
        return s["reading"]
    return None


def diversity(cells: Sequence[Cell], scores: dict[str, dict[str, Any]], scorer: str) -> float | None:
    """DIV over ``cells``: per prompt (everything but the seed), the mean pairwise distance across its seeds,
    averaged over prompts; None where no prompt has two scored seeds."""
    groups: dict[tuple, list[Any]] = {}
    for c in cells:
        s = scores.get(c.id)
        if not s or s.get("scorer") != scorer:
            continue
        look = _appearance(s)
        if look is None:
            continue
        key = tuple(sorted((k, v) for k, v in c.params.key().items() if k != "seed"))
        groups.setdefault(key, []).append(look)
    per = [d for d in (_pairwise_distance(v) for v in groups.values()) if d is not None]
    return _mean(per)


def summarize(
    layout: Layout,
    scores: dict[str, dict[str, Any]],
    done: set[str],
    scorer: str,
    measures: Sequence[str],
    reason: str = "",
    collapse_ratio: float = 0.5,
) -> Summary:
    """Per checkpoint × weight: done cells, mean scores (identity on trigger cells, leak and PRES on controls),
    diversity across seeds, and the spreads across seeds and prompts."""
    groups: dict[tuple[str, float], dict[str, Any]] = {}
    order: list[tuple[str, float]] = []
    ck = layout.axes["checkpoint"]
    wt = layout.axes["weight"]
    has_seed = "seed" in layout.axes
    for pos in layout.positions:
        cell = layout.cells[pos.cell]
        weight = float(wt.values[pos.index("weight")])
        label = "base" if cell.params.is_base else ck.labels[pos.index("checkpoint")]
        if cell.params.stack and "loras" in layout.axes:
            label = layout.axes["loras"].labels[pos.index("loras")]  # weights other than 1 are in the label
            weight = 1.0
        key = (label, 0.0 if cell.params.is_base else weight)
        if key not in groups:
            groups[key] = {"cells": set(), "seed": {}}
            order.append(key)
        groups[key]["cells"].add(pos.cell)
        groups[key]["seed"][pos.cell] = pos.index("seed") if has_seed else 0
    out = Summary(scorer=scorer, measures=tuple(measures), reason=reason)
    per_character = False
    for s in scores.values():
        if s.get("scorer") == scorer:
            if isinstance(s.get("ceiling"), (int, float)):
                out.ceiling = float(s["ceiling"])
            if isinstance(s.get("by"), dict):
                out.sources = dict(s["by"])
            per_character = per_character or "characters" in s
    if per_character:  # identities of one character each: a ceiling of the whole dataset would mislead
        out.ceiling, out.per_character = None, True
    for key in order:
        ids = groups[key]["cells"]
        seed_of = groups[key]["seed"]
        row = SummaryRow(checkpoint=key[0], weight=key[1], cells=len(ids), done=len(ids & done))
        vals: dict[str, list[float]] = {m: [] for m in METRICS}
        by_seed: dict[int, dict[str, list[float]]] = {}
        by_prompt: dict[str, list[float]] = {}
        for cid in sorted(ids):  # one order of summing, whatever the hash seed
            s = scores.get(cid)
            if not s or s.get("scorer") != scorer:
                continue
            row.scored += 1
            row.flagged += int(bool(s.get("flagged")))
            row.no_face += int(s.get("face") == "no face found")
            for m in METRICS:
                v = s.get(m)
                if isinstance(v, (int, float)):
                    vals[m].append(float(v))
                    if m in ("identity", "leak"):
                        by_seed.setdefault(seed_of[cid], {}).setdefault(m, []).append(float(v))
            if isinstance(s.get("identity"), (int, float)):
                by_prompt.setdefault(layout.cells[cid].params.prompt, []).append(float(s["identity"]))
        row.identity = _mean(vals["identity"])
        row.prompt_following = _mean(vals["prompt_following"])
        row.leak = _mean(vals["leak"])
        row.memorisation = _mean(vals["memorisation"])
        row.prior = _mean(vals["prior"])
        if row.identity is not None:
            row.net = row.identity - (row.leak or 0.0)
        nets = [
            float(np.mean(v["identity"])) - (float(np.mean(v["leak"])) if v.get("leak") else 0.0)
            for _, v in sorted(by_seed.items())
            if v.get("identity")
        ]
        row.seeds, row.seed_sd = len(nets), _sd(nets)
        prompt_means = [float(np.mean(v)) for v in by_prompt.values()]
        row.prompts, row.prompt_sd = len(prompt_means), _sd(prompt_means)
        row.diversity = diversity([layout.cells[c] for c in sorted(ids)], scores, scorer)
        out.rows.append(row)
    out.rows.sort(key=lambda r: (not r.is_base, order.index((r.checkpoint, r.weight)) if not r.is_base else 0))
    base = out.base
    if base is not None and base.diversity is not None and base.diversity > 0:
        for r in out.rows:
            if not r.is_base and r.diversity is not None:
                r.collapsed = r.diversity < collapse_ratio * base.diversity
    if "diversity" not in out.measures and any(r.diversity is not None for r in out.rows):
        out.measures = out.measures + ("diversity",)
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


LABELS = {
    "identity": "identity",
    "memorisation": "nearest",
    "prior": "PRES",
    "leak": "leak",
    "diversity": "DIV",
    "prompt_following": "prompt",
}


NO_CEILING_PER_CHARACTER = "no dataset ceiling: each identity is one character's against its own images"


def scores_header(summary: Summary) -> str:
    """What measured each score, the dataset's ceiling, and what is not measured (the tab's scores view)."""
    by: dict[str, list[str]] = {}
    for m, label in LABELS.items():
        if m in summary.measures:
            by.setdefault(summary.source(m), []).append(label)
    parts = [f"{', '.join(labels)} by the {src}" for src, labels in by.items()]
    text = "; ".join(parts)
    if summary.ceiling is not None:
        text += f" · dataset ceiling {summary.ceiling:.2f} (each training image against the rest)"
    elif summary.per_character:
        text += f" · {NO_CEILING_PER_CHARACTER}"
    elif "identity" in summary.measures:
        text += " · dataset ceiling not measured"
    no_face = sum(r.no_face for r in summary.rows)
    if no_face:
        text += f" · no face found in {plural(no_face, 'cell')} (identity not measured there)"
    missing = [label for m, label in LABELS.items() if m not in summary.measures and m != "memorisation"]
    if missing:
        text += f" · not measured: {', '.join(missing)}"
    return text


def format_table(summary: Summary) -> str:
    """The checkpoint × weight table as plain text (``lorawb matrix show``), with the ceiling, PRES,
    diversity and the spreads, and what measured them."""
    head = (
        f"{'checkpoint':<14} {'weight':>6} {'cells':>9} {'identity':>8} {'±seed':>6} {'±prompt':>7} {'prompt':>7} "
        f"{'leak':>6} {'PRES':>6} {'DIV':>6} {'nearest':>8} {'flag':>5}"
    )
    lines = []
    if summary.ceiling is not None:
        lines.append(
            f"dataset ceiling (each training image against the rest, {summary.source('identity')}): {summary.ceiling:.2f}"
        )
    else:
        lines.append(NO_CEILING_PER_CHARACTER if summary.per_character else "dataset ceiling: not measured")
    lines.append(head)

    def f(x: float | None, p: int = 2) -> str:
        return "-" if x is None else f"{x:.{p}f}"

    for r in summary.rows:
        div = f(r.diversity) + ("!" if r.collapsed else "")
        lines.append(
            f"{r.checkpoint[:14]:<14} {r.weight:>6g} {f'{r.done}/{r.cells}':>9} {f(r.identity):>8} {f(r.seed_sd, 3):>6} "
            f"{f(r.prompt_sd, 3):>7} {f(r.prompt_following):>7} {f(r.leak):>6} {f(r.prior):>6} {div:>6} "
            f"{f(r.memorisation):>8} {r.flagged if r.scored else '-':>5}"
        )
    if any(r.collapsed for r in summary.rows):
        lines.append("! collapsed: its seeds differ far less than the base model's (one memorised image)")
    if any(r.no_face for r in summary.rows):
        lines.append(
            "no face found in "
            + ", ".join(f"{r.checkpoint} w{r.weight:g}: {r.no_face}" for r in summary.rows if r.no_face)
        )
    lines.extend(summary.caveats())
    return "\n".join(lines)
