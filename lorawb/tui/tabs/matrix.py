"""Matrix tab: the project's prompt matrices (the tester that fills them is the next milestone)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from lorawb.core.project import Project
from lorawb.matrix.folder import MatrixSummary, list_matrices
from lorawb.tui.messages import MatricesChanged
from lorawb.tui.widgets.image_view import ImageView


class MatrixTab(Vertical):
    BINDINGS = [("r", "reload", "Reload")]

    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project
        self.matrices: dict[str, MatrixSummary] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="matrix-summary")
        with Horizontal():
            yield DataTable(id="matrix-list", cursor_type="row", zebra_stripes=True)
            with Vertical(id="matrix-side"):
                yield Static("", id="matrix-axes")
                yield ImageView(id="matrix-preview")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("matrix", "cells", "axes")
        self.action_reload()

    def focus_target(self):
        return self.query_one(DataTable)

    def action_reload(self) -> None:
        self.load()

    def on_matrices_changed(self, msg: MatricesChanged) -> None:
        """matrices/ changed on disk (a new matrix, new cells): list them again without a key press."""
        self.load()

    @work(thread=True, exclusive=True, group="matrix-load")
    def load(self) -> None:
        found = list_matrices(self.project.matrices_dir)
        self.app.call_from_thread(self._fill, found)

    def _fill(self, found: list[MatrixSummary]) -> None:
        table = self.query_one(DataTable)
        keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value if table.row_count else None
        table.clear()
        self.matrices = {m.id: m for m in found}
        for m in found:
            cells = f"{m.cells}/{m.expected_cells}" if m.expected_cells else str(m.cells)
            table.add_row(m.id, cells, " × ".join(m.axes) or (m.problem or "-"), key=m.id)
        if keep in self.matrices:  # a reload after a change on disk keeps the selection
            table.move_cursor(row=table.get_row_index(keep))
        where = self.project.matrices_dir.relative_to(self.project.root)
        if found:
            self.query_one("#matrix-summary", Static).update(f"{len(found)} matrices in {where}/")
        else:
            self.query_one("#matrix-summary", Static).update(
                f"No matrices yet in {where}/. A matrix tests checkpoints × LoRA weights × prompts × seeds; "
                "train a run first (tab 3)."
            )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        m = self.matrices.get(event.row_key.value)
        if m is None:
            return
        lines = [f"{name}: {', '.join(map(str, values))}" for name, values in m.axes.items()]
        if m.problem:
            lines.append(m.problem)
        self.query_one("#matrix-axes", Static).update("\n".join(lines) or "(no axes)")
        self.query_one(ImageView).show(m.preview)
