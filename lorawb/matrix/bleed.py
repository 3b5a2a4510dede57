"""Scores per character: in a cell prompting one character, its identity and how much of another
shows (**bleed**); in a joint cell, each character's identity where it stands and whether two
distinct figures are drawn.

Measured by

- the toy world's reader (toy-world base models): each character's look is the attributes its
  invariant tags name (``[characters.<name>] invariant``: ``blue hair, orange outfit, scarf``), else
  the attributes most of its own images agree on. A figure's identity is the share of its
  character's attributes read on it; its bleed is 1 when any attribute of another character that
  its own character lacks (B's hair, outfit or accessory on A) is read on it, else 0. A joint
  scene is read per figure (``reader.read_figures``: left and right halves) and "two figures" is 1
  when a figure stands in each place (a merged figure in between fails it).
- an image embedder (CLIP / DINOv2, lorawb.matrix.embedder) on real images, only where the prompt
  places the characters left and right: each half's embedding against its character's own images
  (mean of the top-k cosine similarities). Bleed and "two figures" are not measured this way, and a
  cell whose prompt does not place its characters gets no per-character score: ``UNMEASURED`` says
  which.

No torch here; the embedder is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lorawb.core.characters import Character

LOOK_ATTRIBUTES = ("hair", "outfit", "accessory")  # what a character's look is made of (toy world)
UNMEASURED = {
    "bleed": "bleed is measured by the toy-world reader only (an embedder cannot tell whose hair it sees)",
    "two_figures": "two distinct figures are counted by the toy-world reader only",
    "placement": "per-character identity on real images needs a prompt that places the characters left and right",
}


@dataclass(frozen=True)
class Look:
    """A character as the toy reader checks it: name, trigger and the attributes it must show."""

    name: str
    trigger: str
    attributes: dict[str, str]


def look_of(char: Character, images: Sequence[Path] = ()) -> Look:
    """The character's look: its invariant tags as the toy world reads them, else what most of
    ``images`` (its own images) agree on."""
    from lorawb.toyworld import reader, world

    want = {k: v for k, v in world.parse_prompt(", ".join(char.invariant)).items() if k in LOOK_ATTRIBUTES}
    if not want and images:
        readings = [reader.read(p).as_dict() for p in images]
        for attr in LOOK_ATTRIBUTES:
            values = [r[attr] for r in readings]
            top = max(set(values), key=values.count)
            if values.count(top) / len(values) >= 0.75:
                want[attr] = top
    return Look(char.name, char.trigger, want)


def identity(reading: Mapping[str, str], look: Look) -> float | None:
    """The share of the character's attributes read on a figure (None: the look is empty)."""
    if not look.attributes:
        return None
    return sum(reading.get(k) == v for k, v in look.attributes.items()) / len(look.attributes)


def bleed(reading: Mapping[str, str], own: Look, other: Look) -> float | None:
    """1.0 when the figure drawn for ``own`` shows any attribute of ``other`` that ``own`` lacks
    (``other``'s hair, outfit or accessory), else 0.0; None when ``other`` has nothing of its own."""
    theirs = {k: v for k, v in other.attributes.items() if v != "none" and own.attributes.get(k) != v}
    if not theirs:
        return None
    return 1.0 if any(reading.get(k) == v for k, v in theirs.items()) else 0.0


