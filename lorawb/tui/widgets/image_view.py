"""ImageView: one image, decoded off the event loop, drawn with textual-image.

``show(path)`` returns at once: a thread worker makes (or finds) the cached
thumbnail and decodes it, then hands the PIL image back to the widget. Shows in
quick succession (a held arrow key) draw only the image the cursor rests on. The
rendering class follows ``app.image_mode`` (Kitty/Sixel/half-blocks/unicode).
"""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image as PILImage
from textual import work
from textual.app import ComposeResult
from textual.containers import Container
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import get_current_worker
from textual_image.widget import HalfcellImage, SixelImage, TGPImage, UnicodeImage
from textual_image.widget import Image as AutoImage

from lorawb.core.thumbs import ThumbCache
from lorawb.errors import LorawbError
from lorawb.tui.workbench import workbench

RENDERERS = {
    "auto": AutoImage,
    "halfcell": HalfcellImage,
    "unicode": UnicodeImage,
    "sixel": SixelImage,
    "tgp": TGPImage,
}
IMAGE_MODES = tuple(RENDERERS)
RAPID_S = 0.1  # a show this soon after the last one is a held key: draw when the keys pause for...
SETTLE_S = 0.08  # ...this long (drawing a preview costs ~30 ms of the event loop; the cursor must not wait)


class ImageView(Container):
    """Shows one image (or a message) fitted to its size."""

    DEFAULT_CSS = """
    ImageView { align: center middle; }
    ImageView > .image { width: auto; height: 100%; }
    ImageView > Static.message { width: 100%; height: auto; content-align: center middle; color: $text-muted; }
    """

    def __init__(self, *, box: tuple[int, int] = (384, 384), id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.box = box
        self.path: Path | None = None
        self._pil: PILImage.Image | None = None
        self._mode: str | None = None
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file shown
        self._last_show = 0.0
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="message")

    def on_mount(self) -> None:
        self.watch(self.app, "image_mode", self._mode_changed, init=False)

    def _mode_changed(self, _mode: str) -> None:
        if self._pil is not None:
            self._render_image(self._pil)

    def _thumbs(self) -> ThumbCache:
        return ThumbCache(workbench(self).project.state_dir)

    def show(self, path: Path | None) -> None:
        """Display ``path`` (None clears). Cheap: decoding happens in a worker thread; the image already
        shown, unchanged on disk, is not decoded again (a list refresh re-selects the same image)."""
        new = Path(path) if path is not None else None
        stamp = _stamp(new)
        if new is not None and new == self.path and stamp == self._stamp and self._pil is not None:
            return
        self.path, self._stamp = new, stamp
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self.path is None:
            self._pil = None
            self._message("")
            return
        now = time.monotonic()
        rapid, self._last_show = now - self._last_show < RAPID_S, now
        if rapid:  # key repeat through a grid: only the image the cursor stops on is decoded and drawn
            self._timer = self.set_timer(SETTLE_S, self._load_current)
            return
        self._load(self.path)

    def _load_current(self) -> None:
        self._timer = None
        if self.path is not None:
            self._load(self.path)

    @work(thread=True, exclusive=True, group="image-view")
    def _load(self, path: Path) -> None:
        worker = get_current_worker()
        try:
            thumb = self._thumbs().get(path, self.box)
            with PILImage.open(thumb) as im:
                im.load()
                pil = im.copy()
        except LorawbError as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._message, f"cannot show image\n{exc.message}")
            return
        if not worker.is_cancelled and path == self.path:
            self.app.call_from_thread(self._render_image, pil)

    def _message(self, text: str) -> None:
        self.remove_children(".image")
        msg = self.query_one(Static)
        msg.update(text)
        msg.display = bool(text)

    def _render_image(self, pil: PILImage.Image) -> None:
        self._pil = pil
        mode = workbench(self).image_mode
        existing = self.query(".image")
        if existing and self._mode == mode:
            existing.first().image = pil  # type: ignore[attr-defined]
            return
        existing.remove()
        self._mode = mode
        self.query_one(Static).display = False
        self.mount(RENDERERS.get(mode, HalfcellImage)(pil, classes="image"))


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
