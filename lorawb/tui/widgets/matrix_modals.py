"""Dialogs of the Matrix tab: a new matrix (the form of `lorawb matrix new`) and a cell's zoom.

NewMatrixScreen collects the options and hands them back; the tab writes the spec through
lorawb.matrix.new. CellZoomScreen shows one cell large with every parameter that made it
and its scores; its keys hand an action back to the tab (rate, promote).
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from lorawb.errors import LorawbError
from lorawb.matrix.new import DEFAULT_SEEDS, DEFAULT_WEIGHTS, MAX_CHECKPOINTS, NewMatrix
from lorawb.tui.widgets.image_view import ImageView


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
    """Name, run, weights, seeds, how many checkpoints, fill gaps: ctrl+s creates the spec."""

    DEFAULT_CSS = """
    NewMatrixScreen { align: center middle; }
    #nm-dialog { width: 72; height: auto; max-height: 22; border: round $accent; padding: 0 1; background: $surface; }
    #nm-dialog Horizontal { height: auto; }
    #nm-dialog Label { width: 14; padding: 1 0 0 0; }
    #nm-dialog Input { width: 1fr; }
    #nm-dialog Select { width: 1fr; }
    #nm-error { color: $error; height: auto; }
    #nm-buttons { height: 3; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "create", "Create", priority=True)]

    def __init__(self, runs: list[str], name: str = "") -> None:
        super().__init__()
        self.runs = runs
        self.default_name = name

    def compose(self) -> ComposeResult:
        with Vertical(id="nm-dialog"):
            yield Static("New matrix · checkpoints × LoRA weights × contexts/styles × seeds, plus control prompts")
            with Horizontal():
                yield Label("name")
                yield Input(self.default_name, id="nm-name", placeholder="e.g. mira-v1")
            with Horizontal():
                yield Label("run")
                options = [(r, r) for r in reversed(self.runs)]
                yield Select(
                    options, value=options[0][1] if options else Select.BLANK, id="nm-run", allow_blank=not options
                )
            with Horizontal():
                yield Label("weights")
                yield Input(", ".join(f"{w:g}" for w in DEFAULT_WEIGHTS), id="nm-weights")
            with Horizontal():
                yield Label("seeds")
                yield Input(", ".join(str(s) for s in DEFAULT_SEEDS), id="nm-seeds")
            with Horizontal():
                yield Label("checkpoints")
                yield Input(str(MAX_CHECKPOINTS), id="nm-ckpts", placeholder="at most this many, spread over the run")
            yield Checkbox("only the context × style pairs the dataset lacks (fill gaps)", id="nm-gaps")
            yield Static("", id="nm-error")
            with Horizontal(id="nm-buttons"):
                yield Button("Create (ctrl+s)", id="nm-create", variant="primary")
                yield Button("Cancel", id="nm-cancel")

    def on_mount(self) -> None:
        self.query_one("#nm-name", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#nm-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#nm-create")
    @on(Input.Submitted)
    def action_create(self) -> None:
        try:
            run = self.query_one("#nm-run", Select)
            opts = NewMatrix(
                name=self.query_one("#nm-name", Input).value.strip(),
                run="" if run.is_blank() else str(run.value),
                fill_gaps=self.query_one("#nm-gaps", Checkbox).value,
                weights=_numbers(self.query_one("#nm-weights", Input).value, float),
                seeds=_numbers(self.query_one("#nm-seeds", Input).value, int),
                checkpoints=int(self.query_one("#nm-ckpts", Input).value or MAX_CHECKPOINTS),
            )
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
