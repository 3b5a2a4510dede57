"""Sample images of one sample step, side by side with their prompts.

The Train tab steps this through the run's sample steps (earlier / later) so a person
watches the character emerge, and pages through the prompts of a step (``[`` ``]``: every
prompt can be seen, ``max_cells`` at a time). A control prompt (one without the trigger:
what the LoRA must *not* change) is marked, since it is where a leaking LoRA shows.
Images are drawn by the shared ImageView (thumbnails made in worker threads, rendered in
the app's image mode).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from lorawb.core.captions import phrase_pattern
from lorawb.train.monitor import SampleImage, SampleStep
from lorawb.tui.widgets.image_view import ImageView


class SampleCell(Vertical):
    """One sample image and its prompt. It keeps its own data, so an update that arrives
    before the cell is composed (or while it is being removed) is applied when possible
    instead of querying children that are not there."""

    DEFAULT_CSS = """
    SampleCell { width: 1fr; height: 1fr; }
    SampleCell > ImageView { height: 1fr; }
    SampleCell > .prompt { height: 2; color: $text-muted; text-align: center; }
    SampleCell.control > .prompt { color: $warning; }
    """

    def __init__(self, image: SampleImage | None = None, control: bool = False) -> None:
        super().__init__()
        self.image = image
        self.control = control
        self.set_class(control, "control")

    def compose(self) -> ComposeResult:
        yield ImageView(box=(256, 256))
        yield Static("", classes="prompt")

    def on_mount(self) -> None:
        self._apply()

    def set_image(self, image: SampleImage, control: bool = False) -> None:
        self.image = image
        self.control = control
        self.set_class(control, "control")
        if self.is_mounted:
            self._apply()

    def _apply(self) -> None:
        im = self.image
        prompts = self.query(".prompt").results(Static)
        views = self.query(ImageView).results(ImageView)
        prompt, view = next(prompts, None), next(views, None)
        if im is None or prompt is None or view is None:
            return
        label = ("control (no trigger): " if self.control else "") + im.prompt
        label += f"  (seed {im.seed})" if im.seed is not None else ""
        prompt.update(label if im.exists else f"{label}\n(missing: {im.path.name})")
        view.show(im.path if im.exists else None)


def is_control(prompt: str, trigger: str) -> bool:
    """A control prompt: one that does not name the trigger (no trigger set: none is)."""
    return bool(trigger) and phrase_pattern(trigger).search(prompt) is None


class SampleStrip(Vertical):
    """The images of one SampleStep, a page of ``max_cells`` at a time (``page_by`` turns the page)."""

    DEFAULT_CSS = """
    SampleStrip { height: 1fr; }
    SampleStrip > .where { height: auto; }
    SampleStrip > Horizontal { height: 1fr; }
    """

    def __init__(self, *, max_cells: int = 4, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_cells = max_cells
        self.trigger = ""  # the project's trigger: prompts without it are marked as controls
        self.page = 0
        self.shown: SampleStep | None = None
        self.shown_images: tuple[SampleImage, ...] = ()
        self._last: tuple[SampleStep | None, int, int, bool] = (None, 0, 0, True)

    @property
    def pages(self) -> int:
        n = len(self._last[0].images) if self._last[0] is not None else 0
        return max(1, -(-n // self.max_cells))

    def page_by(self, delta: int) -> None:
        """The next (``1``) or previous (``-1``) page of prompts of the step shown."""
        page = max(0, min(self.pages - 1, self.page + delta))
        if page != self.page:
            self.page = page
            self.show(*self._last)

    def compose(self) -> ComposeResult:
        yield Static("no samples yet: a run draws them every sample.every_n_steps", classes="where")
        yield Horizontal(id="sample-cells")

    def show(self, step: SampleStep | None, position: int, count: int, following: bool) -> None:
        """Show ``step`` (the ``position``-th of ``count`` sample steps, 1-based), on the page turned to."""
        self._last = (step, position, count, following)
        where = self.query_one(".where", Static)
        if step is None:
            self.shown, self.shown_images = None, ()
            self.query_one("#sample-cells").remove_children()
            where.update("no samples yet: a run draws them every sample.every_n_steps")
            return
        n = len(step.images)
        self.page = min(self.page, self.pages - 1)
        first = self.page * self.max_cells
        images = step.images[first : first + self.max_cells]
        tail = "latest (follows new ones)  , earlier" if following else ", earlier  . later  > latest"
        paging = ""
        if n > self.max_cells:
            paging = f"  ·  prompts {first + 1}-{first + len(images)} of {n}  [ ] page"
        controls = sum(is_control(im.prompt, self.trigger) for im in step.images)
        marked = f"  ·  {controls} control" + ("s" if controls != 1 else "") if controls else ""
        where.update(f"step {step.step}  ·  sample step {position}/{count}{paging}{marked}  ·  {tail}")
        if step == self.shown and images == self.shown_images:
            return
        self.shown, self.shown_images = step, images
        box = self.query_one("#sample-cells", Horizontal)
        cells = list(box.query(SampleCell))
        if len(cells) != len(images):
            box.remove_children()
            box.mount_all([SampleCell(im, is_control(im.prompt, self.trigger)) for im in images])
        else:
            for cell, im in zip(cells, images, strict=True):
                cell.set_image(im, is_control(im.prompt, self.trigger))
