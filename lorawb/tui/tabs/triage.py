"""Triage tab (first cut: the dataset's images with a preview; issue 5 makes it the workbench)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from lorawb.core import layout
from lorawb.core.project import Project
from lorawb.tui.widgets.image_view import ImageView


class TriageTab(Vertical):
    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project
        self.rels: list[str] = []

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield DataTable(id="triage-list", cursor_type="row", zebra_stripes=True)
            yield ImageView(id="triage-preview")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("image", "folder", "caption")
        self.watch(self.app, "dataset_version", lambda _v: self.load(), init=False)
        self.load()

    def focus_target(self):
        return self.query_one(DataTable)

    @work(thread=True, exclusive=True, group="triage-load")
    def load(self) -> None:
        root = self.project.root
        rows = []
        for path in layout.walk_images(self.project.dataset_dir):
            cap = layout.caption_path_for(path)
            rel = path.relative_to(root).as_posix()
            rows.append((rel, path.name, path.parent.name, "yes" if cap.exists() else "missing"))
        self.app.call_from_thread(self._fill, rows)

    def _fill(self, rows) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.rels = [r[0] for r in rows]
        for rel, *cells in rows:
            table.add_row(*cells, key=rel)
        self.app.image_list = tuple(self.rels)
        if self.rels and self.app.current_image is None:
            self.app.select_image(self.rels[0])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        rel = event.row_key.value
        self.app.select_image(rel)
        self.query_one(ImageView).show(self.project.root / rel)
