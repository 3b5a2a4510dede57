"""The attribute reader: what a toy-world image shows (hair, outfit, accessory, context, style, pose).

It is the objective judge of toy-world models: of the pretrained base model (does it
draw what the prompt asks?), of a LoRA (does the trigger bring the character?) and of
prompt matrices. It is deterministic and uses no model: the figure always stands in the
same place, so each attribute is read from the mean colours of a few known regions and
matched to the nearest of the centroids measured on the generator's own images (one per
value and style, and per context for the accessory, whose regions show the background).
The centroids come from a fixed set of generated images, so a new row in one of
``world``'s tables is read without further work.

Images of any size are shrunk to 32x32 first (box filter), so 128-pixel previews read too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lorawb.errors import ImageError
from lorawb.toyworld import world

# Regions as (row0, row1, col0, col1) boxes in 32-pixel coordinates, end-exclusive.
Box = tuple[int, int, int, int]
REGIONS: dict[str, list[Box]] = {
    # the fringe, and the hair beside the face
    "hair": [(4, 7, 12, 20), (7, 12, 10, 12), (7, 12, 20, 22)],
    # the torso left of the scarf's tail, and its bottom
    "outfit": [(16, 20, 12, 17), (20, 22, 12, 20)],
    # background: top corners, sides beside the figure, bottom corners
    "context": [(0, 3, 0, 8), (0, 3, 24, 32), (5, 20, 0, 6), (5, 20, 26, 32), (26, 32, 0, 10), (26, 32, 22, 32)],
    # the whole image at a coarse grid: the styles differ in texture, measured separately below
    "style": [],
}
# Accessories: where each one shows, and a region of the same image showing what is there without it
# (the background beside a hat, the torso below a scarf, the cheeks below glasses).
ACCESSORY_REGIONS: dict[str, tuple[list[Box], list[Box]]] = {
    "hat": ([(0, 3, 13, 19)], [(0, 3, 0, 8), (0, 3, 24, 32)]),
    "glasses": ([(8, 9, 13, 19), (9, 11, 15, 17)], [(11, 13, 13, 15), (11, 13, 17, 19)]),
    "scarf": ([(16, 19, 18, 19)], [(16, 20, 12, 17)]),
}
# Where a raised or a lowered arm would be, left and right.
ARM_UP = [(8, 14, 9, 10), (8, 14, 22, 23)]
ARM_DOWN = [(15, 20, 9, 10), (15, 20, 22, 23)]

# Which attributes each reading's centroids are measured per (besides its own value).
KEYS: dict[str, tuple[str, ...]] = {
    "hair": ("style",),
    "outfit": ("style",),
    "context": ("style",),
    "style": ("context",),
}
READ = ("hair", "outfit", "accessory", "context", "style", "pose")


@dataclass(frozen=True)
class Reading:
    """What the reader sees in one image."""

    hair: str
    outfit: str
    accessory: str
    context: str
    style: str
    pose: str

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in READ}

    def matches(self, want: dict[str, str]) -> bool:
        """True when every attribute in ``want`` (e.g. ``parse_prompt(...)``) is what was read."""
        return all(getattr(self, k) == v for k, v in want.items())


def to_array(image: Image.Image | np.ndarray | str | Path) -> np.ndarray:
    """A (32, 32, 3) float32 array in 0..255 from a PIL image, an array or a file path."""
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                im.load()
                image = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot read image: {exc}", path=image) from exc
    if isinstance(image, Image.Image):
        img = image.convert("RGB")
        if img.size != (world.SIZE, world.SIZE):
            img = img.resize((world.SIZE, world.SIZE), Image.BOX)
        return np.asarray(img, dtype=np.float32)
    a = np.asarray(image)
    if a.dtype != np.uint8 and a.max() <= 1.0:
        a = a * 255.0
    if a.shape[:2] != (world.SIZE, world.SIZE):
        return to_array(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
    return a[..., :3].astype(np.float32)


def _means(a: np.ndarray, boxes: list[Box]) -> np.ndarray:
    return np.concatenate([a[r0:r1, c0:c1].reshape(-1, 3).mean(axis=0) for r0, r1, c0, c1 in boxes])


def _style_features(a: np.ndarray) -> np.ndarray:
    """Texture: 1-px alternation (dither), edge sharpness and dark rims (outlines), wash (watercolor)."""
    g = a.mean(axis=2)
    dx = np.abs(np.diff(g, axis=1))
    dy = np.abs(np.diff(g, axis=0))
    d2 = np.abs(g[:, 2:] - g[:, :-2])
    checker = np.abs(g[:-1, :-1] - g[1:, :-1] - g[:-1, 1:] + g[1:, 1:])
    # a rim pixel is darker than both neighbours on one axis
    rim_x = np.minimum(g[:, :-2], g[:, 2:]) - g[:, 1:-1]
    rim_y = np.minimum(g[:-2, :], g[2:, :]) - g[1:-1, :]
    sat = a.max(axis=2) - a.min(axis=2)
    return np.array(
        [
            dx.mean() + dy.mean(),
            d2.mean(),
            checker.mean(),
            (dx > 60).mean() * 100,
            (dx > 25).mean() * 100,
            (rim_x > 25).mean() * 100 + (rim_y > 25).mean() * 100,
            sat.mean(),
            g.mean(),
            g.min(),
        ],
        dtype=np.float32,
    )


def features(a: np.ndarray) -> dict[str, np.ndarray]:
    out = {name: _means(a, boxes) for name, boxes in REGIONS.items() if boxes}
    out["style"] = _style_features(a)
    return out


@functools.lru_cache(maxsize=1)
def centroids() -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per reading: (centroid matrix, value of each row), measured on a fixed set of generated images."""
    specs = _calibration_specs()
    feats = [features(world.render_array(s).astype(np.float32)) for s in specs]
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    for name, keys in KEYS.items():
        groups: dict[tuple[str, ...], list[np.ndarray]] = {}
        for s, f in zip(specs, feats, strict=True):
            key = (getattr(s, name),) + tuple(getattr(s, k) for k in keys)
            groups.setdefault(key, []).append(f[name])
        rows = sorted(groups)
        out[name] = (np.stack([np.mean(groups[k], axis=0) for k in rows]), [k[0] for k in rows])
    return out


