"""Contact sheets: one labelled PNG per page of a matrix grid (Pillow only).

The title names the matrix, its run, the prompt template, the page and the constants; the
column values run across the top, the row values down the left margin (one line per
axis); under each cell its scores and rating. Small cells (a 32 px toy model) are enlarged
by a whole factor so the labels stay readable beside them; a sheet that would pass
``max_pixels`` has its cells shrunk to fit instead, while the labels keep a readable size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from lorawb.core.fsutil import atomic_write_bytes
from lorawb.matrix.cells import Grid
from lorawb.matrix.folder import MatrixFolder

MIN_CELL = 128  # small cells are enlarged to at least this (whole factors, nearest neighbour)
BG = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
MISSING = (225, 225, 225)
RATING_COLOURS = {"good": (30, 150, 60), "bad": (200, 40, 40)}


@dataclass
class Sheet:
    image: Image.Image
    labels: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)  # text, box
    cell_size: tuple[int, int] = (0, 0)
    scale: float = 1.0  # < 1 when the size guard shrank the cells


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


def render_sheet(
    folder: MatrixFolder,
    grid: Grid,
    page: int,
    *,
    title: list[str] | None = None,
    cell_text: dict[str, str] | None = None,
    ratings: dict[str, str] | None = None,
    max_pixels: int = 40_000_000,
) -> Sheet:
    """The sheet of ``page`` of ``grid``; ``cell_text``: a line under each cell (scores)."""
    layout = grid.layout
    first = next(iter(layout.cells.values()), None)
    w0, h0 = (first.params.width, first.params.height) if first else (64, 64)
    factor = max(1, math.ceil(MIN_CELL / max(1, min(w0, h0))))
    cw, ch = w0 * factor, h0 * factor
    ncols, nrows = max(1, len(grid.cols)), max(1, len(grid.rows))
    font_size = max(12, min(28, ch // 9))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def measure(fs: int, cw: int, ch: int) -> tuple[int, int, int, int, int, Any]:
        font = _font(fs)
        line = fs + fs // 3
        row_lines = max((len(grid.row_lines(k, short=False)) for k in grid.rows), default=1)
        left = max((_text_w(probe, t, font) for k in grid.rows for t in grid.row_lines(k, short=False)), default=0)
        left = min(left, max(cw, 240)) + fs
        head = line * (len(title or []) + 1) + line + fs // 2
        under = line if cell_text else 0
        row_h = max(ch + under, row_lines * line) + fs // 2
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
    page_label = grid.label("pages", grid.pages[page]) if grid.pages and grid.view.pages else ""
    if page_label:
        text((gap, y), _fit(draw, f"page {page + 1}/{len(grid.pages)}: {page_label}", font, width - 2 * gap))
    y = head - line - gap // 2
    for c, key in enumerate(grid.cols):
        x = left + c * (cw + gap)
        text((x, y), _fit(draw, grid.label("cols", key) or "-", font, cw + gap - 2))
    for r, key in enumerate(grid.rows):
        top = head + r * row_h
        for j, t in enumerate(grid.row_lines(key, short=False)):
            text((gap // 2, top + j * line), _fit(draw, t, font, left - gap))
        for c, ckey in enumerate(grid.cols):
            x = left + c * (cw + gap)
            cid = grid.at.get((grid.pages[page] if grid.pages else (), key, ckey))
            png = folder.cell_png(cid) if cid else None
            if png is not None and png.is_file():
                with Image.open(png) as im:
                    im = im.convert("RGB")
                    resample = Image.Resampling.NEAREST if factor > 1 and scale == 1.0 else Image.Resampling.LANCZOS
                    sheet.image.paste(im.resize((cw, ch), resample), (x, top))
            else:
                draw.rectangle((x, top, x + cw - 1, top + ch - 1), fill=MISSING)
                if cid:
                    text((x + 4, top + ch // 2 - font_size // 2), _fit(draw, "not drawn", font, cw - 8), MUTED)
            rating = (ratings or {}).get(cid or "")
            if rating in RATING_COLOURS:
                draw.rectangle(
                    (x, top, x + cw - 1, top + ch - 1), outline=RATING_COLOURS[rating], width=max(2, cw // 40)
                )
            if cell_text and cid and cell_text.get(cid):
                text((x, top + ch + 1), _fit(draw, cell_text[cid], font, cw + gap - 2), MUTED)
    return sheet


def save_sheet(sheet: Sheet, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    sheet.image.save(buf, format="PNG", optimize=False)
    atomic_write_bytes(path, buf.getvalue())
    return path
