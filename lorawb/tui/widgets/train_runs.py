"""The Train tab's run list: every run with its state, progress, loss, speed, elapsed and ETA.

Rows are updated in place (cell by cell) on every poll so the cursor and scroll position
stay where the person left them while runs progress.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from lorawb.train.monitor import RunRow, format_duration

STATE_STYLES = {
    "running": "bold green",
    "starting": "green",
    "finished": "cyan",
    "stopped": "yellow",
    "failed": "bold red",
    "dead": "red",
}
COLUMNS = ("run", "state", "step", "loss", "smooth", "it/s", "elapsed", "ETA")


RUN_WIDTH = 16  # the run column's width: with the others, the table fits 80 columns (ETA included)


def shown_id(run_id: str, width: int = RUN_WIDTH) -> str:
    """'20261125-143200-lr5e5' -> '14:32 lr5e5', at most ``width`` characters (the header has the full id)."""
    parts = run_id.split("-", 2)
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() and len(parts[1]) >= 4:
        text = f"{parts[1][:2]}:{parts[1][2:4]}" + (f" {parts[2]}" if len(parts) == 3 else "")
    else:
        text = run_id
    return text if len(text) <= width else text[: width - 1] + "…"


def row_cells(row: RunRow, marked: bool = False) -> list[Text | str]:
    state = Text(row.display_state, style=STATE_STYLES.get(row.display_state, "dim"))
    step = f"{row.step}/{row.max_steps}" if row.max_steps else str(row.step)
    name = Text(
        ("◆ " if marked else "") + shown_id(row.run_id, RUN_WIDTH - 2 * marked), style="bold" if row.alive else ""
    )
    return [
        name,
        state,
        step,
        f"{row.loss:.4f}" if row.loss is not None else "-",
        f"{row.loss_smooth:.4f}" if row.loss_smooth is not None else "-",
        f"{row.it_s:.2f}" if row.it_s else "-",
        format_duration(row.elapsed) if row.started is not None else "-",
        format_duration(row.eta),
    ]


class RunTable(DataTable):
    """Runs, newest first. Row keys are run ids."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_by_id: dict[str, RunRow] = {}

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    def update_rows(self, rows: list[RunRow], marked: str | None = None) -> None:
        wanted = {r.run_id: r for r in rows}
        for gone in [rid for rid in self.rows_by_id if rid not in wanted]:
            self.remove_row(gone)
            del self.rows_by_id[gone]
        added = False
        for r in rows:
            cells = row_cells(r, marked == r.run_id)
            if r.run_id not in self.rows_by_id:
                self.add_row(*cells, key=r.run_id)
                added = True
            elif self.rows_by_id[r.run_id] != r or self._marked_changed(r.run_id, marked):
                for col, value in zip(COLUMNS, cells, strict=True):
                    self.update_cell(r.run_id, col, value, update_width=True)
            self.rows_by_id[r.run_id] = r
        self._marked = marked
        if added:
            self.sort("run", key=lambda cell: str(cell).removeprefix("◆ "), reverse=True)

    _marked: str | None = None

    def _marked_changed(self, run_id: str, marked: str | None) -> bool:
        return (self._marked == run_id) != (marked == run_id)

    @property
    def cursor_run(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # no valid cursor (empty table)
            return None
        return key.value

    def move_to(self, run_id: str) -> None:
        if run_id in self.rows_by_id:
            self.move_cursor(row=self.get_row_index(run_id))
