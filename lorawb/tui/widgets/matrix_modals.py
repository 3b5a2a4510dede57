"""Dialogs of the Matrix tab: a new matrix (the form of `lorawb matrix new`) and a cell's zoom.

NewMatrixScreen collects the options, shows the image count and time they come to (fitted to
``[matrix] target_minutes``, lorawb.matrix.new.draft_new) and hands them back; the tab writes the spec
through lorawb.matrix.new. CellZoomScreen shows one cell large with every parameter that made it
and its scores; its keys hand an action back to the tab (rate, promote).
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.matrix.new import DEFAULT_SEEDS, DEFAULT_WEIGHTS, MAX_CHECKPOINTS, NewMatrix
from lorawb.matrix.settings import matrix_settings
from lorawb.tui.widgets.image_view import ImageView
from lorawb.words import plural


def _numbers(text: str, kind: type) -> tuple:
    out: list = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if kind is int and "-" in part[1:]:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(kind(part))
    return tuple(out)


class NewMatrixScreen(ModalScreen["NewMatrix | None"]):
    """Name, run, weights, seeds, checkpoints, minutes, fill gaps; the size and time it will take, live.

    enter (in any field) or ctrl+s creates the spec; esc cancels. Compact fields, so the dialog with
    its count and estimate fits an 80x24 terminal.
    """

    DEFAULT_CSS = """
    NewMatrixScreen { align: center middle; }
    #nm-dialog { width: 78; max-width: 100%; height: auto; max-height: 100%; border: round $accent;
                 border-title-align: left; padding: 0 1; background: $surface; }
    #nm-dialog Horizontal { height: 1; }
    #nm-dialog Label { width: 12; }
    #nm-dialog .short { width: 1fr; }
    #nm-dialog .gap { width: 2; }
    #nm-dialog Input, #nm-dialog Select { width: 1fr; }
    #nm-gaps { margin: 0 0 1 0; }
    #nm-preview { height: auto; min-height: 3; }
    #nm-error { color: $error; height: auto; }
    #nm-buttons { height: 1; margin: 1 0 0 0; }
    #nm-buttons Button { margin: 0 2 0 0; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "create", "Create", priority=True)]

    class Previewed(Message):
        def __init__(self, text: Text) -> None:
            super().__init__()
            self.text = text

    def __init__(self, runs: list[str], name: str = "", project: Project | None = None) -> None:
        super().__init__()
        self.runs = runs
        self.default_name = name
        self.project = project
        self.target = matrix_settings(project).target_minutes if project is not None else 0.0

    def compose(self) -> ComposeResult:
        with Vertical(id="nm-dialog") as box:
            box.border_title = "New matrix: checkpoints × LoRA weights × contexts/styles × seeds"
            with Horizontal():
                yield Label("name")
                yield Input(self.default_name, id="nm-name", placeholder="e.g. mira-v1", compact=True)
            with Horizontal():
                yield Label("run")
                options = [(r, r) for r in reversed(self.runs)]
                yield Select(
                    options,
                    value=options[0][1] if options else Select.BLANK,
                    id="nm-run",
                    allow_blank=not options,
                    compact=True,
                )
            with Horizontal():
                yield Label("weights")
                yield Input(", ".join(f"{w:g}" for w in DEFAULT_WEIGHTS), id="nm-weights", compact=True)
                yield Static(" ", classes="gap")
                yield Label("seeds")
                yield Input(", ".join(str(s) for s in DEFAULT_SEEDS), id="nm-seeds", classes="short", compact=True)
            with Horizontal():
                yield Label("checkpoints")
                yield Input(str(MAX_CHECKPOINTS), id="nm-ckpts", compact=True)
                yield Static(" ", classes="gap")
                yield Label("minutes")
                yield Input(f"{self.target:g}", id="nm-minutes", classes="short", compact=True)
            yield Checkbox("only the context × style pairs the dataset lacks (fill gaps)", id="nm-gaps", compact=True)
            yield Static("", id="nm-preview")
            yield Static("", id="nm-error")
            with Horizontal(id="nm-buttons"):
                yield Button("Create (enter)", id="nm-create", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="nm-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#nm-name", Input).focus()
        self._preview()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#nm-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def options(self) -> NewMatrix:
        """What the fields say (ValueError for a field that is not a number); defaults left as they are
        may be trimmed to fit the minutes, a field changed from its default is kept as given."""
        run = self.query_one("#nm-run", Select)
        weights = _numbers(self.query_one("#nm-weights", Input).value, float)
        seeds = _numbers(self.query_one("#nm-seeds", Input).value, int)
        ckpts = int(self.query_one("#nm-ckpts", Input).value or MAX_CHECKPOINTS)
        minutes_text = self.query_one("#nm-minutes", Input).value.strip()
        minutes = float(minutes_text) if minutes_text else 0.0
        fixed = {
            "weights": weights != DEFAULT_WEIGHTS,
            "seeds": seeds != DEFAULT_SEEDS,
            "checkpoints": ckpts != MAX_CHECKPOINTS,
        }
        return NewMatrix(
            name=self.query_one("#nm-name", Input).value.strip(),
            run="" if run.is_blank() else str(run.value),
            fill_gaps=self.query_one("#nm-gaps", Checkbox).value,
            weights=weights,
            seeds=seeds,
            checkpoints=ckpts,
            minutes=None if minutes == self.target else minutes,
            fixed=frozenset(k for k, v in fixed.items() if v),
        )

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self._preview()

    def _preview(self) -> None:
        if self.project is None or not self.is_mounted:
            return
        try:
            opts = self.options()
        except ValueError:
            self.query_one("#nm-preview", Static).update(Text("size: give numbers in every field", style="yellow"))
            return
        self._preview_worker(opts)

    @work(thread=True, exclusive=True, group="nm-preview", exit_on_error=False)
    def _preview_worker(self, opts: NewMatrix) -> None:
        from lorawb.matrix.cells import size_breakdown
        from lorawb.matrix.estimate import describe_estimate, format_duration
        from lorawb.matrix.new import draft_new

        assert self.project is not None
        try:
            d = draft_new(self.project, opts)
        except LorawbError as exc:
            self.post_message(self.Previewed(Text(str(exc).splitlines()[0], style="yellow")))
            return
        t = Text()
        t.append(f"{plural(d.images, 'image')}", style="bold")
        t.append(f": {size_breakdown(d.layout, d.spec.matrix.zip)}\n")
        if d.speed is None:
            t.append(describe_estimate(d.images, None) + "\n", style="yellow")
        else:
            secs = d.images * d.speed.seconds_per_image
            t.append(f"estimated {format_duration(secs)}", style="bold")
            t.append(f" ({d.speed.seconds_per_image:.2f} s an image, measured on {d.speed.source})\n")
        for note in d.notes:
            t.append(note + "\n", style="dim")
        self.post_message(self.Previewed(t))

    def on_new_matrix_screen_previewed(self, msg: Previewed) -> None:
        self.query_one("#nm-preview", Static).update(msg.text)

    @on(Button.Pressed, "#nm-create")
    @on(Input.Submitted)
    def action_create(self) -> None:
        try:
            opts = self.options()
        except ValueError as exc:
            self.query_one("#nm-error", Static).update(Text(f"not a number: {exc}"))
            return
        if not opts.weights or not opts.seeds:
            self.query_one("#nm-error", Static).update("give at least one weight and one seed")
            return
        self.dismiss(opts)

    def show_error(self, error: LorawbError) -> None:
        self.query_one("#nm-error", Static).update(Text(str(error)))


