"""Train tab (first cut: the project's runs)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from lorawb.core.project import Project
from lorawb.train.runfolder import list_runs, summarize


class TrainTab(Vertical):
    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project

    def compose(self) -> ComposeResult:
        yield Static("", id="train-summary")
        yield DataTable(id="train-runs", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("run", "state", "step", "loss")
        runs = [summarize(r) for r in list_runs(self.project.runs_dir)]
        for s in runs:
            table.add_row(s.id, s.display_state, str(s.step), f"{s.loss:.4f}" if s.loss is not None else "-")
        self.query_one("#train-summary", Static).update(f"{len(runs)} runs in {self.project.runs_dir}")
