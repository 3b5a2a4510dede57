"""MatrixGrid: one page of a prompt matrix as half-block thumbnails, row labels on the left.

It is an ImageGrid (the same thumbnail cache, loader thread and half-block rendering) with
a fixed number of columns (the column axis' values on screen) and a gutter that labels each
row with its axis values, one per line. Cells not drawn yet are placeholders; the line under
each cell carries its rating mark and scores. The column labels are a ``MatrixHeader`` above
it, drawn to the same geometry. When the column axis has more values than fit, the tab shows
a window of them and the grid asks to shift it (``ShiftColumns``) at its edges.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Static

from lorawb.tui.widgets.image_grid import DENSITIES, ImageGrid
from lorawb.words import fit_words

MIN_GUTTER, MAX_GUTTER = 8, 24


class MatrixGrid(ImageGrid, inherit_bindings=False):
    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "Left", show=False),
        Binding("right,l", "move(1, 0)", "Right", show=False),
        Binding("up,k", "move(0, -1)", "Up", show=False),
        Binding("down,j", "move(0, 1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("plus,equals_sign", "density(1)", "Bigger", show=False),
        Binding("minus", "density(-1)", "Smaller", show=False),
    ]
    DEFAULT_CSS = """
    MatrixGrid > .matrix-grid--gutter { color: $text-muted; }
    """
    COMPONENT_CLASSES = ImageGrid.COMPONENT_CLASSES | {"matrix-grid--gutter"}

    class ShiftColumns(Message):
        """The cursor pushed past the first/last column on screen: show the next/previous ones."""

        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(empty_text="no cells on this page", id=id)
        self.fixed_columns = 1
        self.row_labels: list[list[str]] = []
        self.label_width = MIN_GUTTER
        self.more_left = False
        self.more_right = False
        self.user_sized = False  # +/- pressed: the tab stops fitting the cell size to the screen

    @property
    def columns(self) -> int:
        return max(1, self.fixed_columns)

    def fit_label(self, label: str, width: int) -> str:
        """Scores under a cell, by whole words (``id.67 pf.80``): never a number cut in half."""
        return fit_words(label, width)

    def set_layout(self, columns: int, row_labels: list[list[str]], gutter: int) -> None:
        self.fixed_columns = columns
        self.row_labels = row_labels
        self.label_width = gutter

    @staticmethod
    def gutter_for(row_labels: list[list[str]]) -> int:
        longest = max((len(t) for lines in row_labels for t in lines), default=0)
        return max(MIN_GUTTER, min(MAX_GUTTER, longest + 1))

    @staticmethod
    def fit_density(width: int, gutter: int, columns: int) -> int | None:
        """The largest density at which ``columns`` cells fit beside the gutter (None: none does)."""
        for d in range(len(DENSITIES) - 1, -1, -1):
            if gutter + columns * (DENSITIES[d][0] + 2) <= width:
                return d
        return None

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        strip = super().render_line(y)
        if not self.items:
            return strip
        _, ch = self.cell_size
        row, sub = divmod(y + int(self.scroll_offset.y), ch)
        lines = self.row_labels[row] if row < len(self.row_labels) else []
        text = lines[sub] if sub < len(lines) else ""
        style = self.get_component_rich_style("matrix-grid--gutter")
        gutter = Strip([Segment(text[: self.label_width - 1].ljust(self.label_width), style)], self.label_width)
        return Strip.join([gutter, strip.crop(0, max(0, width - self.label_width))]).adjust_cell_length(
            width, self.rich_style
        )

    def on_click(self, event: events.Click) -> None:
        cw, ch = self.cell_size
        x = event.x - self.label_width
        if x >= 0:
            col, row = x // cw, (event.y + int(self.scroll_offset.y)) // ch
            index = row * self.columns + col
            if col < self.columns and 0 <= index < len(self.items):
                self.cursor = index
        self.focus()

    def action_density(self, step: int) -> None:
        self.user_sized = True
        super().action_density(step)

    def action_move(self, dx: int, dy: int) -> None:
        col = self.cursor % self.columns if self.items else 0
        if dx < 0 and col == 0 and self.more_left:
            self.post_message(self.ShiftColumns(-1))
            return
        if dx > 0 and col == self.columns - 1 and self.more_right:
            self.post_message(self.ShiftColumns(1))
            return
        if dx and not dy:  # left/right stay in the row: a row of a matrix is one comparison
            if 0 <= col + dx < self.columns and self.cursor + dx < len(self.items):
                self.cursor = self.cursor + dx
            return
        super().action_move(dx, dy)


class MatrixHeader(Static):
    """The column labels above a MatrixGrid, aligned to its cells."""

    def show(
        self, axis: str, labels: list[str], gutter: int, cell_width: int, more_left: bool, more_right: bool
    ) -> None:
        head = ("◀ " if more_left else "") + axis
        t = Text(head[: gutter - 1].ljust(gutter), style="dim")
        for label in labels:
            t.append(label[: cell_width - 1].center(cell_width), style="bold")
        if more_right:
            t.append(" ▶", style="dim")
        self.update(t)
