"""Generate a realistic big lorawb project for the scale benchmarks.

    .venv/bin/python bench/make_big_project.py N DEST [--seed 1] [--workers K]

DEST (new or empty) becomes a project with:

- ``dataset/``: N images of varied sizes (512-1536 px a side, multiples of 64), as PNG
  (40 %), JPEG (45 %) and WebP (15 %), in kohya repeat folders (``10_zkx_mira``,
  ``5_zkx_mira outfits``, ``3_zkx_mira closeups``, ``1_zkx_mira extra``, one nested folder);
- a caption beside each image (a few are missing, a few are ``.caption``): the trigger and
  10-40 tags drawn (Zipf-like) from a vocabulary of about 300, including the project's
  context/style groups so the composition table has content;
- 5 % near-duplicates of other images (the same picture re-encoded at another size, format
  or with a slight colour shift: a perceptual hash finds them, their bytes differ);
- a few broken files (truncated PNG, zero bytes, text named .jpg), about 1 per 1,000;
- ``inbox/``: N/5 candidates with captions, as a synthetic-data loop leaves them.

Every image is distinct. Generation is fast because the pictures are small (a 6x6-12x12
grid of colours, a few shapes, 128x128) scaled up to their size by pixel repetition and
saved with light compression: the files have realistic dimensions and formats, the encoder
has little to do. (Their flat areas also decode faster than photographs: a cold scan of
real photos costs more per PNG/WebP; JPEGs are decoded at 1/8 scale either way.) Images are
made in a process pool over the cores this process may use. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw  # noqa: E402

TRIGGER = "zkx_mira"
FOLDERS = [  # (folder under dataset/, share of the images)
    ("10_zkx_mira", 0.45),
    ("5_zkx_mira outfits", 0.25),
    ("3_zkx_mira closeups", 0.15),
    ("1_zkx_mira extra", 0.10),
    ("1_zkx_mira extra/2_night", 0.05),
]
FORMATS = [("PNG", ".png", 0.40), ("JPEG", ".jpg", 0.45), ("WEBP", ".webp", 0.15)]
CONTEXTS = ["forest", "spaceship", "bar", "beach", "city street", "library", "kitchen", "mountain", "rooftop", "train"]
STYLES = ["watercolor", "pixel art", "photo", "sketch", "oil painting", "anime", "3d render", "ink"]
_COLOURS = ["red", "blue", "green", "black", "white", "yellow", "purple", "pink", "orange", "brown", "grey", "silver"]
_ITEMS = [
    "hair",
    "eyes",
    "scarf",
    "jacket",
    "dress",
    "shirt",
    "skirt",
    "hat",
    "boots",
    "gloves",
    "bag",
    "ribbon",
    "coat",
]
_GENERAL = [
    *("1girl", "solo", "smiling", "looking at viewer", "open mouth", "closed eyes", "blush", "standing", "sitting"),
    *("walking", "running", "from side", "from behind", "from above", "upper body", "full body", "portrait"),
    *("cowboy shot", "close-up", "outdoors", "indoors", "day", "night", "rain", "snow", "sunset", "sunlight"),
    *("shadow", "bokeh", "depth of field", "simple background", "white background", "holding cup"),
    *("holding umbrella", "holding book", "arms up", "hand on hip", "crossed arms", "waving", "peace sign"),
    *("long hair", "short hair", "ponytail", "twintails", "braid", "bangs", "ahoge", "freckles", "earrings"),
    *("necklace", "glasses", "headphones", "wristwatch", "backpack", "tree", "flower", "sky", "cloud", "water"),
    *("reflection", "window", "table", "chair", "lamp", "neon lights", "crowd", "bench", "fence", "grass"),
    *("sand", "wave", "moon", "star", "lantern", "candle", "smoke", "steam", "motion blur", "lens flare"),
    *("high contrast", "muted colors", "pastel colors", "vibrant colors", "film grain"),
]


def vocabulary() -> list[str]:
    """About 270 tags: general ones, colour x item pairs, the context and style groups."""
    pairs = [f"{c} {it}" for c in _COLOURS for it in _ITEMS]
    return list(dict.fromkeys(_GENERAL + pairs + CONTEXTS + STYLES))


def caption_for(rng: random.Random, vocab: list[str], weights: list[float]) -> str:
    k = rng.randint(10, 40)
    tags: list[str] = []
    seen: set[str] = set()
    # One context and one style most of the time (what the composition table counts).
    for group in (CONTEXTS, STYLES):
        if rng.random() < 0.9:
            t = rng.choice(group)
            tags.append(t)
            seen.add(t)
    while len(tags) < k:
        t = rng.choices(vocab, weights)[0]
        if t not in seen and t not in CONTEXTS and t not in STYLES:
            seen.add(t)
            tags.append(t)
    rng.shuffle(tags)
    return ", ".join([TRIGGER, *tags]) + "\n"


def _size(rng: random.Random) -> tuple[int, int]:
    # Mostly around 1 megapixel (the sizes SD1.5/SDXL datasets hold), every side 512-1536.
    side = rng.choice([512, 640, 768, 832, 896, 1024, 1024, 1024, 1152, 1216, 1344, 1536])
    other = rng.choice([512, 640, 768, 896, 1024, 1152, 1280, 1536])
    return (side, other) if rng.random() < 0.5 else (other, side)


def _picture(seed: int, size: tuple[int, int], shift: int = 0) -> Image.Image:
    """A small distinct picture (grid of colours + shapes), scaled to ``size``."""
    rng = random.Random(seed)
    g = rng.randint(6, 12)
    small = Image.new("RGB", (g, g))
    px = [tuple(min(255, max(0, rng.randrange(256) + shift)) for _ in range(3)) for _ in range(g * g)]
    small.putdata(px)  # type: ignore[arg-type]
    im = small.resize((128, 128), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(1, 4)):
        x0, y0 = rng.randrange(100), rng.randrange(100)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x0, y0, x0 + rng.randint(10, 60), y0 + rng.randint(10, 60)), fill=colour)  # type: ignore[arg-type]
    # Scaled up by pixel repetition: the encoders (PNG above all) have little to do with flat areas.
    return im.resize(size, Image.Resampling.NEAREST)


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        im.save(buf, "PNG", compress_level=1)
    elif fmt == "JPEG":
        im.save(buf, "JPEG", quality=85)
    else:
        im.save(buf, "WEBP", quality=70, method=0)
    return buf.getvalue()


def _pick_format(rng: random.Random) -> tuple[str, str]:
    r, acc = rng.random(), 0.0
    for fmt, ext, share in FORMATS:
        acc += share
        if r < acc:
            return fmt, ext
    return FORMATS[-1][0], FORMATS[-1][1]


def _make_one(job: tuple[str, int, int, int]) -> int:
    """Write one image: (path without extension, picture seed, image seed, near-dup shift or -1)."""
    base, pic_seed, seed, shift = job
    rng = random.Random(seed)
    size = _size(rng)
    fmt, ext = _pick_format(rng)
    im = _picture(pic_seed, size, shift=max(shift, 0))
    data = encode(im, fmt)
    Path(base + ext).write_bytes(data)
    return len(data)


def plan(n: int, seed: int) -> tuple[list[tuple[str, int, int, int]], list[str]]:
    """The image jobs for the dataset (relative bases) and their folder of each."""
    rng = random.Random(seed)
    jobs: list[tuple[str, int, int, int]] = []
    counts = [int(n * share) for _, share in FOLDERS]
    counts[0] += n - sum(counts)
    i = 0
    for (folder, _), count in zip(FOLDERS, counts, strict=True):
        for _ in range(count):
            jobs.append((f"dataset/{folder}/img_{i:05d}", seed * 1_000_003 + i, rng.randrange(1 << 30), -1))
            i += 1
    # 5 % near-duplicates: the picture of another image, made at its own size and format, colours shifted a little.
    n_dups = n * 5 // 100
    picked = rng.sample(range(n), 2 * n_dups)
    for dup, src in zip(picked[:n_dups], picked[n_dups:], strict=True):
        base, _, s, _ = jobs[dup]
        jobs[dup] = (base, jobs[src][1], s, rng.randint(1, 6))
    return jobs, [f for f, _ in FOLDERS]


def set_tag_groups(toml_path: Path) -> None:
    """The composition table's groups: `lorawb init` leaves them commented for a new project."""
    import tomlkit

    doc = tomlkit.parse(toml_path.read_text(encoding="utf-8"))
    doc.setdefault("tags", tomlkit.table()).setdefault("groups", tomlkit.table())
    doc["tags"]["groups"]["context"] = CONTEXTS
    doc["tags"]["groups"]["style"] = STYLES
    toml_path.write_text(tomlkit.dumps(doc), encoding="utf-8")


