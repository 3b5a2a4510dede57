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
        "reading": {"left": rl, "right": rr},
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
