"""The toy world: procedural characters in scenes, their captions, and kohya folders of them.

A toy-world image is a small standing figure (hair, face, outfit, arms, legs, an
optional accessory) in front of a scene (forest, spaceship, bar, beach), drawn with
PIL at 4x and shrunk to 32x32, in one of a few styles. Everything follows from a
``Spec`` and its ``seed``: the same spec draws the same pixels on every machine.

The figure always stands in the same place, so ``lorawb.toyworld.reader`` can read
the attributes back from known regions (the reader is the judge of every toy-world
model). To add an attribute value, add a row to its table below: drawing, captions,
random specs and the reader all take their values from these tables.

Coordinates are in 32-pixel units and multiplied by ``SCALE`` when drawing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lorawb.core.fsutil import atomic_write_bytes, atomic_write_text

SIZE = 32  # native pixel size of a toy-world image
SCALE = 4  # drawn at SIZE * SCALE, then shrunk
RGB = tuple[int, int, int]

# --- attribute tables (name -> colour); the caption tag is "<name> hair" / "<name> outfit" ---
HAIR: dict[str, RGB] = {
    "black": (30, 30, 36),
    "brown": (125, 72, 35),
    "blonde": (245, 214, 96),
    "red": (215, 45, 35),
    "white": (238, 238, 244),
    "blue": (45, 95, 230),
}
OUTFIT: dict[str, RGB] = {
    "red": (205, 35, 40),
    "orange": (245, 135, 25),
    "yellow": (240, 222, 50),
    "green": (45, 165, 65),
    "blue": (35, 75, 205),
    "purple": (135, 55, 180),
    "white": (238, 238, 238),
    "black": (38, 38, 44),
}
# Accessories have fixed colours so the reader can find them; "none" draws nothing and has no tag.
ACCESSORIES: dict[str, RGB | None] = {
    "none": None,
    "scarf": (225, 40, 150),
    "glasses": (20, 20, 24),
    "hat": (70, 40, 115),
}
CONTEXTS = ("forest", "spaceship", "bar", "beach")
STYLES = ("flat", "outlined", "dithered", "watercolor")
POSES = ("standing", "waving", "arms up")

SKIN: RGB = (232, 184, 150)
EYES: RGB = (25, 25, 40)
LEGS: RGB = (55, 55, 75)
SHOES: RGB = (70, 40, 25)


@dataclass(frozen=True)
class Spec:
    """One toy-world image: the attributes it shows and the seed of its scene details."""

    hair: str
    outfit: str
    accessory: str = "none"
    context: str = "forest"
    style: str = "flat"
    pose: str = "standing"
    seed: int = 0

    def __post_init__(self) -> None:
        for value, table, what in (
            (self.hair, HAIR, "hair"),
            (self.outfit, OUTFIT, "outfit"),
            (self.accessory, ACCESSORIES, "accessory"),
            (self.context, CONTEXTS, "context"),
            (self.style, STYLES, "style"),
            (self.pose, POSES, "pose"),
        ):
            if value not in table:
                raise ValueError(f"unknown {what} {value!r}; known: {', '.join(table)}")

    def tags(self) -> list[str]:
        """The caption tags of this spec, in canonical order (no trigger)."""
        out = [f"{self.hair} hair", f"{self.outfit} outfit"]
        if self.accessory != "none":
            out.append(self.accessory)
        out += [self.context, self.style, self.pose]
        return out

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# --- captions -------------------------------------------------------------------------------


def caption(
    spec: Spec,
    *,
    trigger: str = "",
    omit: Iterable[str] = (),
    shuffle: random.Random | None = None,
    drop: float = 0.0,
) -> str:
    """A tag-style caption: ``[trigger, ]red hair, blue outfit, scarf, forest, flat, standing``.

    ``omit`` leaves out attribute groups ("hair", "outfit", "accessory", "pose", ...): a character
    dataset omits what is invariant, so the look binds to the trigger. ``shuffle`` varies the order
    of the tags after the trigger (pretraining uses it so no position means "hair"); ``drop`` drops
    each remaining tag with that probability (needs ``shuffle`` as the random source).
    """
    omit = set(omit)
    parts: list[str] = []
    if "hair" not in omit:
        parts.append(f"{spec.hair} hair")
    if "outfit" not in omit:
        parts.append(f"{spec.outfit} outfit")
    if "accessory" not in omit and spec.accessory != "none":
        parts.append(spec.accessory)
    for group in ("context", "style", "pose"):
        if group not in omit:
            parts.append(getattr(spec, group))
    if shuffle is not None:
        if drop > 0:
            parts = [p for p in parts if shuffle.random() >= drop]
        shuffle.shuffle(parts)
    if trigger:
        parts.insert(0, trigger)
    return ", ".join(parts)


def parse_prompt(prompt: str) -> dict[str, str]:
    """The attributes a prompt asks for: {"hair": "red", "context": "forest", ...} (only those named)."""
    want: dict[str, str] = {}
    for raw in prompt.lower().split(","):
        tag = " ".join(raw.split())
        if tag.endswith(" hair") and tag[:-5] in HAIR:
            want["hair"] = tag[:-5]
        elif tag.endswith(" outfit") and tag[:-7] in OUTFIT:
            want["outfit"] = tag[:-7]
        elif tag in ACCESSORIES and tag != "none":
            want["accessory"] = tag
        elif tag in CONTEXTS:
            want["context"] = tag
        elif tag in STYLES:
            want["style"] = tag
        elif tag in POSES:
            want["pose"] = tag
    return want


def vocabulary() -> list[str]:
    """Every word a toy-world caption can use (for tokenizers)."""
    words: list[str] = ["hair", "outfit"]
    for table in (HAIR, OUTFIT, ACCESSORIES, CONTEXTS, STYLES, POSES):
        for name in table:
            for w in name.split():
                if w not in words and w != "none":
                    words.append(w)
    return words


# --- random specs ---------------------------------------------------------------------------


def random_spec(rng: random.Random, **fixed: str) -> Spec:
    """A random spec; keyword arguments fix attributes (e.g. ``context="bar"``)."""
    values = {
        "hair": rng.choice(list(HAIR)),
        "outfit": rng.choice(list(OUTFIT)),
        "accessory": rng.choice(list(ACCESSORIES)),
        "context": rng.choice(CONTEXTS),
        "style": rng.choice(STYLES),
        "pose": rng.choice(POSES),
    }
    values.update(fixed)
    return Spec(**values, seed=rng.randrange(2**31))


def random_specs(n: int, seed: int = 0, *, exclude: Iterable[dict[str, str]] = (), **fixed: str) -> list[Spec]:
    """``n`` random specs from ``seed``; a spec matching every key of any ``exclude`` dict is redrawn."""
    rng = random.Random(seed)
    rules = [dict(e) for e in exclude]
    out: list[Spec] = []
    while len(out) < n:
        s = random_spec(rng, **fixed)
        if any(all(getattr(s, k) == v for k, v in rule.items()) for rule in rules):
            continue
        out.append(s)
    return out


# --- drawing --------------------------------------------------------------------------------


def _shade(c: RGB, f: float) -> RGB:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


class _Canvas:
    """PIL drawing in 32-pixel units; in the outlined style every shape gets a dark rim."""

    def __init__(self, size: int, outlined: bool) -> None:
        self.s = size / SIZE
        self.img = Image.new("RGB", (size, size))
        self.d = ImageDraw.Draw(self.img)
        self.outlined = outlined

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        s = self.s
        return [x0 * s, y0 * s, x1 * s - 1, y1 * s - 1]

    def _rim(self, fill: RGB) -> dict[str, object]:
        if not self.outlined:
            return {"fill": fill}
        return {"fill": fill, "outline": _shade(fill, 0.4), "width": max(1, round(self.s))}

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB, *, rim: bool = True) -> None:
        self.d.rectangle(self._box(x0, y0, x1, y1), **(self._rim(fill) if rim else {"fill": fill}))

    def rrect(self, x0: float, y0: float, x1: float, y1: float, r: float, fill: RGB) -> None:
        self.d.rounded_rectangle(self._box(x0, y0, x1, y1), radius=r * self.s, **self._rim(fill))

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: RGB, *, rim: bool = True) -> None:
        self.d.ellipse(self._box(x0, y0, x1, y1), **(self._rim(fill) if rim else {"fill": fill}))

    def poly(self, pts: list[tuple[float, float]], fill: RGB) -> None:
        s = self.s
        self.d.polygon([(x * s, y * s) for x, y in pts], **self._rim(fill))


def _scene(c: _Canvas, context: str, rng: random.Random) -> None:
    """The background. Its colours, not its details, say which context it is."""
    if context == "forest":
        c.rect(0, 0, 32, 32, (38, 92, 48), rim=False)  # canopy
        for _ in range(rng.randint(3, 5)):
            x = rng.uniform(-2, 30)
            c.ellipse(x, rng.uniform(-3, 6), x + rng.uniform(6, 10), rng.uniform(8, 14), (58, 125, 60))
        for _ in range(rng.randint(2, 4)):
            x = rng.choice([rng.uniform(0, 8), rng.uniform(23, 30)])
            c.rect(x, 8, x + rng.uniform(1.5, 3), 26, (95, 62, 35))
        c.rect(0, 24, 32, 32, (85, 160, 70), rim=False)  # grass
        for _ in range(6):
            x, y = rng.uniform(0, 31), rng.uniform(25, 30)
            c.rect(x, y, x + 1, y + 1.5, (60, 130, 55), rim=False)
    elif context == "spaceship":
        c.rect(0, 0, 32, 32, (112, 118, 135), rim=False)  # hull
        for x in (0, 10.5, 21.5):
            c.rect(x, 0, x + 10.5, 23, (112, 118, 135))  # panels
        wx = rng.choice([2.0, 23.0])
        c.ellipse(wx, 4, wx + 7, 11, (12, 14, 38))  # window
        for _ in range(rng.randint(2, 4)):
            sx, sy = wx + rng.uniform(1.5, 5), rng.uniform(5.5, 9)
            c.rect(sx, sy, sx + 0.75, sy + 0.75, (250, 250, 255), rim=False)
        for i in range(rng.randint(2, 3)):
            c.rect(2 + i * 3.5, 17, 4 + i * 3.5, 18.5, rng.choice([(90, 230, 240), (240, 80, 80), (120, 240, 120)]))
        c.rect(0, 23, 32, 32, (48, 52, 66), rim=False)  # floor
        c.rect(0, 23, 32, 24, (150, 156, 172), rim=False)
    elif context == "bar":
        c.rect(0, 0, 32, 32, (82, 46, 30), rim=False)  # wooden wall
        for y in (5, 11, 17):
            c.rect(0, y, 32, y + 0.5, (62, 34, 22), rim=False)
        for _ in range(rng.randint(1, 2)):
            x = rng.choice([rng.uniform(1, 6), rng.uniform(24, 28)])
            c.rect(x + 1.25, 0, x + 1.75, 3, (40, 30, 20), rim=False)
            c.ellipse(x, 3, x + 3, 6, (255, 200, 80))  # lamp
        for _ in range(rng.randint(2, 4)):
            x = rng.choice([rng.uniform(1, 8), rng.uniform(22, 29)])
            c.rect(x, 12.5, x + 1.5, 16, rng.choice([(60, 150, 70), (170, 60, 40), (200, 170, 60)]))  # bottles
        c.rect(0, 16, 32, 17, (120, 75, 40), rim=False)  # shelf
        c.rect(0, 24, 32, 32, (150, 95, 50), rim=False)  # counter
        c.rect(0, 24, 32, 25, (185, 125, 70), rim=False)
    elif context == "beach":
        c.rect(0, 0, 32, 32, (140, 205, 245), rim=False)  # sky
        sx = rng.choice([rng.uniform(1, 5), rng.uniform(24, 27)])
        c.ellipse(sx, 1.5, sx + 4, 5.5, (255, 235, 120))  # sun
        for _ in range(rng.randint(1, 2)):
            x = rng.uniform(0, 26)
            c.ellipse(x, rng.uniform(5, 9), x + 6, rng.uniform(10, 12), (250, 252, 255))  # cloud
        c.rect(0, 15, 32, 22, (40, 120, 200), rim=False)  # sea
        for _ in range(3):
            x, y = rng.uniform(0, 28), rng.uniform(16, 20)
            c.rect(x, y, x + 3, y + 0.5, (150, 200, 240), rim=False)
        c.rect(0, 21, 32, 32, (238, 214, 150), rim=False)  # sand
    else:  # pragma: no cover - Spec validates contexts
        raise ValueError(context)


def _figure(c: _Canvas, spec: Spec) -> None:
    """The character. Its regions are fixed: the reader looks for hair, outfit and accessory there."""
    hair, outfit = HAIR[spec.hair], OUTFIT[spec.outfit]
    # legs and shoes
    c.rect(12.5, 22, 15.5, 29, LEGS)
    c.rect(16.5, 22, 19.5, 29, LEGS)
    c.rect(12, 28.5, 15.5, 30.5, SHOES)
    c.rect(16.5, 28.5, 20, 30.5, SHOES)
    # arms (sleeves in the outfit colour, skin hands)
    left_up = spec.pose == "arms up"
    right_up = spec.pose in ("waving", "arms up")
    if left_up:
        c.rect(8, 8, 11, 16, outfit)
        c.ellipse(8, 5.5, 11, 8.5, SKIN)
    else:
        c.rect(8, 14.5, 11, 21, outfit)
        c.ellipse(8, 20.5, 11, 23.5, SKIN)
    if right_up:
        c.rect(21, 8, 24, 16, outfit)
        c.ellipse(21, 5.5, 24, 8.5, SKIN)
    else:
        c.rect(21, 14.5, 24, 21, outfit)
        c.ellipse(21, 20.5, 24, 23.5, SKIN)
    # torso
    c.rrect(10.5, 14, 21.5, 23, 1.5, outfit)
    # hair behind the head, then the face, then the fringe
    c.rrect(10, 3, 22, 13.5, 2.5, hair)
    c.ellipse(12, 5, 20, 13.5, SKIN)
    c.rrect(11.5, 3.5, 20.5, 7.5, 1.5, hair)
    c.rect(13.5, 9, 14.75, 10.5, EYES, rim=False)
    c.rect(17.25, 9, 18.5, 10.5, EYES, rim=False)
    c.rect(15.5, 11.75, 16.5, 12.25, (180, 100, 90), rim=False)  # mouth
    acc = ACCESSORIES[spec.accessory]
    if spec.accessory == "scarf" and acc:
        c.rrect(11, 12.5, 21, 15.5, 1, acc)
        c.rect(17, 15, 20, 20, acc)
    elif spec.accessory == "glasses" and acc:
        c.rect(12.5, 8, 15.5, 11, acc, rim=False)
        c.rect(16.5, 8, 19.5, 11, acc, rim=False)
        c.rect(15.5, 8, 16.5, 9, acc, rim=False)
        c.rect(13.25, 9, 14.75, 10.25, (150, 190, 220), rim=False)
        c.rect(17.25, 9, 18.75, 10.25, (150, 190, 220), rim=False)
    elif spec.accessory == "hat" and acc:
        c.rrect(12, 0, 20, 3.5, 1, acc)
        c.rect(9.5, 2.75, 22.5, 4, acc)


def _dither(img: Image.Image, levels: int = 6) -> Image.Image:
    """Ordered (Bayer 4x4) dithering to ``levels`` values per channel: the dithered style."""
    bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], dtype=np.float32)
    a = np.asarray(img, dtype=np.float32) / 255.0
    h, w = a.shape[:2]
    thr = (np.tile(bayer, (h // 4 + 1, w // 4 + 1))[:h, :w] + 0.5) / 16.0 - 0.5
    q = np.floor(a * (levels - 1) + 0.5 + thr[..., None])
    q = np.clip(q, 0, levels - 1) / (levels - 1)
    return Image.fromarray((q * 255 + 0.5).astype(np.uint8))


def _watercolor(img: Image.Image, rng: random.Random) -> Image.Image:
    """Soft edges, washed colours and a paper grain: the watercolor style (on the 4x drawing)."""
    s = img.size[0] / SIZE
    soft = img.filter(ImageFilter.GaussianBlur(radius=0.6 * s))
    a = np.asarray(soft, dtype=np.float32)
    nrng = np.random.default_rng(rng.randrange(2**31))
    grain = nrng.normal(0, 1, (SIZE // 4, SIZE // 4)).astype(np.float32)
    grain = np.asarray(Image.fromarray(grain).resize(img.size, Image.BICUBIC), dtype=np.float32)
    a = a * 0.85 + 255 * 0.15 + grain[..., None] * 6.0
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def render(spec: Spec, size: int = SIZE, *, figure: bool = True) -> Image.Image:
    """Draw ``spec`` as an RGB image of ``size`` x ``size`` (32, or 128 for previews); ``figure=False``
    draws the scene alone (the reader calibrates "no figure here" on it)."""
    if size % SIZE:
        raise ValueError(f"size must be a multiple of {SIZE}")
    rng = random.Random(spec.seed)
    big = SIZE * SCALE
    c = _Canvas(big, outlined=spec.style == "outlined")
    _scene(c, spec.context, rng)
    if figure:
        _figure(c, spec)
    img = c.img
    if spec.style == "watercolor":
        img = _watercolor(img, rng)
    small = img.resize((SIZE, SIZE), Image.BOX)
    if spec.style == "dithered":
        small = _dither(small)
        return small if size == SIZE else small.resize((size, size), Image.NEAREST)
    if size == SIZE:
        return small
    return img if size == big else img.resize((size, size), Image.BOX)


def render_array(spec: Spec) -> np.ndarray:
    """``render(spec)`` as a (32, 32, 3) uint8 array."""
    return np.asarray(render(spec), dtype=np.uint8)


# --- datasets -------------------------------------------------------------------------------


def png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_image(path: Path, spec: Spec, text: str, size: int = SIZE) -> None:
    """Write ``path`` (.png) and its same-stem .txt caption, atomically."""
    path = Path(path)
    atomic_write_bytes(path, png_bytes(render(spec, size)))
    atomic_write_text(path.with_suffix(".txt"), text + "\n")


def write_kohya_folder(
    dest: str | Path,
    n: int,
    *,
    seed: int = 0,
    trigger: str = "",
    repeats: int = 10,
    size: int = SIZE,
    omit: Iterable[str] = (),
    name: str = "",
    **fixed: str,
) -> Path:
    """Write ``n`` random toy-world images + captions into ``dest/<repeats>_<name>/``; returns that folder.

    Handy for tests: ``write_kohya_folder(tmp_path / "dataset", 8, trigger="qvr", hair="red")``.
    """
    folder = Path(dest) / f"{repeats}_{name or trigger or 'toy'}"
    for i, spec in enumerate(random_specs(n, seed, **fixed)):
        write_image(folder / f"img_{i:03d}.png", spec, caption(spec, trigger=trigger, omit=omit), size)
    return folder


# --- two figures side by side -----------------------------------------------------------------
#
# A joint scene is 64x32: two figures, one context (and style) behind both. Each half is drawn as
# ``render`` draws one figure, so ``reader.read_figures`` reads each figure with the one-figure
# reader; the two figures' attributes are independent. The left figure's context and style are
# the scene's.

PAIR_TEMPLATE = "{a} on the left and {b} on the right, {context}"  # core.characters' default


def scene_pair(left: Spec, right: Spec) -> tuple[Spec, Spec]:
    """The two figures of a joint scene, the right one moved into the left one's context and style."""
    return left, replace(right, context=left.context, style=left.style)


