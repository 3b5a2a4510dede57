"""Captions tab (first cut: the selected image's caption beside its preview)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from lorawb.core import layout
from lorawb.core.fsutil import read_text
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.tui.widgets.image_view import ImageView


class CaptionsTab(Vertical):
    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ImageView(id="captions-preview")
            yield Static("", id="captions-text")

    def on_mount(self) -> None:
        self.watch(self.app, "current_image", self.show_image)

    def show_image(self, rel: str | None) -> None:
        text = self.query_one("#captions-text", Static)
        if rel is None:
            text.update("no image selected")
            return
        path = self.project.root / rel
        cap = layout.caption_path_for(path)
        try:
            caption = read_text(cap).text if cap.exists() else "(no caption)"
        except LorawbError as exc:
            caption = str(exc)
        text.update(f"{rel}\n\n{caption}")
        self.query_one(ImageView).show(path)