def make_big_project(n: int, dest: Path, *, seed: int = 1, workers: int | None = None) -> dict[str, int]:
    from lorawb.core.project import init_project

    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest}: exists and is not empty (choose a new folder)")
    init_project(dest, trigger=TRIGGER, name=f"big-{n}")
    set_tag_groups(dest / "lorawb.toml")
    jobs, folders = plan(n, seed)
    inbox = [(f"inbox/cand_{i:05d}", seed * 7_000_003 + i, seed * 31 + i, -1) for i in range(n // 5)]
    for f in folders:
        (dest / "dataset" / f).mkdir(parents=True, exist_ok=True)
    (dest / "inbox").mkdir(exist_ok=True)
    work = [(str(dest / b), p, s, sh) for b, p, s, sh in jobs + inbox]
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    total = 0
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            total = sum(pool.map(_make_one, work, chunksize=64))
    else:
        total = sum(map(_make_one, work))
    # Captions: the trigger + 10-40 tags; 1 % missing, 1 % as .caption (kohya's other extension).
    vocab = vocabulary()
    weights = [1.0 / (r + 1) ** 0.8 for r in range(len(vocab))]
    rng = random.Random(seed + 1)
    missing = 0
    for base, *_ in jobs + inbox:
        r = rng.random()
        text = caption_for(rng, vocab, weights)
        if r < 0.01:
            missing += 1
            continue
        ext = ".caption" if r < 0.02 else ".txt"
        (dest / (base + ext)).write_text(text, encoding="utf-8")
    # A few broken files (about 1 per 1,000, at least 3), each with a caption.
    broken = max(3, n // 1000)
    d = dest / "dataset" / folders[0]
    some_png = next(p for p in sorted(d.glob("*.png")))
    for k in range(broken):
        p = d / f"broken_{k:03d}"
        kind = k % 3
        if kind == 0:
            (p.with_suffix(".png")).write_bytes(some_png.read_bytes()[: max(64, some_png.stat().st_size // 3)])
            ext = ".png"
        elif kind == 1:
            (p.with_suffix(".jpg")).write_bytes(b"")
            ext = ".jpg"
        else:
            (p.with_suffix(".jpg")).write_text("this is not a picture\n", encoding="utf-8")
            ext = ".jpg"
        (p.with_suffix(".txt")).write_text(f"{TRIGGER}, broken {ext}\n", encoding="utf-8")
    return {
        "images": n,
        "inbox": len(inbox),
        "near_dups": n * 5 // 100,
        "broken": broken,
        "no_caption": missing,
        "bytes": total,
        "vocabulary": len(vocab),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="number of dataset images (the inbox gets N/5 more)")
    ap.add_argument("dest", type=Path, help="the project folder to create (new or empty)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, help="processes (default: every core this process may use)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    info = make_big_project(args.n, args.dest, seed=args.seed, workers=args.workers)
    print(
        f"{args.dest}: {info['images']} images ({info['bytes'] / 1e6:.0f} MB with the inbox), "
        f"{info['near_dups']} near-duplicates, {info['broken']} broken, {info['no_caption']} without caption, "
        f"inbox {info['inbox']}, vocabulary {info['vocabulary']} tags; {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
