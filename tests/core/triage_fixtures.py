"""Small generated images and projects for the triage and dedupe tests (imported by those test files)."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from lorawb.core.project import Project, init_project


def scene(seed: int, size: tuple[int, int] = (256, 256)) -> Image.Image:
    """A distinct picture per seed: a gradient background and a few filled shapes."""
    rnd = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size)
    c0 = [rnd.randrange(256) for _ in range(3)]
    c1 = [rnd.randrange(256) for _ in range(3)]
    grad = Image.linear_gradient("L").resize(size).rotate(rnd.choice([0, 90, 180, 270]))
    img = Image.composite(Image.new("RGB", size, tuple(c0)), Image.new("RGB", size, tuple(c1)), grad)
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        x1, y1 = x0 + rnd.randrange(4, max(5, w // 2)), y0 + rnd.randrange(4, max(5, h // 2))
        colour = tuple(rnd.randrange(256) for _ in range(3))
        if rnd.random() < 0.5:
            d.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            d.rectangle((x0, y0, x1, y1), fill=colour)
    return img.filter(ImageFilter.GaussianBlur(1))


def shifted(img: Image.Image, dx: int = 3, dy: int = 2) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy), fillcolor=img.getpixel((0, 0)))


def noisy(img: Image.Image, amount: int = 12, seed: int = 0) -> Image.Image:
    noise = Image.effect_noise(img.size, amount).convert("RGB")
    return Image.blend(img, noise, 0.08)


def recompressed(img: Image.Image, quality: int = 40) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def save(img: Image.Image, path: Path, caption: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption, encoding="utf-8")
    return path


def make_project(tmp_path: Path, n: int = 6, folder: str = "10_zkx_mira") -> Project:
    """A project with ``n`` distinct captioned PNGs (img_000.png ...) in dataset/<folder>/."""
    project = init_project(tmp_path / "proj", trigger="zkx_mira")
    for i in range(n):
        save(
            scene(i, (96 + 8 * i, 96)), project.dataset_dir / folder / f"img_{i:03d}.png", f"zkx_mira, pose {i}, forest"
        )
    return project
