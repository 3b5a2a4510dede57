"""A matrix's contact sheets: one labelled PNG per page of its grid (lorawb.core.contact_sheet draws).

The title names the matrix, its run, the prompt template, the page and the constants; the
column values run across the top, the row values down the left margin (one line per
axis); under each cell its scores, and a coloured frame for its rating.
"""

from __future__ import annotations

from lorawb.core.contact_sheet import Sheet, SheetCell, render_grid, save_sheet
from lorawb.matrix.cells import Grid
from lorawb.matrix.folder import MatrixFolder

RATING_COLOURS = {"good": (30, 150, 60), "bad": (200, 40, 40)}

__all__ = ["Sheet", "render_sheet", "save_sheet"]


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
    size = (first.params.width, first.params.height) if first else (64, 64)
    page_key = grid.pages[page] if grid.pages else ()
    cells: dict[tuple[int, int], SheetCell] = {}
    for r, key in enumerate(grid.rows):
        for c, ckey in enumerate(grid.cols):
            cid = grid.at.get((page_key, key, ckey))
            if cid:
                cells[(r, c)] = SheetCell(
                    folder.cell_png(cid),
                    text=(cell_text or {}).get(cid, ""),
                    outline=RATING_COLOURS.get((ratings or {}).get(cid, "")),
                )
    page_label = grid.label("pages", grid.pages[page]) if grid.pages and grid.view.pages else ""
    return render_grid(
        cells,
        image_size=size,
        col_labels=[grid.label("cols", key) or "-" for key in grid.cols],
        row_lines=[grid.row_lines(key, short=False) for key in grid.rows],
        title=title,
        subtitle=f"page {page + 1}/{len(grid.pages)}: {page_label}" if page_label else "",
        text_line=bool(cell_text),
        max_pixels=max_pixels,
    )
