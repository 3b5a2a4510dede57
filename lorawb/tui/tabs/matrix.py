"""Matrix tab: pick a matrix, watch its grid fill in, zoom, rate, promote, and read the scores.

The tab never draws images itself: a matrix run is a detached process (lorawb.matrix.process)
that writes to its folder; the tab reads folders (lorawb.matrix.report) in thread workers.
A timer ticks every POLL_INTERVAL while the tab is on screen and starts one short worker
that re-reads only matrices whose files changed and posts one ``Polled`` message (never
two polls at once). ``refresh_matrices()`` asks for a poll at once (the file watcher calls it).

Views (sub-tabs, so it fits 80x24): Matrices (the list), Grid (one page: rows × columns of
half-block thumbnails, row labels on the left, column labels on top, the cell's parameters
and scores below) and Scores (checkpoint × weight, the recommendation).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ContentSwitcher, DataTable, Static, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState

from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.matrix.cells import Grid, View, move_axis
from lorawb.matrix.folder import MatrixFolder, list_matrices
from lorawb.matrix.report import Report, load_report
from lorawb.tui.messages import MatricesChanged
from lorawb.tui.palette import command
from lorawb.tui.widgets.image_grid import DENSITIES, GridItem
from lorawb.tui.widgets.matrix_grid import MatrixGrid, MatrixHeader
from lorawb.tui.widgets.matrix_modals import CellZoomScreen, NewMatrixScreen
from lorawb.tui.workbench import workbench
from lorawb.words import plural

POLL_INTERVAL = 0.5
WORKER_GROUPS = ("matrix-poll", "matrix-control")
STATE_STYLES = {
    "running": "bold green",
    "starting": "green",
    "finished": "cyan",
    "stopped": "yellow",
    "stopping…": "bold yellow",
    "failed": "bold red",
    "dead": "red",
    "new": "dim",
}
RATING_STATE = {"good": "keep", "bad": "reject"}


@dataclass
class ListRow:
    id: str
    state: str
    done: int
    total: int | None
    note: str  # the recommendation, or what is wrong with the spec
    run: str = ""  # the run whose checkpoints it tests


def run_label(run_id: str) -> str:
    """A run id short enough for the list, still telling two runs of one name apart: '035213-zkx_mira'."""
    parts = run_id.split("-", 1)
    return parts[1] if len(parts) == 2 and parts[0].isdigit() and len(parts[0]) == 8 else run_id


def _stamp(folder: MatrixFolder) -> tuple:
    """Changes when anything the tab shows of ``folder`` changes (cheap: a few stat calls and a lock probe)."""
    parts: list[Any] = []
    for p in (folder.spec, folder.cells_log, folder.scores_log, folder.events, folder.ratings_file, folder.cells_dir):
        try:
            st = p.stat()
            parts.append((st.st_mtime_ns, st.st_size))
        except OSError:
            parts.append(None)
    parts.append(folder.is_alive())
    parts.append(folder.stop_requested())
    return tuple(parts)


def _mtime(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class MatrixTab(Vertical):
    # The footer shows what the tour uses (new, draw, zoom, rate, promote, pages, scores); the palette
    # (ctrl+p) lists every key, each with its key.
    BINDINGS = [
        Binding("m", "view('list')", "Matrices", show=False),
        Binding("o", "view('grid')", "Grid", show=False),
        Binding("t", "view('scores')", "Scores"),
        Binding("n", "new", "New"),
        Binding("g", "generate", "Draw"),
        Binding("s", "stop", "Stop", show=False),
        Binding("e", "export", "Export", show=False),
        Binding("enter", "zoom", "Zoom"),
        Binding("c", "axis('cols', 1)", "Cols", show=False),
        Binding("C", "axis('cols', -1)", "Prev cols axis", show=False),
        Binding("z", "axis('pages', 1)", "Pages", show=False),
        Binding("Z", "axis('pages', -1)", "Prev page axis", show=False),
        Binding("right_square_bracket", "page(1)", "Page"),
        Binding("left_square_bracket", "page(-1)", "Prev page", show=False),
        Binding("y", "rate('good')", "Good"),
        Binding("x", "rate('bad')", "Bad"),
        Binding("u", "rate('clear')", "Clear rating", show=False),
        Binding("p", "promote", "Promote"),
        Binding("P", "promote_good", "Promote good", show=False),
        Binding("r", "reload", "Reload", show=False),
        Binding("v", "compare", "Compare runs", show=False),
    ]

    class Polled(Message):
        def __init__(self, rows: list[ListRow], report: Report | None, error: str | None, changed: bool) -> None:
            super().__init__()
            self.rows, self.report, self.error, self.changed = rows, report, error, changed

    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project
        self.selected: str | None = None
        self.report: Report | None = None
        self.view_: View | None = None
        self.page = 0
        self.col_off = 0
        self.grid_data: Grid | None = None
        self.rows: list[ListRow] = []
        self._cache: dict[str, tuple[tuple, Report | None, ListRow]] = {}
        self._plans: dict[str, tuple[tuple, Any]] = {}  # matrix id -> (matrix.toml stamp, Plan)
        self._polling = False
        self._poll_again = False
        self._force = False
        self._generate_armed: tuple[str, float] | None = None
        self._opened = False
        self._cells_at: list[str | None] = []  # cell id per grid item
        self._keys: list[tuple] = []  # (page, row, col) keys per grid item

    # --- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="matrix-head")
        with TabbedContent(id="matrix-views", initial="mv-list"):
            with TabPane("Matrices", id="mv-list"):
                yield DataTable(id="matrix-list", cursor_type="row", zebra_stripes=True)
                yield Static(
                    "enter: open · n: new · g: draw · v: compare runs · `lorawb matrix` does the same",
                    id="matrix-list-help",
                    classes="muted",
                )
            with TabPane("Grid", id="mv-grid"):
                yield MatrixHeader("", id="matrix-cols")
                yield MatrixGrid(id="matrix-grid")
                yield Static("", id="matrix-cell")
            with TabPane("Scores", id="mv-scores"):
                yield Static("", id="matrix-scorer")
                yield DataTable(id="matrix-scores", cursor_type="row", zebra_stripes=True)
                yield Static("", id="matrix-rec")
            with TabPane("Compare", id="mv-compare"):
                yield Static("v: this matrix beside the same spec over another run", id="matrix-compare-head")
                yield DataTable(id="matrix-compare", cursor_type="row", zebra_stripes=True)
                yield Static("", id="matrix-compare-rec")

    def on_mount(self) -> None:
        self.query_one("#matrix-list", DataTable).add_columns("matrix", "run", "state", "cells", "recommendation")
        self.query_one("#matrix-scores", DataTable).add_columns(
            "checkpoint",
            "w",
            "identity",
            "%ceil",
            "±seed/pr",
            "leak",
            "PRES",
            "DIV",
            "prompt",
            "cells",
            "nearest",
            "copies",
        )
        self.set_interval(POLL_INTERVAL, self.request_poll)
        self.request_poll()

    def focus_target(self) -> Widget | None:
        pane = self.query_one("#matrix-views", TabbedContent).active
        if pane == "mv-list":
            return self.query_one("#matrix-list")
        if pane == "mv-grid":
            return self.query_one(MatrixGrid)
        if pane == "mv-scores":
            return self.query_one("#matrix-scores")
        if pane == "mv-compare":
            return self.query_one("#matrix-compare")
        return self.query_one("#matrix-views", TabbedContent).query_one(Tabs)

    def commands(self) -> Iterable[SystemCommand]:
        yield command(
            self, "Matrix: new matrix", "Checkpoints × weights × prompts × seeds of a run", self.action_new, "new"
        )
        yield command(
            self, "Matrix: generate", "Draw the selected matrix's missing cells", self.action_generate, "generate"
        )
        yield command(
            self, "Matrix: stop", "Stop the selected matrix after its current batch", self.action_stop, "stop"
        )
        yield command(self, "Matrix: export contact sheet", "A labelled PNG of the page", self.action_export, "export")
        yield command(
            self, "Matrix: scores", "Checkpoint × weight table", lambda: self.action_view("scores"), "view('scores')"
        )
        yield command(
            self, "Matrix: matrices", "Every matrix of the project", lambda: self.action_view("list"), "view('list')"
        )
        yield command(
            self,
            "Matrix: compare two runs",
            "This matrix beside the same spec over another run, scores side by side",
            self.action_compare,
            "compare",
        )
        yield command(
            self, "Matrix: rate good", "The cell under the cursor", lambda: self.action_rate("good"), "rate('good')"
        )
        yield command(
            self, "Matrix: rate bad", "The cell under the cursor", lambda: self.action_rate("bad"), "rate('bad')"
        )
        yield command(
            self, "Matrix: promote", "Copy the cell to inbox/ with its caption", self.action_promote, "promote"
        )
        yield command(
            self, "Matrix: promote the good ones", "Every cell rated good", self.action_promote_good, "promote_good"
        )
        yield command(self, "Matrix: next page", "Turn the grid's page", lambda: self.action_page(1), "page(1)")
        yield command(self, "Matrix: previous page", "Turn the grid's page", lambda: self.action_page(-1), "page(-1)")
        yield command(
            self,
            "Matrix: next column axis",
            "Put another axis across",
            lambda: self.action_axis("cols", 1),
            "axis('cols', 1)",
        )
        yield command(
            self,
            "Matrix: next page axis",
            "Put another axis on the pages",
            lambda: self.action_axis("pages", 1),
            "axis('pages', 1)",
        )

    # --- polling ----------------------------------------------------------------
    def _shown(self) -> bool:
        node: Widget | None = self
        while node is not None and node is not self.screen:
            parent = node.parent
            if not node.display:
                return False
            if isinstance(parent, ContentSwitcher) and parent.current != node.id:
                return False
            node = parent  # type: ignore[assignment]
        return self.is_mounted

    def on_show(self) -> None:
        self.request_poll()

    def refresh_matrices(self, force: bool = True) -> None:
        """Re-read the matrices now (the file watcher calls this when matrices/ changes)."""
        self._force |= force
        self.request_poll()

    def on_matrices_changed(self, msg: MatricesChanged) -> None:
        """The file watcher saw matrices/ change (a new matrix, new cells, ratings): show it now."""
        self.refresh_matrices(force=False)

    def request_poll(self) -> None:
        if not self.is_mounted or (not self._shown() and self._opened):
            return
        if self._polling:
            self._poll_again = True
            return
        self._polling, self._poll_again = True, False
        force, self._force = self._force, False
        self._poll(self.selected, force)

    @work(thread=True, group="matrix-poll", exit_on_error=False)
    def _poll(self, selected: str | None, force: bool) -> None:
        rows: list[ListRow] = []
        report: Report | None = None
        error = None
        changed = force
        try:
            folders = list_matrices(self.project.matrices_dir)
            if selected is None and folders:
                selected = folders[-1].id
            for folder in folders:
                stamp = _stamp(folder)
                hit = self._cache.get(folder.id)
                if hit is None or hit[0] != stamp or force:
                    rep, row = self._read(folder)
                    self._cache[folder.id] = (stamp, rep, row)
                    changed |= folder.id == selected
                rows.append(self._cache[folder.id][2])
                if folder.id == selected:
                    report = self._cache[folder.id][1]
            gone = set(self._cache) - {f.id for f in folders}
            for k in gone:
                self._cache.pop(k)
        except (OSError, LorawbError) as exc:
            error = str(exc)
        self.post_message(self.Polled(rows, report, error, changed))

    def _read(self, folder: MatrixFolder) -> tuple[Report | None, ListRow]:
        try:
            # The plan (spec resolved, cells enumerated) changes only with matrix.toml, lorawb.toml
            # or the run's checkpoints ("last"): reuse it while those stay as they were.
            cached = self._plans.get(folder.id)
            run = cached[1].ctx.run if cached else None
            key = (_mtime(folder.spec), _mtime(self.project.config_path), _mtime(run.checkpoints) if run else None)
            plan = cached[1] if cached and cached[0] == key else None
            rep = load_report(folder, self.project, plan)
            if plan is None:
                run = rep.plan.ctx.run
                key = key[:2] + (_mtime(run.checkpoints) if run else None,)
            self._plans[folder.id] = (key, rep.plan)
        except (LorawbError, OSError) as exc:
            line = getattr(exc, "line", None)
            message = getattr(exc, "message", None) or str(exc)
            note = message if not line else f"line {line}: {message}"
            return None, ListRow(folder.id, "invalid", len(folder.done_ids()), None, note)
        rec = rep.summary().headline() if rep.scorer else rep.reason
        run = rep.plan.ctx.run.id if rep.plan.ctx.run is not None else ""
        return rep, ListRow(folder.id, rep.status.display_state, rep.drawn, rep.total, rec, run)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR or event.worker.group not in WORKER_GROUPS:
            return
        if event.worker.group == "matrix-poll":
            self._polling = False
        self.notify(f"{event.worker.error!r}", title="Matrix tab error", severity="error", timeout=8)

    def on_matrix_tab_polled(self, msg: Polled) -> None:
        self._polling = False
        if msg.error:
            self.notify(msg.error, severity="error", timeout=6)
        if self.selected is None and msg.rows:
            self.selected = msg.rows[-1].id  # the newest, before the list's cursor lands on its first row
        self._show_list(msg.rows)
        if not self._opened:
            self._opened = True
            if msg.rows:
                self.action_view("grid")
        if msg.report is not None and (
            msg.changed
            or self.report is None
            or msg.report.folder.id != (self.report.folder.id if self.report else None)
        ):
            self._show_report(msg.report)
        elif msg.report is None:
            self.report = None
            self._show_head()
            if not msg.rows:
                self._clear_grid()
        if self._poll_again:
            self.request_poll()

    # --- rendering ----------------------------------------------------------------
    def _show_list(self, rows: list[ListRow]) -> None:
        table = self.query_one("#matrix-list", DataTable)
        if rows == self.rows and table.row_count:
            return
        self.rows = rows
        cursor = table.cursor_row
        table.clear()
        for r in rows:
            cells = f"{r.done}/{r.total}" if r.total is not None else f"{r.done}/?"
            run = Text(run_label(r.run), style="dim")
            state = Text(r.state, style=STATE_STYLES.get(r.state, "dim"))
            table.add_row(Text(r.id), run, state, cells, Text(r.note[:120]), key=r.id)
        if rows:
            index = next((i for i, r in enumerate(rows) if r.id == self.selected), min(cursor, len(rows) - 1))
            table.move_cursor(row=max(0, index))

    def _show_head(self) -> None:
        head = self.query_one("#matrix-head", Static)
        rep = self.report
        if rep is None:
            where = self.project.matrices_dir.relative_to(self.project.root)
            bad = next((r for r in self.rows if r.id == self.selected), None)
            if bad is not None and bad.state == "invalid":
                head.update(Text.assemble((bad.id, "bold"), "  invalid matrix.toml: ", (bad.note, "red")))
            else:
                head.update(
                    f"No matrices yet in {where}/. n: a matrix over the latest run's checkpoints (train one first, tab 3)"
                )
            return
        st = rep.status.display_state
        t = Text.assemble(
            (rep.folder.id, "bold"), "  ", (st, STATE_STYLES.get(st, "dim")), f"  {rep.drawn}/{rep.total} cells"
        )
        g = self.grid_data
        if g is not None and g.view.pages and g.pages:
            t.append(f"  ·  page {self.page + 1}/{len(g.pages)}: {g.label('pages', g.pages[self.page])}")
            t.append("  [ ] pages · z page axis", style="dim")
        if rep.status.error:
            t.append(f"\n{rep.status.error}", style="bold red")
        elif rep.scorer:
            t.append("\n" + rep.summary().headline(tie=False), style="cyan")
        else:
            t.append("\n" + rep.reason, style="yellow")
        head.update(t)

    def _show_report(self, rep: Report) -> None:
        same = self.report is not None and self.report.folder.id == rep.folder.id
        self.report = rep
        if not same or self.view_ is None or set(self.view_.placed()) != set(rep.plan.layout.varying):
            self.view_ = rep.view()
            self.page = 0
            self.col_off = 0
        self._build_grid()
        self._show_scores()

    def _clear_grid(self) -> None:
        self.grid_data = None
        grid = self.query_one(MatrixGrid)
        grid.set_layout(1, [], 8)
        grid.set_items([])
        self.query_one(MatrixHeader).update("")
        self.query_one("#matrix-cell", Static).update("")

    def _build_grid(self) -> None:
        rep = self.report
        if rep is None or self.view_ is None:
            return
        g = rep.grid(self.view_)
        self.grid_data = g
        self.page = max(0, min(self.page, len(g.pages) - 1))
        widget = self.query_one(MatrixGrid)
        row_labels = [g.row_lines(k) for k in g.rows]
        gutter = MatrixGrid.gutter_for(row_labels)
        width = widget.scrollable_content_region.width or max(20, self.size.width - 2)
        height = widget.scrollable_content_region.height or 10
        ncols = len(g.cols)
        density = MatrixGrid.fit_density(width, gutter, ncols)
        if density is None:
            density = 0
            fit = max(1, (width - gutter) // (DENSITIES[0][0] + 2))
        else:
            fit = ncols
            if not widget.user_sized:  # the largest cells that fit, while two rows stay visible
                while density > 0 and (DENSITIES[density][1] + 1) * 2 > height:
                    density -= 1
        self.col_off = max(0, min(self.col_off, ncols - fit))
        cols = list(range(self.col_off, min(ncols, self.col_off + fit)))
        if not widget.user_sized and widget.density != density:
            widget.set_reactive(MatrixGrid.density, density)
        elif widget.user_sized and widget.density > (MatrixGrid.fit_density(width, gutter, len(cols)) or 0):
            widget.set_reactive(MatrixGrid.density, MatrixGrid.fit_density(width, gutter, len(cols)) or 0)
        widget.more_left = self.col_off > 0
        widget.more_right = self.col_off + len(cols) < ncols
        widget.set_layout(len(cols), row_labels, gutter)
        items: list[GridItem] = []
        self._cells_at = []
        pk = g.pages[self.page] if g.pages else ()
        for r, rk in enumerate(g.rows):
            for c in cols:
                cid = g.at.get((pk, rk, g.cols[c]))
                self._cells_at.append(cid)
                items.append(self._item(cid, r, c))
        cursor = widget.cursor if widget.items else 0
        widget.set_items(items, cursor_index=min(cursor, len(items) - 1) if items else 0)
        cw = widget.cell_size[0]
        self.query_one(MatrixHeader).show(
            " × ".join(g.view.cols) + " (c)",
            [g.label("cols", g.cols[c], short=True) for c in cols],
            gutter,
            cw,
            widget.more_left,
            widget.more_right,
        )
        self._keys = [(pk, rk, g.cols[c]) for rk in g.rows for c in cols]
        self._show_head()
        self._show_cell()

    def _item(self, cid: str | None, r: int, c: int) -> GridItem:
        rep = self.report
        assert rep is not None
        if cid is None:
            return GridItem(key=f"empty:{r}:{c}", path=None, label="", state="unreviewed")
        drawn = cid in rep.done
        state = (
            "promoted"
            if cid in rep.ratings.promoted
            else RATING_STATE.get(rep.ratings.ratings.get(cid, ""), "unreviewed")
        )
        label = rep.cell_line(cid) if drawn else ""
        path = rep.folder.cell_png(cid) if drawn else None
        return GridItem(key=f"{cid}:{r}:{c}", path=path, label=label, state=state, stamp=1 if drawn else 0)

    def _current_cell(self) -> str | None:
        grid = self.query_one(MatrixGrid)
        if not self._cells_at or not (0 <= grid.cursor < len(self._cells_at)):
            return None
        return self._cells_at[grid.cursor]

    def _show_cell(self) -> None:
        out = self.query_one("#matrix-cell", Static)
        rep, cid = self.report, self._current_cell()
        if rep is None or cid is None:
            out.update("")
            return
        cell = rep.plan.layout.cells[cid]
        g = self.grid_data
        grid = self.query_one(MatrixGrid)
        where = []
        if g is not None and grid.cursor < len(self._keys):
            pk, rk, ck = self._keys[grid.cursor]
            where = [g.label("pages", pk), g.label("cols", ck), g.label("rows", rk)]
        t = Text(" · ".join(w for w in where if w) or cell.params.prompt, style="bold")
        if cell.params.is_base and len(rep.plan.layout.axes["checkpoint"]) > 1:
            t.append("  (weight 0: the base model, the same for every checkpoint)", style="dim")
        t.append(f"\n{cid}  ", style="dim")
        if cid in rep.done:
            t.append(rep.cell_line(cid) or "drawn")
        else:
            t.append("not drawn yet (g generates)", style="dim")
        rating = rep.ratings.ratings.get(cid)
        if rating:
            t.append(f"  rated {rating}", style="green" if rating == "good" else "red")
        if cid in rep.ratings.promoted:
            t.append(f"  promoted: {rep.ratings.promoted[cid]}", style="cyan")
        t.append("  enter: zoom", style="dim")
        out.update(t)

    def _show_scores(self) -> None:
        from lorawb.matrix.scores import scores_header

        rep = self.report
        if rep is None:
            return
        s = rep.summary()
        self.query_one("#matrix-scorer", Static).update(scores_header(s) if rep.scorer else rep.reason)
        table = self.query_one("#matrix-scores", DataTable)
        table.clear()

        def f(x: float | None, short: bool = False) -> str:
            if x is None:
                return "-"
            return f"{x:.2f}".replace("0.", ".", 1) if short else f"{x:.2f}"

        best = s.best()
        for r in s.rows:
            mark = "★ " if best is r else ""
            copies = str(r.flagged) if r.memorisation is not None else "-"
            share = f"{100 * r.identity / s.ceiling:.0f}%" if r.identity is not None and s.ceiling else "-"
            spread = f"{f(r.seed_sd, True)}/{f(r.prompt_sd, True)}" if r.identity is not None else "-"
            div = f(r.diversity) + (" ⚠" if r.collapsed else "")
            table.add_row(
                mark + r.checkpoint,
                f"{r.weight:g}",
                f(r.identity),
                share,
                spread,
                f(r.leak),
                f(r.prior),
                div,
                f(r.prompt_following),
                f"{r.done}/{r.cells}",
                f(r.memorisation),
                copies,
            )
        rec = Text("recommendation: " + (s.headline(tie=False) if best is not None else s.recommendation()))
        if best is not None:
            from lorawb.matrix.scores import spread_text

            rec.append("\n" + spread_text(best), style="dim")
            if s.tie_text():
                rec.append("; " + s.tie_text(), style="yellow")
        for caveat in s.caveats():
            rec.append("\n⚠ " + caveat, style="yellow")
        collapsed = [f"{r.checkpoint} w{r.weight:g}" for r in s.rows if r.collapsed]
        if collapsed:
            base = s.base
            ref = f" {base.diversity:.2f}" if base is not None and base.diversity is not None else ""
            rec.append(f"\n⚠ collapsed: {', '.join(collapsed)} (DIV far below the base model's{ref})", style="yellow")
        if best is not None:
            from lorawb.matrix.scores import by_axis_value

            for axis in rep.plan.layout.slots:
                if len(rep.plan.layout.axes[axis]) < 2:
                    continue
                rows = by_axis_value(rep.plan.layout, rep.scores, rep.scorer or "", axis, best)
                parts = [f"{r.value} {r.identity:.2f}" for r in rows if r.identity is not None]
                if parts:
                    rec.append(f"\nidentity by {axis} at {best.checkpoint} weight {best.weight:g}: ", style="dim")
                    rec.append(" · ".join(parts))
        from lorawb.matrix.bleed import by_character, format_by_character

        per_character = format_by_character(by_character(rep.plan.layout, rep.scores, rep.scorer or ""))
        if per_character:
            rec.append("\nper character (bleed: another character's look on it):\n", style="dim")
            rec.append(per_character)
        self.query_one("#matrix-rec", Static).update(rec)

    # --- events from the widgets ----------------------------------------------------
    @on(MatrixGrid.Highlighted, "#matrix-grid")
    def _cell_highlighted(self, event: MatrixGrid.Highlighted) -> None:
        self._show_cell()

    @on(MatrixGrid.ShiftColumns)
    def _shift(self, event: MatrixGrid.ShiftColumns) -> None:
        grid = self.query_one(MatrixGrid)
        row, col = divmod(grid.cursor, grid.columns) if grid.items else (0, 0)
        self.col_off = max(0, self.col_off + event.step)
        self._build_grid()
        grid.cursor = row * grid.columns + min(grid.columns - 1, max(0, col))

    @on(DataTable.RowHighlighted, "#matrix-list")
    def _list_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row:
            return  # queued behind a refill that moved the cursor on (to the selected matrix)
        key = event.row_key.value
        if key and key != self.selected:
            self.select(key)

    @on(DataTable.RowSelected, "#matrix-list")
    def _list_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.select(event.row_key.value)
        self.action_view("grid")

    def select(self, matrix_id: str) -> None:
        """Show ``matrix_id`` (e.g. the matrix just created)."""
        if matrix_id != self.selected:
            self.selected = matrix_id
            self.view_ = None
            self.report = None
        self.refresh_matrices()

    def on_resize(self) -> None:
        if self.report is not None:
            self._build_grid()

    # --- actions ----------------------------------------------------------------
    def action_view(self, name: str) -> None:
        self.query_one("#matrix-views", TabbedContent).active = f"mv-{name}"
        target = self.focus_target()
        if target is not None:
            target.focus()
        if name == "grid" and self.report is not None:
            self.call_after_refresh(self._build_grid)

    def action_reload(self) -> None:
        self.refresh_matrices()

    # --- two runs' matrices side by side ------------------------------------------------
    def action_compare(self) -> None:
        """The selected matrix beside the newest other matrix with the same spec over another run."""
        folder = self._folder()
        if folder is not None:
            self.action_view("compare")
            self._compare_worker(folder)

    @work(thread=True, exclusive=True, group="matrix-control", exit_on_error=False)
    def _compare_worker(self, folder: MatrixFolder) -> None:
        from lorawb.matrix.compare import compare_matrices, partner

        other = partner(self.project, folder)
        if other is None:
            text = (
                f"no other matrix with the same spec as {folder.id} over another run: n with the same options "
                "and the other run makes one (or `lorawb matrix compare A B`)"
            )
            self.app.call_from_thread(self._show_compare, None, text)
            return
        try:
            cmp = compare_matrices(load_report(folder, self.project), load_report(other, self.project))
        except LorawbError as exc:
            self.app.call_from_thread(self._show_compare, None, str(exc))
            return
        self.app.call_from_thread(self._show_compare, cmp, "")

    def _show_compare(self, cmp: Any, problem: str) -> None:
        head = self.query_one("#matrix-compare-head", Static)
        table = self.query_one("#matrix-compare", DataTable)
        table.clear(columns=True)
        rec = self.query_one("#matrix-compare-rec", Static)
        if cmp is None:
            head.update(Text(problem, style="yellow"))
            rec.update("")
            return
        t = Text.assemble(("A ", "dim"), (cmp.a.folder.id, "bold"), (f" run {cmp.run_a}", "dim"))
        t.append("  vs  B ", style="dim")
        t.append(cmp.b.folder.id, style="bold")
        t.append(f" run {cmp.run_b}", style="dim")
        if cmp.differences:
            t.append("\nthe specs differ beside the run: " + "; ".join(cmp.differences), style="yellow")
        head.update(t)
        table.add_columns("checkpoint", "weight", "identity A", "B", "prompt A", "B", "leak A", "B")

        def f(row: Any, metric: str) -> str:
            v = getattr(row, metric) if row is not None else None
            return "-" if v is None else f"{v:.2f}"

        for r in cmp.rows:
            table.add_row(
                r.checkpoint,
                f"{r.weight:g}",
                *(f(side, m) for m in ("identity", "prompt_following", "leak") for side in (r.a, r.b)),
            )
        rec.update(Text(f"A: {cmp.a.summary().recommendation()}\nB: {cmp.b.summary().recommendation()}", style="cyan"))

    def _folder(self) -> MatrixFolder | None:
        if self.selected is None:
            self.notify("no matrix selected: n makes one", severity="warning")
            return None
        return MatrixFolder(self.project.matrices_dir / self.selected)

    def action_axis(self, part: str, step: int) -> None:
        if self.report is None or self.view_ is None:
            return
        self.view_ = move_axis(self.view_, self.report.plan.layout, part, step)
        self.page, self.col_off = 0, 0
        self._build_grid()
        self.notify(self.view_.describe(), timeout=3)

    def action_page(self, step: int) -> None:
        if self.grid_data is None or not self.grid_data.pages:
            return
        self.page = (self.page + step) % len(self.grid_data.pages)
        self._build_grid()

    def action_zoom(self) -> None:
        if self.query_one("#matrix-views", TabbedContent).active != "mv-grid":
            return
        rep, cid = self.report, self._current_cell()
        if rep is None or cid is None:
            return
        self.app.push_screen(
            CellZoomScreen(rep.folder.cell_png(cid) if cid in rep.done else None, self._zoom_text(rep, cid)),
            lambda what: self._zoom_done(cid, what),
        )

    def _zoom_text(self, rep: Report, cid: str) -> Text:
        """The cell's place and its scores first (above the fold at 80x24), then what made it."""
        cell = rep.plan.layout.cells[cid]
        p = cell.params
        t = Text()
        where = rep.plan.layout.describe(rep.plan.layout.positions_of(cid)[0])
        # Axis labels name themselves ("weight 1", "seed 0"); slot values are shown with their axis.
        labels = [v if v.split(" ", 1)[0] == name else f"{name} {v}" for name, v in where.items()]
        t.append(f"cell {cid}\n", style="bold")
        t.append(" · ".join(labels) + "\n")
        s = rep.scores.get(cid)
        if s:
            t.append(f"scores ({rep.scorer}):\n", style="bold")
            for key in ("identity", "prompt_following", "leak", "prior", "memorisation"):
                if isinstance(s.get(key), (int, float)):
                    name = "PRES (similarity to the dataset)" if key == "prior" else key.replace("_", " ")
                    extra = ""
                    if key in ("identity", "prior") and isinstance(s.get("ceiling"), (int, float)) and s["ceiling"] > 0:
                        extra = f" · dataset {s['ceiling']:.3f} ({100 * s[key] / s['ceiling']:.0f}%)"
                    t.append(f"  {name}: {s[key]:.3f}{extra}\n")
            if s.get("face"):
                t.append(f"  identity: {s['face']} (not a low score: nothing to measure)\n", style="yellow")
            for i, face in enumerate(s.get("faces") or []):
                if len(s["faces"]) > 1 and isinstance(face.get("identity"), (int, float)):
                    t.append(f"  face {i + 1} at {face.get('box')}: identity {face['identity']:.3f}\n")
            if s.get("nearest"):
                t.append(
                    f"  nearest training image: {s['nearest']}" + ("  ⚠ near copy" if s.get("flagged") else "") + "\n"
                )
            if isinstance(s.get("reading"), dict):
                t.append("  reader sees: " + ", ".join(f"{k} {v}" for k, v in s["reading"].items()) + "\n")
            if s.get("characters") or s.get("unmeasured"):
                from lorawb.matrix.bleed import format_characters

                t.append("  characters: " + format_characters(s) + "\n")
        elif rep.reason:
            t.append(f"{rep.reason}\n", style="yellow")
        if cid in rep.ratings.ratings:
            t.append(f"rated {rep.ratings.ratings[cid]}\n")
        if cid in rep.ratings.promoted:
            t.append(f"promoted: {rep.ratings.promoted[cid]}\n", style="cyan")
        t.append("\nprompt: ", style="dim")
        t.append(p.prompt + "\n")
        if p.negative:
            t.append("negative: ", style="dim")
            t.append(p.negative + "\n")
        lora = (
            " + ".join(f"{r.label} ({r.path}) at {w:g}" for r, w in p.all_loras())
            if not p.is_base
            else "none (the base model)"
        )
        t.append("LoRA: ", style="dim")
        t.append(lora + "\n")
        t.append("seed ", style="dim")
        t.append(f"{p.seed} · {p.sampler} · {plural(p.steps, 'step')} · cfg {p.cfg:g} · {p.width}x{p.height}\n")
        t.append("base: ", style="dim")
        t.append(p.base + "\n")
        row = rep.rows.get(cid)
        if row:
            t.append("drawn ", style="dim")
            t.append(
                f"{row.get('seconds_per_image', 0):.2f} s/image on {row.get('device', '?')}, batch of {len(row.get('batch', []))}\n"
            )
        else:
            t.append("not drawn yet\n", style="yellow")
        return t

    def _zoom_done(self, cid: str, what: str | None) -> None:
        if what in ("good", "bad", "clear"):
            self._rate([cid], what)
        elif what == "promote":
            self._promote([cid])

    def action_rate(self, rating: str) -> None:
        cid = self._current_cell()
        if cid is None:
            return
        self._rate([cid], rating)

    @work(thread=True, group="matrix-control", exit_on_error=False)
    def _rate(self, ids: list[str], rating: str) -> None:
        from lorawb.matrix.folder import rate

        folder = self._folder_in_thread()
        if folder is None:
            return
        rate(folder, ids, None if rating == "clear" else rating)
        self.app.call_from_thread(self.refresh_matrices)

    def _folder_in_thread(self) -> MatrixFolder | None:
        return MatrixFolder(self.project.matrices_dir / self.selected) if self.selected else None

    def action_promote(self) -> None:
        cid = self._current_cell()
        if cid is None:
            self.notify("no cell here", severity="warning")
            return
        self._promote([cid])

    def action_promote_good(self) -> None:
        if self.report is None:
            return
        good = [
            c for c, r in self.report.ratings.ratings.items() if r == "good" and c not in self.report.ratings.promoted
        ]
        if not good:
            self.notify("no cells rated good (y) that are not promoted yet", severity="warning")
            return
        self._promote(good)

    @work(thread=True, group="matrix-control", exit_on_error=False)
    def _promote(self, ids: list[str]) -> None:
        from lorawb.matrix.promote import promote

        rep = self.report
        if rep is None:
            return
        cells = [rep.plan.layout.cells[c] for c in ids if c in rep.plan.layout.cells]
        try:
            wb = workbench(self)
            result = promote(self.project, rep.folder, cells, rep.plan.ctx.resolved.trigger, wb.author, wb.index)
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        if result.images:
            names = ", ".join(p.name for p in result.images[:3]) + (" …" if len(result.images) > 3 else "")
            self.app.call_from_thread(self.notify, f"promoted to inbox/: {names} (triage them in tab 1, i)", timeout=6)
            self.app.call_from_thread(self._dataset_changed)
        for cid, why in result.skipped:
            self.app.call_from_thread(self.notify, f"{cid}: {why}", severity="warning", timeout=5)
        self.app.call_from_thread(self.refresh_matrices)

    def _dataset_changed(self) -> None:
        workbench(self).dataset_changed()

    def action_new(self) -> None:
        from lorawb.matrix.lorafile import run_checkpoints
        from lorawb.train.runfolder import list_runs

        runs = [r.id for r in list_runs(self.project.runs_dir) if run_checkpoints(r)]
        if not runs:
            self.notify("no run with checkpoints yet: train one in tab 3 first", severity="warning", timeout=6)
            return
        self.app.push_screen(NewMatrixScreen(runs, project=self.project), self._create)

    def _create(self, opts: Any) -> None:
        if opts is not None:
            self._create_worker(opts)

    @work(thread=True, group="matrix-control", exit_on_error=False)
    def _create_worker(self, opts: Any) -> None:
        from lorawb.matrix.estimate import describe_estimate, measured_speed
        from lorawb.matrix.new import create_matrix
        from lorawb.matrix.plan import plan_matrix

        try:
            folder = create_matrix(self.project, opts)
            plan = plan_matrix(folder, self.project)
            est = describe_estimate(
                len(plan.layout.cells), measured_speed(self.project, folder, plan.layout, plan.ctx.run)
            )
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        msg = f"wrote {folder.spec.relative_to(self.project.root)}: {plural(len(plan.layout.cells), 'image')}; {est}. g generates"
        for note in opts.notes:
            msg += f"\nnote: {note}"
        self.app.call_from_thread(self.notify, msg, timeout=8)
        self.app.call_from_thread(self._created, folder.id)

    def _created(self, matrix_id: str) -> None:
        self.select(matrix_id)
        self.action_view("grid")

    def action_generate(self) -> None:
        folder = self._folder()
        if folder is None:
            return
        armed = self._generate_armed
        confirmed = armed is not None and armed[0] == folder.id and time.monotonic() - armed[1] < 4
        self._generate_armed = None
        self._generate_worker(folder, confirmed)

    @work(thread=True, group="matrix-control", exit_on_error=False)
    def _generate_worker(self, folder: MatrixFolder, confirmed: bool) -> None:
        from lorawb.matrix.estimate import describe_estimate, measured_speed
        from lorawb.matrix.plan import plan_matrix
        from lorawb.matrix.process import start_matrix

        try:
            plan = plan_matrix(folder, self.project)
            pending = len(plan.pending())
            est = describe_estimate(pending, measured_speed(self.project, folder, plan.layout, plan.ctx.run))
            if pending == 0:
                self.app.call_from_thread(self.notify, f"{folder.id}: every cell exists", timeout=4)
                return
            if pending > plan.settings.max_cells and not confirmed:
                self.app.call_from_thread(
                    self._arm_generate,
                    folder.id,
                    f"{plural(pending, 'image')} is more than [matrix] max_cells = {plan.settings.max_cells}; {est}. Press g again to draw them all",
                )
                return
            start_matrix(folder, detach=True)
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        self.app.call_from_thread(
            self.notify,
            f"drawing {folder.id} in a separate process (closing the app leaves it running); {est}",
            timeout=6,
        )
        self.app.call_from_thread(self.refresh_matrices)

    def _arm_generate(self, matrix_id: str, text: str) -> None:
        self._generate_armed = (matrix_id, time.monotonic())
        self.notify(text, severity="warning", timeout=4)

    def action_stop(self) -> None:
        folder = self._folder()
        if folder is None:
            return
        rep = self.report
        if rep is not None and rep.folder.id == folder.id and rep.status.display_state in ("running", "starting"):
            rep.status.stopping = True  # shown at once; the next poll reads it back from the stop request
            self._show_head()
            self._show_list([replace(r, state=rep.status.display_state) if r.id == folder.id else r for r in self.rows])
        self._stop_worker(folder)

    @work(thread=True, group="matrix-control", exit_on_error=False)
    def _stop_worker(self, folder: MatrixFolder) -> None:
        from lorawb.matrix.process import stop_matrix

        try:
            stop_matrix(folder)
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="warning")
            return
        self.app.call_from_thread(
            self.notify, f"asked {folder.id} to stop after its current batch; g continues it", timeout=4
        )

    def action_export(self) -> None:
        if self.report is None or self.view_ is None:
            self.notify("no matrix to export", severity="warning")
            return
        self._export_worker(self.report, self.view_, self.page)

    @work(thread=True, group="matrix-control", exit_on_error=False)
    def _export_worker(self, rep: Report, view: View, page: int) -> None:
        from lorawb.matrix.report import export_sheets

        try:
            paths = export_sheets(rep, view, [page])
        except (LorawbError, OSError) as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        rel = [
            str(Path(p).relative_to(self.project.root)) if Path(p).is_relative_to(self.project.root) else str(p)
            for p in paths
        ]
        self.app.call_from_thread(self.notify, "contact sheet: " + ", ".join(rel), timeout=6)