def _calibration_specs() -> list[world.Spec]:
    """Every style x context, with hair, outfit, accessory and pose cycling so each pairing occurs."""
    specs = []
    hair, outfit, acc = list(world.HAIR), list(world.OUTFIT), list(world.ACCESSORIES)
    i = 0
    for style in world.STYLES:
        for context in world.CONTEXTS:
            for j in range(2 * len(acc) * len(world.POSES)):
                specs.append(
                    world.Spec(
                        hair=hair[(i + j) % len(hair)],
                        outfit=outfit[(i * 3 + j * 5) % len(outfit)],
                        accessory=acc[j % len(acc)],
                        context=context,
                        style=style,
                        pose=world.POSES[(j // len(acc)) % len(world.POSES)],
                        seed=1_000_000 + i * 1000 + j,
                    )
                )
            i += 1
    return specs


def _nearest(name: str, f: np.ndarray) -> str:
    mat, values = centroids()[name]
    return values[int(np.argmin(((mat - f) ** 2).sum(axis=1)))]


@functools.lru_cache(maxsize=1)
def _style_scale() -> np.ndarray:
    specs = _calibration_specs()
    f = np.stack([_style_features(world.render_array(s).astype(np.float32)) for s in specs])
    return f.std(axis=0) + 1e-3


def _nearest_style(f: np.ndarray) -> str:
    mat, values = centroids()["style"]
    sc = _style_scale()
    return values[int(np.argmin((((mat - f) / sc) ** 2).sum(axis=1)))]


def _pose(a: np.ndarray) -> str:
    torso = _means(a, REGIONS["outfit"][:1])
    up = [
        np.abs(_means(a, [b]) - torso).sum() < np.abs(_means(a, [d]) - torso).sum()
        for b, d in zip(ARM_UP, ARM_DOWN, strict=True)
    ]
    if up[0] and up[1]:
        return "arms up"
    return "waving" if up[1] else "standing"


@functools.lru_cache(maxsize=1)
def _accessory_colours() -> dict[tuple[str, str], np.ndarray]:
    """(accessory, style) -> mean colour of its region where the generator drew it."""
    acc: dict[tuple[str, str], list[np.ndarray]] = {}
    for s in _calibration_specs():
        if s.accessory in ACCESSORY_REGIONS:
            a = world.render_array(s).astype(np.float32)
            acc.setdefault((s.accessory, s.style), []).append(_means(a, ACCESSORY_REGIONS[s.accessory][0]))
    return {k: np.mean(v, axis=0) for k, v in acc.items()}


def _accessory(a: np.ndarray, style: str) -> str:
    """The accessory whose colour its region is nearer to than to what the image shows without it."""
    colours = _accessory_colours()
    best, best_margin = "none", 0.0
    for name, (where, without) in ACCESSORY_REGIONS.items():
        region = _means(a, where)
        ref = np.tile(_means(a, without).reshape(-1, 3).mean(axis=0), len(where))
        d_with = float(np.linalg.norm(region - colours[(name, style)]))
        d_without = float(np.linalg.norm(region - ref))
        margin = (d_without - d_with) / (d_without + d_with + 1e-6)
        if margin > best_margin:
            best, best_margin = name, margin
    return best


def read(image: Image.Image | np.ndarray | str | Path) -> Reading:
    """Read one toy-world image (PIL image, array or path)."""
    a = to_array(image)
    f = features(a)
    style = _nearest_style(f["style"])
    return Reading(
        hair=_nearest("hair", f["hair"]),
        outfit=_nearest("outfit", f["outfit"]),
        accessory=_accessory(a, style),
        context=_nearest("context", f["context"]),
        style=style,
        pose=_pose(a),
    )


# --- two figures side by side (world.render_pair) ------------------------------------------------

# The face (cheeks and forehead, below the fringe) of a figure: skin where a figure stands.
FACE: list[Box] = [(8, 9, 14, 18), (11, 13, 13, 15), (11, 13, 17, 19)]


def halves(image: Image.Image | np.ndarray | str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The left and right 32x32 halves of a joint scene (any size, shrunk to 64x32 first)."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            image = im.convert("RGB")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    img = image.convert("RGB")
    w, h = 2 * world.SIZE, world.SIZE
    if img.size != (w, h):
        img = img.resize((w, h), Image.BOX)
    a = np.asarray(img, dtype=np.float32)
    return a[:, : world.SIZE], a[:, world.SIZE :]


# the eyes and the face around them, the hair and the torso: where a figure differs from its scene
FIGURE: list[Box] = [*FACE, (9, 11, 13, 15), (9, 11, 17, 19), *REGIONS["hair"], *REGIONS["outfit"]]


@functools.lru_cache(maxsize=1)
def _figure_centroids() -> tuple[np.ndarray, np.ndarray]:
    """(features, 1 where a figure stands) of the calibration images, with and without their figure."""
    feats, labels = [], []
    for s in _calibration_specs()[::2]:
        for figure in (True, False):
            a = np.asarray(world.render(s, figure=figure), dtype=np.float32)
            feats.append(_means(a, FIGURE))
            labels.append(1.0 if figure else 0.0)
    return np.stack(feats), np.array(labels)


def figure_present(a: np.ndarray) -> bool:
    """Does a figure stand where the reader looks (not just the scene, nor a figure squeezed in
    between two places)? The nearest of the calibration images, drawn with and without their figure,
    by the colours of the face, eyes, hair and torso."""
    feats, labels = _figure_centroids()
    d = ((feats - _means(a, FIGURE)) ** 2).sum(axis=1)
    return bool(labels[int(np.argmin(d))] > 0.5)


@dataclass(frozen=True)
class Figures:
    """What the reader sees in a joint scene: each figure, and whether a figure stands in each place."""

    left: Reading
    right: Reading
    left_present: bool
    right_present: bool

    @property
    def two_figures(self) -> bool:
        return self.left_present and self.right_present


def read_figures(image: Image.Image | np.ndarray | str | Path) -> Figures:
    """Read the two figures of a joint scene (``world.render_pair``), left and right."""
    left, right = halves(image)
    return Figures(read(left), read(right), figure_present(left), figure_present(right))


@dataclass(frozen=True)
class Score:
    """How a set of images matches a prompt: per attribute the share read as asked, and all at once."""

    n: int
    want: dict[str, str]
    per_attribute: dict[str, float]
    all_match: float

    def as_dict(self) -> dict[str, object]:
        return {"n": self.n, "want": self.want, "per_attribute": self.per_attribute, "all_match": self.all_match}


def score(readings: Iterable[Reading], want: dict[str, str]) -> Score:
    """The share of ``readings`` showing each wanted attribute (``want`` from ``world.parse_prompt``)."""
    rs = list(readings)
    n = len(rs)
    per = {k: (sum(getattr(r, k) == v for r in rs) / n if n else 0.0) for k, v in want.items()}
    allm = sum(r.matches(want) for r in rs) / n if n else 0.0
    return Score(n=n, want=dict(want), per_attribute=per, all_match=allm)


def score_prompt(images: Iterable[Image.Image | np.ndarray | str | Path], prompt: str) -> Score:
    """Read ``images`` and score them against what ``prompt`` asks for."""
    return score((read(i) for i in images), world.parse_prompt(prompt))
