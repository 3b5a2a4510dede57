"""CaptionList: the Captions tab's file list, drawn line by line so 10,000 rows cost nothing to show.

A DataTable builds a row object per image (about 0.3 s for 10,000, on the UI thread,
at every filter change); this list keeps two plain lists (file names and one-character
marks) and renders only the visible lines.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from lorawb.words import fit_name


class CaptionList(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    CaptionList { background: $surface; overflow-x: hidden; }
    CaptionList > .caption-list--cursor { background: $block-cursor-blurred-background; }
    CaptionList:focus > .caption-list--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold;
    }
    CaptionList > .caption-list--mark { color: $warning; text-style: bold; }
    """
    COMPONENT_CLASSES = {"caption-list--cursor", "caption-list--mark"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
        Binding("enter", "select", "Edit", show=False),
    ]

    cursor: reactive[int] = reactive(0, repaint=False)

    class Highlighted(Message):
        """The cursor moved to ``rel`` (row ``index``)."""

        def __init__(self, caption_list: CaptionList, rel: str, index: int) -> None:
            super().__init__()
            self.caption_list = caption_list
            self.rel = rel
            self.index = index

    class Selected(Highlighted):
        """Enter (or a second click) on ``rel``."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rels: list[str] = []
        self.names: list[str] = []
        self.marks: list[str] = []

    # --- data -----------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self.rels)

    def set_rows(self, rels: list[str], marks: list[str], cursor: int = 0) -> None:
        """Replace the rows (no Highlighted message: the caller knows what it opened)."""
        self.rels = rels
        self.names = [r.rsplit("/", 1)[-1] for r in rels]
        self.marks = marks
        self.virtual_size = Size(self.size.width, len(rels))
        self.set_reactive(CaptionList.cursor, max(0, min(cursor, len(rels) - 1)))
        self._scroll_to_cursor()
        self.refresh()

    def set_mark(self, index: int, mark: str) -> None:
        if 0 <= index < len(self.marks):
            self.marks[index] = mark
            self.refresh_line(index)

    def refresh_line(self, index: int) -> None:
        y = index - self.scroll_offset.y
        if 0 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def move_to(self, index: int) -> None:
        if self.rels:
            self.cursor = max(0, min(index, len(self.rels) - 1))

    # --- cursor -----------------------------------------------------------------------------
    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh_line(old)
        self.refresh_line(new)
        self._scroll_to_cursor()
        if 0 <= new < len(self.rels):
            self.post_message(self.Highlighted(self, self.rels[new], new))

    def _scroll_to_cursor(self) -> None:
        if self.rels:
            self.scroll_to_region(Region(0, self.cursor, 1, 1), animate=False, force=True, immediate=True)

    def action_move(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.size.height - 1))

    def action_first(self) -> None:
        self.move_to(0)

    def action_last(self) -> None:
        self.move_to(len(self.rels) - 1)

    def action_select(self) -> None:
        if self.rels:
            self.post_message(self.Selected(self, self.rels[self.cursor], self.cursor))

    def on_click(self, event: events.Click) -> None:
        index = event.y + self.scroll_offset.y
        if 0 <= index < len(self.rels):
            if index == self.cursor and event.chain > 1:
                self.action_select()
            self.move_to(index)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.rels))

    # --- drawing ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        width = self.size.width
        base = self.rich_style
        if index >= len(self.rels):
            return Strip.blank(width, base)
        style: Style = base
        if index == self.cursor:
            style = base + self.get_component_rich_style("caption-list--cursor")
        mark = self.marks[index] if index < len(self.marks) else " "
        mark_style = style + self.get_component_rich_style("caption-list--mark", partial=True)
        name = fit_name(self.names[index], max(4, width - 3))  # its start and end kept: long names stay apart
        segments = [Segment(mark, mark_style), Segment(" " + name, style)]
        return Strip(segments).adjust_cell_length(width, style)
