"""The caption history (``H`` in Captions): every change set with its author, time and summary.

``u`` in a window undoes that window's own latest change only. A change made by another
window or the CLI is undone here, deliberately: pick it (enter), read its diff, confirm
(``u``). The dialog never writes: it hands the chosen entry's id back to the tab.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from lorawb.core import caption_history as ch
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.tui.widgets.caption_modals import diff_content
from lorawb.words import plural

DIFF_FILES = 50  # files of an entry's diff shown (the count says how many it has)


def when(created: float | None) -> str:
    return "" if created is None else time.strftime("%m-%d %H:%M", time.localtime(created))


class HistoryScreen(ModalScreen[int | None]):
    """List → one entry's diff → confirm. Dismisses with the id of the entry to undo, or None."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("u", "confirm", "Undo this change"),
    ]

    def __init__(self, project: Project, me: str) -> None:
        super().__init__()
        self.project, self.me = project, me
        self.entries: list[ch.HistoryEntry] = []
        self.chosen: ch.HistoryEntry | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="history-dialog"):
            yield Static("", id="history-title")
            yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="history-diff-scroll"):
                yield Static("", id="history-diff")
            yield Static("", id="history-hint")

    def on_mount(self) -> None:
        table = self.query_one("#history-table", DataTable)
        table.add_columns("#", "when", "who", "files", "change")
        try:
            self.entries = ch.history(self.project, limit=200)
        except LorawbError as exc:
            self.entries = []
            self.notify(str(exc), severity="error", markup=False)
        for e in self.entries:
            who = ch.describe_author(e.author, self.me).replace("unknown (before authors were recorded)", "unknown")
            label = e.label if e.state == "applied" else f"{e.label} (undone)"
            if e.state == "superseded":
                label += ", replaced by a later edit"
            table.add_row(str(e.id), when(e.created), Text(who), str(e.files), Text(label), key=str(e.id))
        self._list_mode()
        table.focus()

    def _list_mode(self) -> None:
        self.chosen = None
        n = len(self.entries)
        self.query_one("#history-title", Static).update(
            Content(f"Caption history · {plural(n, 'change set')} (newest first)")
        )
        self.query_one("#history-table").display = True
        self.query_one("#history-diff-scroll").display = False
        hint = "enter: see the diff · esc: close" if n else "nothing recorded yet · esc: close"
        self.query_one("#history-hint", Static).update(Content.styled(hint, "$text-muted"))

    @on(DataTable.RowSelected, "#history-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        op_id = int(str(event.row_key.value))
        entry = next((e for e in self.entries if e.id == op_id), None)
        if entry is None:
            return
        self.chosen = entry
        try:
            diff = ch.entry_diff(self.project, op_id, limit=DIFF_FILES)
        except LorawbError as exc:
            diff = str(exc)
        who = ch.describe_author(entry.author, self.me)
        more = f" (first {DIFF_FILES} shown)" if entry.files > DIFF_FILES else ""
        self.query_one("#history-title", Static).update(
            Content(f"#{entry.id} {entry.label} · {who} · {when(entry.created)} · {plural(entry.files, 'file')}{more}")
        )
        self.query_one("#history-diff", Static).update(diff_content(diff))
        self.query_one("#history-table").display = False
        self.query_one("#history-diff-scroll").display = True
        if entry.state == "applied":
            hint = "u: undo this change (files changed since are left as they are) · esc: back to the list"
        elif entry.state == "superseded":
            hint = "undone, then replaced by a later edit (it can no longer be redone) · esc: back to the list"
        else:
            hint = "already undone (U redoes it) · esc: back to the list"
        self.query_one("#history-hint", Static).update(Content.styled(hint, "$text-muted"))
        self.query_one("#history-diff-scroll").focus()

    def action_confirm(self) -> None:
        if self.chosen is not None and self.chosen.state == "applied":
            self.dismiss(self.chosen.id)

    def action_back(self) -> None:
        if self.chosen is not None:
            self._list_mode()
            self.query_one("#history-table").focus()
        else:
            self.dismiss(None)
