"""Leaving with an unsaved caption edit (quit, or anything else that would drop it): save / discard / cancel."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class UnsavedScreen(ModalScreen[str | None]):
    """Dismisses with "save", "discard" or None (cancel: back to the edit)."""

    BINDINGS = [
        Binding("s", "choose('save')", "Save"),
        Binding("d", "choose('discard')", "Discard"),
        Binding("escape,c", "choose(None)", "Cancel"),
    ]

    def __init__(self, name: str, what: str = "quitting") -> None:
        super().__init__()
        self.caption_name, self.what = name, what

    def compose(self) -> ComposeResult:
        with Vertical(id="unsaved-dialog"):
            yield Static(Content(f"{self.caption_name} has an unsaved edit."), id="unsaved-title")
            yield Static(Content(f"Save it before {self.what}?"))
            with Horizontal(id="unsaved-buttons"):
                yield Button("Save (s)", id="unsaved-save", variant="primary")
                yield Button("Discard (d)", id="unsaved-discard", variant="error")
                yield Button("Cancel (esc)", id="unsaved-cancel")

    def on_mount(self) -> None:
        self.query_one("#unsaved-save", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"unsaved-save": "save", "unsaved-discard": "discard"}.get(event.button.id or ""))

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