def _max(values: Sequence[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return max(xs) if xs else None


def toy_alone(image: Any, own: Look, others: Sequence[Look]) -> dict[str, Any]:
    """A cell prompting ``own`` alone: its identity, and bleed from each other character (the worst)."""
    from lorawb.toyworld import reader

    r = reader.read(image).as_dict()
    per = {o.name: bleed(r, own, o) for o in others}
    return {
        "identity": identity(r, own),
        "bleed": _max(list(per.values())),
        "characters": {own.name: {"identity": identity(r, own), "bleed": _max(list(per.values())), "at": "alone"}},
    }


def toy_joint(image: Any, placed: Sequence[Look]) -> dict[str, Any]:
    """A joint cell with ``placed`` = (left, right) looks: each character's identity where it stands,
    bleed from the other onto it, and whether two distinct figures are drawn."""
    from lorawb.toyworld import reader

    figs = reader.read_figures(image)
    left, right = placed[0], placed[1]
    rl, rr = figs.left.as_dict(), figs.right.as_dict()
    chars = {
        left.name: {"identity": identity(rl, left), "bleed": bleed(rl, left, right), "at": "left"},
        right.name: {"identity": identity(rr, right), "bleed": bleed(rr, right, left), "at": "right"},
    }
    ids = [c["identity"] for c in chars.values() if c["identity"] is not None]
    return {
        "identity": float(np.mean(ids)) if ids else None,
        "bleed": _max([c["bleed"] for c in chars.values()]),
        "two_figures": 1.0 if figs.two_figures else 0.0,
        "characters": chars,
        "readings": {"left": rl, "right": rr},
    }


# --- where the characters stand -------------------------------------------------------------------

_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def placement(prompt: str, triggers: Sequence[str]) -> list[int] | None:
    """Which trigger stands where: indices into ``triggers`` in left-to-right order, read from the
    words after each trigger (``A on the left and B on the right``), or None when the prompt does
    not say left and right for each."""
    low = prompt.lower()
    at = []
    for i, t in enumerate(triggers):
        pos = low.find(t.lower())
        if pos < 0:
            return None
        at.append((pos, i))
    at.sort()
    side: dict[int, str] = {}
    for k, (pos, i) in enumerate(at):
        end = at[k + 1][0] if k + 1 < len(at) else len(low)
        m = _SIDE.search(low, pos, end)
        if m is None:
            return None
        side[i] = m.group(1).lower()
    if sorted(side.values()) != ["left", "right"]:
        return None
    return [i for i in side if side[i] == "left"] + [i for i in side if side[i] == "right"]


def toy_placement(prompt: str, triggers: Sequence[str]) -> list[int]:
    """The toy world's placement: as the prompt says, else the first-named figure on the left (how
    ``world.pair_caption`` draws and captions a joint scene)."""
    placed = placement(prompt, triggers)
    if placed is not None:
        return placed
    low = prompt.lower()
    return sorted(range(len(triggers)), key=lambda i: low.find(triggers[i].lower()))


# --- real images: one embedder, per half --------------------------------------------------------


def split_halves(image: Any) -> tuple[Any, Any]:
    """The left and right halves of a PIL image."""
    w, h = image.size
    return image.crop((0, 0, w // 2, h)), image.crop((w // 2, 0, w, h))


def embedder_joint(
    image: Any,
    prompt: str,
    names: Sequence[str],
    triggers: Sequence[str],
    embed: Any,
    refs: Mapping[str, np.ndarray],
    k: int,
) -> dict[str, Any]:
    """A joint cell on a real model: each half against its character's own images (top-``k`` mean
    cosine), when the prompt places the characters left and right; else nothing, with the reason."""
    placed = placement(prompt, triggers)
    if placed is None:
        return {"unmeasured": UNMEASURED["placement"]}
    halves = split_halves(image)
    vecs = embed(list(halves))
    chars: dict[str, Any] = {}
    for side, idx, vec in zip(("left", "right"), placed, vecs, strict=True):
        ref = refs.get(names[idx])
        if ref is None or not len(ref):
            chars[names[idx]] = {"identity": None, "at": side}
            continue
        sims = np.sort(ref @ vec)[-min(k, len(ref)) :]
        chars[names[idx]] = {"identity": float(sims.mean()), "at": side}
    ids = [c["identity"] for c in chars.values() if c["identity"] is not None]
    return {
        "identity": float(np.mean(ids)) if ids else None,
        "characters": chars,
        "unmeasured": UNMEASURED["bleed"] + "; " + UNMEASURED["two_figures"],
    }


# --- the matrix's hook (lorawb.matrix.scores calls these for cells with a character axis) ---------


def character_images(root: Path, images: Sequence[Path], chars: Sequence[Character]) -> dict[str, list[int]]:
    """Per character, the indices of ``images`` (under ``root``) that hold it alone (its folder or the
    triggers its caption names; lorawb.core.characters)."""
    from lorawb.core.captions import tags_of
    from lorawb.core.characters import characters_in

    out: dict[str, list[int]] = {c.name: [] for c in chars}
    for i, p in enumerate(images):
        rel = p.parent.relative_to(root).as_posix() if p.is_relative_to(root) else ""
        cap = p.with_suffix(".txt")
        try:
            tags = tags_of(cap.read_text(encoding="utf-8", errors="replace")) if cap.is_file() else []
        except OSError:
            tags = []
        held = characters_in(rel, tags, chars)
        if len(held) == 1:
            out[held[0]].append(i)
    return out


class CharacterScores:
    """The project's characters as the cell scorers see them (only built with two or more)."""

    def __init__(self, chars: Sequence[Character], root: Path, images: Sequence[Path]) -> None:
        self.chars = list(chars)
        self.own = character_images(root, images, chars)
        self.images = list(images)
        self._looks: dict[str, Look] | None = None

    @property
    def looks(self) -> dict[str, Look]:
        if self._looks is None:
            self._looks = {c.name: look_of(c, [self.images[i] for i in self.own[c.name]]) for c in self.chars}
        return self._looks

    def toy(self, names: Sequence[str], prompt: str, image: Any) -> dict[str, Any]:
        """The toy reader's per-character scores of a cell prompting ``names`` (one, or a pair)."""
        looks = self.looks
        if len(names) == 1:
            own = looks[names[0]]
            return toy_alone(image, own, [v for k, v in looks.items() if k != names[0]])
        order = toy_placement(prompt, [looks[n].trigger for n in names])
        return toy_joint(image, [looks[names[i]] for i in order])

    def embedder(
        self, names: Sequence[str], prompt: str, image: Any, vec: np.ndarray, embed: Any, dataset: np.ndarray, k: int
    ) -> dict[str, Any]:
        """Per-character identity with an embedder: one character against its own images; a pair per
        half where the prompt places it. Bleed and two figures are not measured (``unmeasured``)."""
        refs = {n: dataset[self.own[n]] for n in names if n in self.own}
        if len(names) == 1:
            ref = refs.get(names[0])
            ident = float(np.sort(ref @ vec)[-min(k, len(ref)) :].mean()) if ref is not None and len(ref) else None
            return {
                "identity": ident,
                "characters": {names[0]: {"identity": ident, "at": "alone"}},
                "unmeasured": UNMEASURED["bleed"],
            }
        triggers = [dict((c.name, c.trigger) for c in self.chars)[n] for n in names]
        return embedder_joint(image, prompt, names, triggers, embed, refs, k)


def format_characters(row: Mapping[str, Any]) -> str:
    """One line of a cell's per-character scores: ``mira 1.00 (left) · tom 0.67 (right) · bleed 0 · two figures``."""
    parts = []
    for name, c in (row.get("characters") or {}).items():
        ident = c.get("identity")
        text = f"{name} {'-' if ident is None else f'{ident:.2f}'}"
        if c.get("at") in ("left", "right"):
            text += f" ({c['at']})"
        parts.append(text)
    if row.get("bleed") is not None:
        parts.append(f"bleed {row['bleed']:.0f}")
    if row.get("two_figures") is not None:
        parts.append("two figures" if row["two_figures"] else "one figure")
    if row.get("unmeasured"):
        parts.append(f"not measured: {row['unmeasured']}")
    return " · ".join(parts)


@dataclass
class CharacterRow:
    """Mean per-character scores of the cells of one LoRA setting and one character axis value."""

    loras: str  # the checkpoint or loras label, "base" for no LoRA
    character: str  # the character axis value: "mira", "mira+tom"
    cells: int
    identity: float | None
    bleed: float | None
    two_figures: float | None


def by_character(layout: Any, scores: Mapping[str, Mapping[str, Any]], scorer: str) -> list[CharacterRow]:
    """Per LoRA setting (checkpoint × weight, or loras value) and character value: mean identity,
    bleed and two-figure share over the scored cells (None where nothing measured it)."""
    if "character" not in layout.axes:
        return []
    ch = layout.axes["character"]
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for pos in layout.positions:
        cell = layout.cells[pos.cell]
        if cell.is_control:
            continue
        if cell.params.is_base:
            setting = "base"
        elif cell.params.stack and "loras" in layout.axes:
            setting = layout.axes["loras"].labels[pos.index("loras")]
        else:
            setting = layout.axes["checkpoint"].labels[pos.index("checkpoint")]
            if len(layout.axes["weight"]) > 1:
                setting += f" @{float(cell.params.weight):g}"
        key = (setting, ch.labels[pos.index("character")])
        ids = seen.setdefault(key, set())
        vals = groups.setdefault(key, {"identity": [], "bleed": [], "two_figures": []})
        if pos.cell in ids:
            continue
        ids.add(pos.cell)
        s = scores.get(pos.cell)
        if not s or s.get("scorer") != scorer:
            continue
        for m in vals:
            if isinstance(s.get(m), (int, float)):
                vals[m].append(float(s[m]))

    def mean(xs: list[float]) -> float | None:
        return float(sum(xs) / len(xs)) if xs else None

    return [
        CharacterRow(k[0], k[1], len(seen[k]), mean(v["identity"]), mean(v["bleed"]), mean(v["two_figures"]))
        for k, v in groups.items()
    ]


def format_by_character(rows: Sequence[CharacterRow]) -> str:
    """The per-character table as plain text (``lorawb matrix show``, the Matrix tab's scores)."""
    if not rows:
        return ""

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    width = max(12, *(len(r.loras) for r in rows))
    lines = [f"{'LoRA':<{width}} {'character':<12} {'cells':>5} {'identity':>8} {'bleed':>6} {'two figs':>8}"]
    for r in rows:
        lines.append(
            f"{r.loras:<{width}} {r.character:<12} {r.cells:>5} {f(r.identity):>8} {f(r.bleed):>6} {f(r.two_figures):>8}"
        )
    return "\n".join(lines)
