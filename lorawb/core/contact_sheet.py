"""Labelled contact sheets (Pillow only): a grid of images with a title, column labels across the
top, row labels down the left margin and a line of text under each image.

The one drawer for every sheet lorawb writes: a matrix's pages (lorawb.matrix.sheet) and a
training run's samples at each sample step (lorawb.train.sheets). Small images (a 32 px toy
model) are enlarged by a whole factor so the labels stay readable beside them; a sheet that
would pass ``max_pixels`` has its images shrunk to fit instead, while the labels keep a
readable size.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from lorawb.core.fsutil import atomic_write_bytes

MIN_CELL = 128  # small images are enlarged to at least this (whole factors, nearest neighbour)
BG = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
MISSING = (225, 225, 225)


@dataclass
class Sheet:
    image: Image.Image
    labels: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)  # text, box
    cell_size: tuple[int, int] = (0, 0)
    scale: float = 1.0  # < 1 when the size guard shrank the images


@dataclass(frozen=True)
class SheetCell:
    """One position of the grid that has an image (drawn or not yet)."""

    path: Path  # the image; a grey box saying "not drawn" while it does not exist
    text: str = ""  # a line under the image (scores, a seed)
    outline: tuple[int, int, int] | None = None  # a coloured frame (a rating)


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_w(draw: ImageDraw.ImageDraw, text: str, font: Any) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    return int(box[2] - box[0])


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    if _text_w(draw, text, font) <= width:
        return text
    while text and _text_w(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def render_grid(
    cells: dict[tuple[int, int], SheetCell],
    *,
    image_size: tuple[int, int],
    col_labels: list[str],
    row_lines: list[list[str]],
    title: list[str] | None = None,
    subtitle: str = "",
    text_line: bool = False,
    max_pixels: int = 40_000_000,
) -> Sheet:
    """The sheet of ``cells`` by (row, column); a position without a cell is an empty grey box.

    ``image_size``: the images' (width, height); ``row_lines``: each row's label, one line per
    entry; ``subtitle``: a line under the title (a page); ``text_line``: leave room for a line
    of text under each image.
    """
    w0, h0 = image_size
    factor = max(1, math.ceil(MIN_CELL / max(1, min(w0, h0))))
    cw, ch = w0 * factor, h0 * factor
    ncols, nrows = max(1, len(col_labels)), max(1, len(row_lines))
    font_size = max(12, min(28, ch // 9))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def measure(fs: int, cw: int, ch: int) -> tuple[int, int, int, int, int, Any]:
        font = _font(fs)
        line = fs + fs // 3
        lines_per_row = max((len(lines) for lines in row_lines), default=1)
        left = max((_text_w(probe, t, font) for lines in row_lines for t in lines), default=0)
        left = min(left, max(cw, 240)) + fs
        head = line * (len(title or []) + 1) + line + fs // 2
        under = line if text_line else 0
        row_h = max(ch + under, lines_per_row * line) + fs // 2
        return left, head, row_h, line, under, font

    left, head, row_h, line, under, font = measure(font_size, cw, ch)
    total = (left + ncols * (cw + font_size // 2)) * (head + nrows * row_h)
    scale = 1.0
    if total > max_pixels:
        scale = math.sqrt(max_pixels / total)
        cw, ch = max(8, int(cw * scale)), max(8, int(ch * scale))
        font_size = max(11, int(font_size * max(scale, 0.6)))
        left, head, row_h, line, under, font = measure(font_size, cw, ch)
        while (left + ncols * (cw + font_size // 2)) * (head + nrows * row_h) > max_pixels and cw > 8:
            cw, ch = max(8, int(cw * 0.9)), max(8, int(ch * 0.9))
            left, head, row_h, line, under, font = measure(font_size, cw, ch)
    gap = font_size // 2
    width = left + ncols * (cw + gap)
    height = head + nrows * row_h
    sheet = Sheet(Image.new("RGB", (width, height), BG), cell_size=(cw, ch), scale=scale)
    draw = ImageDraw.Draw(sheet.image)

    def text(xy: tuple[int, int], t: str, fill: tuple[int, int, int] = INK, f: Any = None) -> None:
        f = f or font
        draw.text(xy, t, fill=fill, font=f)
        box = draw.textbbox(xy, t, font=f)
        sheet.labels.append((t, (int(box[0]), int(box[1]), int(box[2]), int(box[3]))))

    y = gap // 2
    for i, t in enumerate(title or []):
        text((gap, y), _fit(draw, t, font, width - 2 * gap), INK if i == 0 else MUTED)
        y += line
    if subtitle:
        text((gap, y), _fit(draw, subtitle, font, width - 2 * gap))
    y = head - line - gap // 2
    for c, label in enumerate(col_labels):
        x = left + c * (cw + gap)
        text((x, y), _fit(draw, label, font, cw + gap - 2))
    for r, lines in enumerate(row_lines):
        top = head + r * row_h
        for j, t in enumerate(lines):
            text((gap // 2, top + j * line), _fit(draw, t, font, left - gap))
        for c in range(len(col_labels)):
            x = left + c * (cw + gap)
            cell = cells.get((r, c))
            if cell is not None and cell.path.is_file():
                with Image.open(cell.path) as im:
                    im = im.convert("RGB")
                    resample = Image.Resampling.NEAREST if factor > 1 and scale == 1.0 else Image.Resampling.LANCZOS
                    sheet.image.paste(im.resize((cw, ch), resample), (x, top))
            else:
                draw.rectangle((x, top, x + cw - 1, top + ch - 1), fill=MISSING)
                if cell is not None:
                    text((x + 4, top + ch // 2 - font_size // 2), _fit(draw, "not drawn", font, cw - 8), MUTED)
            if cell is not None and cell.outline is not None:
                draw.rectangle((x, top, x + cw - 1, top + ch - 1), outline=cell.outline, width=max(2, cw // 40))
            if cell is not None and cell.text and text_line:
                text((x, top + ch + 1), _fit(draw, cell.text, font, cw + gap - 2), MUTED)
    return sheet


def save_sheet(sheet: Sheet, path: Path) -> Path:
    buf = io.BytesIO()
    sheet.image.save(buf, format="PNG", optimize=False)
    atomic_write_bytes(path, buf.getvalue())
    return path
