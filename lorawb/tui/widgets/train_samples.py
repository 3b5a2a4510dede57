"""Sample images of one sample step, side by side with their prompts.

The Train tab steps this through the run's sample steps (earlier / later) so a person
watches the character emerge. Images are drawn by the shared ImageView (thumbnails made
in worker threads, rendered in the app's image mode).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from lorawb.train.monitor import SampleStep
from lorawb.tui.widgets.image_view import ImageView


class SampleCell(Vertical):
    DEFAULT_CSS = """
    SampleCell { width: 1fr; height: 1fr; }
    SampleCell > ImageView { height: 1fr; }
    SampleCell > .prompt { height: 2; color: $text-muted; text-align: center; }
    """

    def compose(self) -> ComposeResult:
        yield ImageView(box=(256, 256))
        yield Static("", classes="prompt")


class SampleStrip(Vertical):
    """The images of one SampleStep (at most ``max_cells`` shown; the rest are counted)."""

    DEFAULT_CSS = """
    SampleStrip { height: 1fr; }
    SampleStrip > .where { height: 1; }
    SampleStrip > Horizontal { height: 1fr; }
    """

    def __init__(self, *, max_cells: int = 4, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_cells = max_cells
        self.shown: SampleStep | None = None

    def compose(self) -> ComposeResult:
        yield Static("no samples yet: a run draws them every sample.every_n_steps", classes="where")
        yield Horizontal(id="sample-cells")

    def show(self, step: SampleStep | None, position: int, count: int, following: bool) -> None:
        """Show ``step`` (the ``position``-th of ``count`` sample steps, 1-based)."""
        where = self.query_one(".where", Static)
        if step is None:
            self.shown = None
            self.query_one("#sample-cells").remove_children()
            where.update("no samples yet: a run draws them every sample.every_n_steps")
            return
        images = step.images[: self.max_cells]
        more = len(step.images) - len(images)
        tail = "latest (follows new ones)  , earlier" if following else ", earlier  . later  > latest"
        extra = f" (+{more} more)" if more > 0 else ""
        where.update(f"step {step.step}  ·  sample step {position}/{count}{extra}  ·  {tail}")
        if step == self.shown:
            return
        self.shown = step
        box = self.query_one("#sample-cells", Horizontal)
        cells = list(box.query(SampleCell))
        if len(cells) != len(images):
            box.remove_children()
            cells = [SampleCell() for _ in images]
            box.mount_all(cells)
            self.call_after_refresh(self._fill, images)
        else:
            self._fill(images)

    def _fill(self, images) -> None:
        for cell, im in zip(self.query(SampleCell), images, strict=False):
            label = im.prompt + (f"  (seed {im.seed})" if im.seed is not None else "")
            cell.query_one(".prompt", Static).update(label if im.exists else f"{label}\n(missing: {im.path.name})")
            cell.query_one(ImageView).show(im.path if im.exists else None)