class CellZoomScreen(ModalScreen[str | None]):
    """One cell large, with its parameters and scores. y/x/u rate, p promotes, esc closes."""

    DEFAULT_CSS = """
    CellZoomScreen { align: center middle; }
    #zoom-dialog { width: 96%; height: 94%; border: round $accent; background: $surface; }
    #zoom-image { width: 1fr; height: 1fr; }
    #zoom-side { width: 1fr; height: 1fr; padding: 0 1; }
    #zoom-keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,enter,q", "close", "Close"),
        Binding("y", "act('good')", "Good"),
        Binding("x", "act('bad')", "Bad"),
        Binding("u", "act('clear')", "Clear"),
        Binding("p", "act('promote')", "Promote"),
    ]

    def __init__(self, path, text: str) -> None:
        super().__init__()
        self.path = path
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="zoom-dialog"):
            with Horizontal():
                yield ImageView(box=(512, 512), id="zoom-image")
                with VerticalScroll(id="zoom-side"):
                    yield Static(self.text, id="zoom-params")
            yield Static(" y good · x bad · u clear · p promote to inbox · esc close", id="zoom-keys")

    def on_mount(self) -> None:
        self.query_one(ImageView).show(self.path)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_act(self, what: str) -> None:
        self.dismiss(what)
