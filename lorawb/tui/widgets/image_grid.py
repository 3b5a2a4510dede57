"""ImageGrid: a scrolling thumbnail grid that stays instant on 10,000 images.

- Line API (a ScrollView): no widget per cell. Only the rows on screen are
  rendered, and only their thumbnails (plus one screen ahead) are requested.
- Thumbnails are made in a thread worker: the small PNG comes from the disk
  cache (lorawb.core.thumbs, made from the original on a miss), is fitted to the
  cell and rendered to half-block strips with textual-image's renderable, all off
  the event loop. The widget only receives finished strips (kept in an LRU), so a
  keystroke never waits on decoding.
- As many columns as fit; ``+``/``-`` change the density. Cells are half-blocks
  even where the terminal has Kitty/Sixel graphics (those re-render per refresh
  and are too heavy for dozens of cells); with ``app.image_mode == "unicode"``
  they are greyscale shade characters.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import Worker, WorkerState, get_current_worker
from textual_image.renderable import HalfcellImage, UnicodeImage

from lorawb.core.thumbs import ThumbCache
from lorawb.errors import LorawbError
from lorawb.tui.workbench import workbench
from lorawb.words import fit_name

GRID_BOX = (96, 96)  # thumbnail size asked of the disk cache; cells are at most 32x32 pixels
DENSITIES = ((8, 4), (12, 6), (16, 8), (24, 12), (32, 16))  # (image columns, image rows) per cell
STRIP_CACHE = 4000  # cells kept in memory (a 10,000-image scroll reuses what it has seen)
STATE_MARKS = {"keep": "✓", "reject": "✗", "flag": "⚑", "unreviewed": "·", "promoted": "⇪"}


@dataclass(frozen=True)
class GridItem:
    """One cell: ``key`` identifies it (the project-relative path), ``stamp`` changes when the file does.

    An empty ``path`` is a placeholder (an image not made yet): drawn as a dot, never loaded.
    """

    key: str
    path: Path | str | None
    label: str
    state: str = "unreviewed"
    stamp: int = 0


def render_thumbnail(
    pil: PILImage.Image, cols: int, rows: int, mode: str, background: tuple[int, int, int]
) -> list[Strip]:
    """Fit an image into cols x rows cells (letterboxed) and render it to strips. Pure: call it from a thread."""
    px_h = rows * 2 if mode != "unicode" else rows
    canvas = PILImage.new("RGB", (cols, px_h), background)
    im = pil.convert("RGB")
    # Half-block pixels are about square; unicode cells are about twice as tall as wide.
    aspect = im.width / max(1, im.height) * (1.0 if mode != "unicode" else 0.5)
    w = min(cols, max(1, round(px_h * aspect)))
    h = min(px_h, max(1, round(w / aspect)))
    im = im.resize((w, h), PILImage.Resampling.BILINEAR)
    canvas.paste(im, ((cols - w) // 2, (px_h - h) // 2))
    renderable = (UnicodeImage if mode == "unicode" else HalfcellImage)(canvas, width=cols, height=rows)
    console = Console(width=cols, height=rows, file=io.StringIO(), color_system="truecolor", legacy_windows=False)
    lines = console.render_lines(renderable, console.options.update_dimensions(cols, rows), pad=True)
    return [Strip(line, cols) for line in lines[:rows]]


def message_strips(text: str, cols: int, rows: int, style: Style | None = None) -> list[Strip]:
    blank = Strip([Segment(" " * cols)], cols)
    out = [blank] * rows
    out[rows // 2] = Strip([Segment(text[:cols].center(cols), style)], cols)
    return out


def _worker_count() -> int:
    env = os.environ.get("LORAWB_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, (os.cpu_count() or 2)))


class ImageGrid(ScrollView, can_focus=True):
    """A grid of thumbnails with a cursor. Posts ``Highlighted`` when the cursor moves."""

    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "Left", show=False),
        Binding("right,l", "move(1, 0)", "Right", show=False),
        Binding("up,k", "move(0, -1)", "Up", show=False),
        Binding("down,j", "move(0, 1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("plus,equals_sign", "density(1)", "Bigger", show=False),
        Binding("minus", "density(-1)", "Smaller", show=False),
    ]
    COMPONENT_CLASSES = {
        "image-grid--label",
        "image-grid--cursor",
        "image-grid--keep",
        "image-grid--reject",
        "image-grid--flag",
        "image-grid--unreviewed",
        "image-grid--message",
    }
    DEFAULT_CSS = """
    ImageGrid { overflow-x: hidden; overflow-y: auto; scrollbar-size-vertical: 1; }
    ImageGrid > .image-grid--label { color: $text; }
    ImageGrid > .image-grid--cursor { background: $accent; color: $text; text-style: bold; }
    ImageGrid > .image-grid--keep { color: $kept; }
    ImageGrid > .image-grid--reject { color: $rejected; }
    ImageGrid > .image-grid--flag { color: $flagged; }
    ImageGrid > .image-grid--unreviewed { color: $unreviewed; }
    ImageGrid > .image-grid--message { color: $text-muted; }
    """

    cursor: reactive[int] = reactive(0, init=False)
    density: reactive[int] = reactive(1, init=False)

    class Highlighted(Message):
        """The cursor moved to ``item`` (None when the grid is empty)."""

        def __init__(self, grid: ImageGrid, index: int, item: GridItem | None) -> None:
            super().__init__()
            self.grid = grid
            self.index = index
            self.item = item

        @property
        def control(self) -> ImageGrid:
            return self.grid

    class _Ready(Message):
        """Strips finished by the loader thread."""

        def __init__(self, batch: list[tuple[tuple, list[Strip]]]) -> None:
            super().__init__()
            self.batch = batch

    def fit_label(self, label: str, width: int) -> str:
        """A label in ``width`` characters: a file name keeps its end (what tells promoted cells apart)."""
        return fit_name(label, width)

    def __init__(self, *, empty_text: str = "no images", id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.items: list[GridItem] = []
        self.empty_text = empty_text
        self._strips: OrderedDict[tuple, list[Strip]] = OrderedDict()
        self._inflight: set[tuple] = set()  # keys the running loader was asked for
        self._loader: Worker | None = None
        self._thumbs: ThumbCache | None = None
        self._stats_lock = threading.Lock()
        self._bg: tuple[int, int, int] | None = None
        self.painted = threading.Event()  # set when every visible cell has its thumbnail (benches, tests)
        self.stats = {"thumbs_made": 0, "thumbs_from_disk": 0}

    # --- geometry ---------------------------------------------------------
    @property
    def cell_image(self) -> tuple[int, int]:
        return DENSITIES[self.density]

    @property
    def cell_size(self) -> tuple[int, int]:
        cols, rows = self.cell_image
        return cols + 2, rows + 1  # a margin column each side; a label row below

    @property
    def columns(self) -> int:
        return max(1, self.scrollable_content_region.width // self.cell_size[0])

    @property
    def rows(self) -> int:
        return (len(self.items) + self.columns - 1) // self.columns

    def _update_virtual_size(self) -> None:
        width = self.scrollable_content_region.width
        self.virtual_size = Size(width, self.rows * self.cell_size[1])

    def visible_range(self, ahead: int = 0) -> range:
        """Indexes of the cells on screen (plus ``ahead`` screens below)."""
        _, ch = self.cell_size
        top = int(self.scroll_offset.y) // ch
        height = self.scrollable_content_region.height or self.size.height
        bottom = (int(self.scroll_offset.y) + height * (1 + ahead) + ch - 1) // ch
        return range(top * self.columns, min(len(self.items), bottom * self.columns))

    # --- public API -------------------------------------------------------
    @property
    def current(self) -> GridItem | None:
        return self.items[self.cursor] if 0 <= self.cursor < len(self.items) else None

    def set_items(
        self, items: Sequence[GridItem], cursor_key: str | None = None, cursor_index: int | None = None
    ) -> None:
        """Replace the items; put the cursor on ``cursor_key`` if present, else near ``cursor_index``."""
        self.items = list(items)
        index = 0
        if cursor_key is not None:
            index = next((i for i, it in enumerate(self.items) if it.key == cursor_key), -1)
            if index < 0:
                index = cursor_index if cursor_index is not None else 0
        elif cursor_index is not None:
            index = cursor_index
        index = max(0, min(index, len(self.items) - 1))
        self._update_virtual_size()
        self.set_reactive(ImageGrid.cursor, index)
        self._scroll_to_cursor()
        self.refresh()
        self._request_visible()
        # Always announce: the item under the cursor may differ even at the same index.
        self.post_message(self.Highlighted(self, self.cursor, self.current))

    def index_of(self, key: str) -> int:
        return next((i for i, it in enumerate(self.items) if it.key == key), -1)

    def clear_cache(self) -> None:
        """Forget rendered thumbnails (e.g. the image mode changed)."""
        self._strips.clear()
        self.refresh()
        self._request_visible()

    # --- cursor -----------------------------------------------------------
    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.items) - 1)) if self.items else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self._refresh_cell(old)
        self._refresh_cell(new)
        self.post_message(self.Highlighted(self, new, self.current))

    def _refresh_cell(self, index: int) -> None:
        if not self.items:
            return
        cw, ch = self.cell_size
        row, col = divmod(index, self.columns)
        self.refresh(Region(col * cw, row * ch - int(self.scroll_offset.y), cw, ch))

    def _scroll_to_cursor(self) -> None:
        if not self.items:
            return
        _, ch = self.cell_size
        row = self.cursor // self.columns
        self.scroll_to_region(Region(0, row * ch, 1, ch), animate=False, immediate=True)

    def action_move(self, dx: int, dy: int) -> None:
        if not self.items:
            return
        if dx:
            self.cursor = self.cursor + dx
        if dy:
            target = self.cursor + dy * self.columns
            if 0 <= target < len(self.items):
                self.cursor = target
            elif dy > 0 and self.cursor // self.columns < self.rows - 1:
                self.cursor = len(self.items) - 1  # last row is short: land on its last cell

    def action_page(self, direction: int) -> None:
        _, ch = self.cell_size
        rows = max(1, (self.scrollable_content_region.height or ch) // ch)
        self.cursor = self.cursor + direction * rows * self.columns

    def action_jump(self, index: int) -> None:
        self.cursor = index if index >= 0 else len(self.items) - 1

    def action_density(self, step: int) -> None:
        self.density = max(0, min(len(DENSITIES) - 1, self.density + step))

    def watch_density(self) -> None:
        self._update_virtual_size()
        self._scroll_to_cursor()
        self.refresh()
        self._request_visible()

    def on_resize(self, _event: events.Resize) -> None:
        self._update_virtual_size()
        self._scroll_to_cursor()
        self._request_visible()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self._request_visible()

    def on_click(self, event: events.Click) -> None:
        cw, ch = self.cell_size
        col, row = event.x // cw, (event.y + int(self.scroll_offset.y)) // ch
        if col < self.columns:
            index = row * self.columns + col
            if 0 <= index < len(self.items):
                self.cursor = index
        self.focus()

    def on_mount(self) -> None:
        self.watch(self.app, "image_mode", lambda _m: self.clear_cache(), init=False)

    # --- thumbnails -------------------------------------------------------
    def _mode(self) -> str:
        return "unicode" if workbench(self).image_mode == "unicode" else "halfcell"

    def _key(self, item: GridItem) -> tuple:
        return (item.key, item.stamp, *self.cell_image, self._mode(), self._background())

    def _background(self) -> tuple[int, int, int]:
        # Looked up per cell per line: resolving the colour through the DOM each time is too slow.
        if self._bg is None:
            bg = self.background_colors[1]
            self._bg = (bg.r, bg.g, bg.b)
        return self._bg

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._bg = None  # the theme may have changed: letterbox colour and cell keys follow

    def _stat(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    def _request_visible(self) -> None:
        """Ask the loader for the visible cells' thumbnails (then one screen ahead) that are not in memory."""
        if not self.is_mounted or not self.items:
            self.painted.set()
            return
        visible = self.visible_range()
        ahead = [i for i in self.visible_range(ahead=1) if i not in visible]
        missing: list[tuple[tuple, Path | str]] = []
        missing_visible = False
        for i in (*visible, *ahead):
            item = self.items[i]
            if not item.path:
                continue
            key = self._key(item)
            if key in self._strips:
                self._strips.move_to_end(key)
            else:
                missing_visible |= i in visible
                missing.append((key, item.path))
        if missing_visible:
            self.painted.clear()
        else:
            self.painted.set()
        if not missing:
            return
        keys = {k for k, _ in missing}
        if self._loader is not None and keys <= self._inflight:
            return  # the running loader is already on it
        self._inflight = keys
        cols, rows = self.cell_image
        # exclusive: a new request cancels the old loader, which stops after its current image.
        self._loader = self._load(missing, cols, rows, self._mode(), self._background())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self._loader and event.state in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            self._loader = None
            self._inflight = set()
            self._request_visible()  # cells that scrolled in meanwhile

    @work(thread=True, exclusive=True, group="image-grid")
    def _load(
        self, jobs: list[tuple[tuple, Path | str]], cols: int, rows: int, mode: str, background: tuple[int, int, int]
    ) -> None:
        worker = get_current_worker()
        if self._thumbs is None:
            self._thumbs = ThumbCache(workbench(self).project.state_dir)
        thumbs = self._thumbs
        err_style = Style(color="red")

        def make(job: tuple[tuple, Path | str]) -> tuple[tuple, list[Strip]]:
            key, path = job[0], Path(job[1])
            if worker.is_cancelled:
                return key, []
            try:
                cached = thumbs.cached(path, GRID_BOX)
                if cached is None:
                    cached = thumbs.get(path, GRID_BOX)
                    self._stat("thumbs_made")
                else:
                    self._stat("thumbs_from_disk")
                with PILImage.open(cached) as im:
                    im.load()
                    return key, render_thumbnail(im, cols, rows, mode, background)
            except LorawbError:
                return key, message_strips("unreadable", cols, rows, err_style)
            except Exception:  # a thumbnail must never take the grid down
                return key, message_strips("error", cols, rows, err_style)

        batch: list[tuple[tuple, list[Strip]]] = []
        last = time.monotonic()
        with ThreadPoolExecutor(max_workers=_worker_count()) as pool:
            for key, strips in pool.map(make, jobs):
                if worker.is_cancelled:
                    break
                batch.append((key, strips))
                # Hand over in small batches: the first cells appear at once, later ones without a refresh each.
                if time.monotonic() - last > 0.05 or len(batch) >= 24:
                    self.post_message(self._Ready(batch))
                    batch, last = [], time.monotonic()
        if batch:
            self.post_message(self._Ready(batch))

    def on_image_grid__ready(self, message: _Ready) -> None:
        for key, strips in message.batch:
            if strips:
                self._strips[key] = strips
        while len(self._strips) > STRIP_CACHE:
            self._strips.popitem(last=False)
        self.refresh()
        if all(self._key(self.items[i]) in self._strips for i in self.visible_range() if self.items[i].path):
            self.painted.set()

    # --- rendering --------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if not self.items:
            if y == 1:
                style = self.get_component_rich_style("image-grid--message")
                return Strip([Segment(self.empty_text.center(width)[:width], style)], width)
            return Strip.blank(width, self.rich_style)
        cw, ch = self.cell_size
        cols, rows = self.cell_image
        line = y + int(self.scroll_offset.y)
        row, sub = divmod(line, ch)
        segments: list[Segment] = []
        base = self.rich_style
        for col in range(self.columns):
            index = row * self.columns + col
            if index >= len(self.items):
                break
            item = self.items[index]
            selected = index == self.cursor
            if sub < rows:
                # The cursor cell is framed by half-block bars in the accent colour.
                edge = Style(color=self.get_component_rich_style("image-grid--cursor").bgcolor) if selected else base
                strips = self._strips.get(self._key(item))
                segments.append(Segment("▐" if selected else " ", edge))
                if strips is not None:
                    segments.extend(strips[sub])
                else:
                    dots = ("…" if item.path else "·") if sub == rows // 2 else ""
                    segments.append(Segment(dots.center(cols), self.get_component_rich_style("image-grid--message")))
                segments.append(Segment("▌" if selected else " ", edge))
            else:
                mark = STATE_MARKS.get(item.state, "·")
                state_style = self.get_component_rich_style(f"image-grid--{item.state}", default=base)
                text = self.fit_label(item.label, cw - 2).ljust(cw - 2)
                if selected:
                    cur = self.get_component_rich_style("image-grid--cursor")
                    segments += [Segment(mark, cur + Style(color=state_style.color)), Segment(" " + text, cur)]
                else:
                    label = self.get_component_rich_style("image-grid--label")
                    segments += [Segment(mark, state_style), Segment(" " + text, label)]
        return Strip(segments).adjust_cell_length(width, base)