def render_pair(left: Spec, right: Spec, size: int = SIZE) -> Image.Image:
    """Two figures side by side in one context: a (2 * size) x size RGB image."""
    left, right = scene_pair(left, right)
    img = Image.new("RGB", (2 * size, size))
    img.paste(render(left, size), (0, 0))
    img.paste(render(right, size), (size, 0))
    return img


def figure_text(spec: Spec, trigger: str = "", omit: Iterable[str] = ()) -> str:
    """One figure of a joint caption: its trigger, or its own tags (hair, outfit, accessory, pose) not omitted."""
    omit = set(omit) | {"context", "style"}
    parts = [trigger] if trigger else []
    body = caption(spec, omit=omit)
    if body:
        parts.append(body)
    return ", ".join(parts)


def pair_caption(
    left: Spec,
    right: Spec,
    *,
    triggers: tuple[str, str] = ("", ""),
    omit: Iterable[str] = (),
    template: str = PAIR_TEMPLATE,
) -> str:
    """The caption of a joint scene: ``template`` with ``{a}`` the left figure, ``{b}`` the right one
    (a trigger, and its tags not omitted) and ``{context}`` the scene's context and style.

    ``template="{a}, {b}, {context}"`` with triggers gives tag-style ``zkx_mira, qvr_tom, forest, flat``
    (the first-named figure stands on the left).
    """
    left, right = scene_pair(left, right)
    omit = set(omit)
    scene = [getattr(left, g) for g in ("context", "style") if g not in omit]
    text = template.replace("{a}", figure_text(left, triggers[0], omit))
    text = text.replace("{b}", figure_text(right, triggers[1], omit))
    text = text.replace("{context}", ", ".join(scene))
    return ", ".join(t.strip() for t in text.split(",") if t.strip())


def write_pair_image(path: Path, left: Spec, right: Spec, text: str, size: int = SIZE) -> None:
    """Write a joint scene ``path`` (.png, 2 * size wide) and its caption, atomically."""
    path = Path(path)
    atomic_write_bytes(path, png_bytes(render_pair(left, right, size)))
    atomic_write_text(path.with_suffix(".txt"), text + "\n")


def iter_pairs(specs: Iterable[Spec], rng: random.Random, **caption_kw: object) -> Iterator[tuple[np.ndarray, str]]:
    """(32x32x3 uint8 image, caption) for each spec: the pretraining stream."""
    for s in specs:
        yield render_array(s), caption(s, shuffle=rng, **caption_kw)  # type: ignore[arg-type]


def with_(spec: Spec, **changes: str) -> Spec:
    """A copy of ``spec`` with some attributes changed."""
    return replace(spec, **changes)
