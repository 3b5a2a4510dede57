"""Train tab: the project's runs, the live monitor of one, its samples, checkpoints and log,
run comparison, and the form that starts a new run.

The tab never holds a training loop: it reads run folders (lorawb.train.monitor) and
starts/stops runs through lorawb.train.process, whose runs are detached processes.

Following runs: a timer ticks every POLL_INTERVAL while the tab is on screen and starts
one short thread worker, which polls every run (new bytes only, a bounded chunk each),
snapshots the selected run (series already downsampled) and posts one ``Polled``
message. While a poll is in flight further ticks are skipped, so a slow screen or a
flood of events never queues work: the monitors just read more on the next poll
(toolong's backpressure). No worker outlives its poll.

Views (sub-tabs, so the tab fits 80x24): Runs, Monitor, Samples, Checkpoints, Log,
Compare, New run, Queue (the machine's job queue), Sweeps (one-change sweeps, ranked).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ContentSwitcher, DataTable, ProgressBar, RichLog, Static, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState

from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.train.compare import Comparison, compare_runs, format_value
from lorawb.train.monitor import (
    DEFAULT_SMOOTHING,
    GpuInfo,
    MonitorView,
    RunBoard,
    RunRow,
    format_duration,
    format_size,
    gpu_stats,
)
from lorawb.train.runfolder import RunFolder
from lorawb.tui.messages import RunsChanged
from lorawb.tui.widgets.train_charts import Line, SeriesChart
from lorawb.tui.widgets.train_form import RunForm
from lorawb.tui.widgets.train_queue import QueueView
from lorawb.tui.widgets.train_runs import STATE_STYLES, RunTable
from lorawb.tui.widgets.train_samples import SampleStrip
from lorawb.tui.widgets.train_sweeps import SweepView
from lorawb.words import plural

POLL_INTERVAL = 0.5  # seconds between polls while the tab is shown
GPU_EVERY = 2.0  # seconds between NVML queries
CHART_POINTS = 400  # points per series handed to a chart (plotext draws ~2 per column)
SMOOTHING_STEPS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
WORKER_GROUPS = ("train-poll", "train-control", "train-queue", "train-queue-act", "train-sweeps")


def short_id(run_id: str) -> str:
    """'20261125-143200-lr5e5' -> 'lr5e5'; an unnamed run keeps its time: '143200'."""
    parts = run_id.split("-", 2)
    if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
        return parts[2]
    if len(parts) == 2 and parts[0].isdigit():
        return parts[1]
    return run_id[-16:]


class TrainTab(Vertical):
    BINDINGS = [
        Binding("r", "view('runs')", "Runs"),
        Binding("m", "view('monitor')", "Monitor"),
        Binding("p", "view('samples')", "Samples"),
        Binding("c", "view('checkpoints')", "Ckpts", show=False),
        Binding("l", "view('log')", "Log"),
        Binding("v", "view('compare')", "Compare"),
        Binding("n", "view('new')", "New run"),
        Binding("q", "view('queue')", "Queue"),
        Binding("s", "view('sweeps')", "Sweeps"),
        Binding("x", "stop", "Stop"),
        Binding("R", "resume", "Resume"),
        Binding("b", "mark_compare", "Compare with", show=False),
        Binding("plus,equals_sign", "smoothing(1)", "Smooth+", show=False),
        Binding("minus", "smoothing(-1)", "Smooth-", show=False),
        Binding("comma", "sample_step(-1)", "Earlier samples", show=False),
        Binding("full_stop", "sample_step(1)", "Later samples", show=False),
        Binding("greater_than_sign", "sample_latest", "Latest samples", show=False),
        Binding("left_square_bracket", "sample_page(-1)", "Previous prompts", show=False),
        Binding("right_square_bracket", "sample_page(1)", "Next prompts", show=False),
    ]

    class Polled(Message):
        """A poll's results, posted from the poll worker to the tab."""

        def __init__(
            self,
            rows: list[RunRow],
            view: MonitorView | None,
            comparison: Comparison | None,
            gpu: list[GpuInfo] | None,
            error: str | None,
            more: bool,
        ) -> None:
            super().__init__()
            self.rows, self.view, self.comparison, self.gpu = rows, view, comparison, gpu
            self.error, self.more = error, more

    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project
        self.board = RunBoard(project.runs_dir, smoothing=DEFAULT_SMOOTHING)
        self.selected: str | None = None
        self.compare_with: str | None = None
        self.smoothing = DEFAULT_SMOOTHING
        self.view: MonitorView | None = None
        self.comparison: Comparison | None = None
        self.gpu: list[GpuInfo] | None = None
        self.rows: list[RunRow] = []
        self.sample_pos: int | None = None  # None: follow the latest sample step
        self._polling = False
        self._poll_again = False
        self._gpu_at = 0.0
        self._drawn: tuple | None = None
        self._log_for: str | None = None
        self._log_seen = 0
        self.log_lines: list[str] = []  # the log as shown (the widget wraps them)
        self._ckpts_drawn: tuple | None = None
        self._stop_armed: tuple[str, float] | None = None

    # --- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="train-head"):
            yield Static("no runs yet", id="train-run")
            yield ProgressBar(id="train-progress", show_eta=False)
            yield Static("", id="train-eta")
        with TabbedContent(id="train-views", initial="tv-runs"):
            with TabPane("Runs", id="tv-runs"):
                yield RunTable(id="train-runs")
                yield Static(self._runs_help(), id="train-runs-help", classes="muted")
            with TabPane("Monitor", id="tv-monitor"):
                yield Static("select a run in Runs (r)", id="train-stats")
                with Horizontal(id="train-charts"):
                    yield SeriesChart("loss", empty="no steps yet", id="chart-loss")
                    yield SeriesChart("learning rate", empty="no steps yet", y_format="{:.1e}", id="chart-lr")
            with TabPane("Samples", id="tv-samples"):
                yield SampleStrip(id="train-samples")
            with TabPane("Checkpoints", id="tv-checkpoints"):
                yield DataTable(id="train-ckpts", cursor_type="row", zebra_stripes=True)
            with TabPane("Log", id="tv-log"):
                # wrapped, not cut at 80 columns; plain text (a log line is never read as markup)
                yield RichLog(id="train-log", max_lines=2000, wrap=True, min_width=1, markup=False)
            with TabPane("Compare", id="tv-compare"):
                yield Static("", id="compare-head")
                with Horizontal(id="compare-body"):
                    yield DataTable(id="compare-diff", cursor_type="row", zebra_stripes=True)
                    yield SeriesChart("smoothed loss", empty="no steps yet", id="chart-compare")
            with TabPane("New run", id="tv-new"):
                yield RunForm(self.project, id="train-form")
            with TabPane("Queue", id="tv-queue"):
                yield QueueView(id="train-queue")
            with TabPane("Sweeps", id="tv-sweeps"):
                yield SweepView(self.project, id="train-sweeps")

    def _runs_help(self) -> str:
        return (
            "enter: monitor  ·  b: compare with  ·  x x: stop  ·  R: resume  ·  n: new run  ·  "
            "lorawb watch RUN follows a run without the app"
        )

    def on_mount(self) -> None:
        self.query_one("#train-ckpts", DataTable).add_columns("step", "file", "size", "written")
        self.query_one("#compare-diff", DataTable).add_columns("setting", "A", "B")
        self.query_one("#train-progress", ProgressBar).display = False
        self.set_interval(POLL_INTERVAL, self._tick)

    def focus_target(self) -> Widget | None:
        pane = self.query_one("#train-views", TabbedContent).active
        targets = {
            "tv-runs": "#train-runs",
            "tv-checkpoints": "#train-ckpts",
            "tv-log": "#train-log",
            "tv-queue": "#queue-table",
            "tv-sweeps": "#sweep-rank",
        }
        if pane in targets:
            return self.query_one(targets[pane])
        if pane == "tv-compare":
            return self.query_one("#compare-diff")
        if pane == "tv-new":
            return self.query_one(RunForm).focus_target()
        # Views without a focusable widget focus their tab strip: keys keep reaching this tab.
        return self.query_one("#train-views", TabbedContent).query_one(Tabs)

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Train: new run", "Open the run form", lambda: self.action_view("new"))
        yield SystemCommand("Train: stop the selected run", "It saves a checkpoint and its state", self._stop_now)
        yield SystemCommand("Train: resume the selected run", "Continue a stopped run", self.action_resume)
        yield SystemCommand("Train: compare runs", "Config diff and loss overlay", lambda: self.action_view("compare"))
        yield SystemCommand("Train: run log", "The selected run's train.log", lambda: self.action_view("log"))
        yield SystemCommand(
            "Train: job queue", "This machine's queue: reorder, pause, cancel", lambda: self.action_view("queue")
        )
        yield SystemCommand(
            "Train: sweeps", "One-change sweeps ranked, best setting and checkpoint", lambda: self.action_view("sweeps")
        )

    # --- polling ----------------------------------------------------------------
    def _shown(self) -> bool:
        """On screen: every ancestor displayed and, in each tab switcher, ours the current pane."""
        node: Widget | None = self
        while node is not None and node is not self.screen:
            parent = node.parent
            if not node.display:
                return False
            # At start-up the switchers have not hidden their other panes yet: ask them.
            if isinstance(parent, ContentSwitcher) and parent.current != node.id:
                return False
            node = parent  # type: ignore[assignment]
        return self.is_mounted

    def on_show(self) -> None:
        self.request_poll()

    def on_runs_changed(self, msg: RunsChanged) -> None:
        """The file watcher saw run folders appear or change: show them now, not at the next tick."""
        self.request_poll()

    def _tick(self) -> None:
        self.request_poll()

    def request_poll(self) -> None:
        """Poll now, or right after the poll in flight (never two at once); never while hidden."""
        if not self._shown():
            return
        if self._polling:
            self._poll_again = True
            return
        view = self._active_view()
        if view == "queue":
            self.query_one(QueueView).request()
        elif view == "sweeps":
            self.query_one(SweepView).request()
        self._polling = True
        self._poll_again = False
        pair = self._compare_pair() if view == "compare" else None
        want_gpu = time.monotonic() - self._gpu_at >= GPU_EVERY
        if want_gpu:
            self._gpu_at = time.monotonic()
        self._poll(self.selected, self.smoothing, pair, want_gpu)

    @work(thread=True, group="train-poll", exit_on_error=False)
    def _poll(self, selected: str | None, smoothing: float, pair: tuple[str, str] | None, want_gpu: bool) -> None:
        rows: list[RunRow] = []
        view = comparison = None
        gpu = self.gpu
        error = None
        try:
            self.board.discover()
            self.board.set_smoothing(smoothing)
            m = self.board.monitor(selected) if selected else None
            if m is not None:
                m.catch_up(budget_s=0.25)  # the run on screen gets the lion's share
            for other in self.board.monitors:
                if other is not m:
                    other.poll()
            rows = self.board.rows()
            if m is not None:
                view = m.snapshot(points=CHART_POINTS)
            if pair is not None:
                ma, mb = self.board.monitor(pair[0]), self.board.monitor(pair[1])
                if ma is not None and mb is not None:
                    mb.catch_up(budget_s=0.25)
                    comparison = compare_runs(ma, mb, points=CHART_POINTS)
            if want_gpu:
                gpu = gpu_stats()
        except (OSError, LorawbError) as exc:
            error = str(exc)
        self.post_message(self.Polled(rows, view, comparison, gpu, error, self.board.pending))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A bug in a worker must not freeze the monitor: say so, and let the next tick poll again."""
        if event.state != WorkerState.ERROR or event.worker.group not in WORKER_GROUPS:
            return
        if event.worker.group == "train-poll":
            self._polling = False
        self.notify(f"{event.worker.error!r}", title="Train tab error", severity="error", timeout=8)

    def on_train_tab_polled(self, msg: Polled) -> None:
        self._polling = False
        if msg.error:
            self.notify(msg.error, severity="error", timeout=6)
        self.rows = msg.rows
        self.gpu = msg.gpu
        table = self.query_one(RunTable)
        table.update_rows(msg.rows, self.compare_with)
        if self.selected is not None and self.selected not in table.rows_by_id:
            self.selected = None
        if self.selected is None and msg.rows:
            self._select(table.cursor_run or msg.rows[0].run_id)
        elif not msg.rows:
            self._show_empty()
        if msg.view is not None and msg.view.run_id == self.selected:
            self._show_view(msg.view)
        if msg.comparison is not None:
            self._show_comparison(msg.comparison)
        if msg.more or self._poll_again:
            self.request_poll()

    # --- selection --------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#train-runs")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value and event.row_key.value != self.selected:
            self._select(event.row_key.value)

    @on(DataTable.RowSelected, "#train-runs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self._select(event.row_key.value)
        self.action_view("monitor")

    def select_run(self, run_id: str) -> None:
        """Show ``run_id`` in the monitor (e.g. the run just started)."""
        self._select(run_id)
        self.query_one(RunTable).move_to(run_id)

    def _select(self, run_id: str | None) -> None:
        if run_id == self.selected:
            return
        self.selected = run_id
        self.sample_pos = None
        self.view = None
        self._drawn = None
        self.query_one("#train-run", Static).update(Text(run_id or "", style="bold"))
        self.request_poll()

    def _compare_pair(self) -> tuple[str, str] | None:
        if self.selected is None:
            return None
        ids = [r.run_id for r in self.rows]
        other = self.compare_with if self.compare_with in ids and self.compare_with != self.selected else None
        if other is None and self.selected in ids and len(ids) > 1:
            i = ids.index(self.selected)
            other = ids[i + 1] if i + 1 < len(ids) else ids[i - 1]  # the run before it, by default
        return (self.selected, other) if other else None

    # --- rendering ----------------------------------------------------------------
    def _show_empty(self) -> None:
        where = self.project.runs_dir.relative_to(self.project.root)
        self.query_one("#train-run", Static).update(Text(f"no runs yet in {where}/  ·  n: start one"))
        self.query_one("#train-progress", ProgressBar).display = False
        self.query_one("#train-eta", Static).update("")

    def _show_view(self, v: MonitorView) -> None:
        self.view = v
        self._show_head(v)
        self.query_one("#train-stats", Static).update(self._stats_text(v))
        key = (v.run_id, v.events, v.smoothing)
        if key != self._drawn:  # plotext rebuilds cost ~10 ms: only for new data
            self._drawn = key
            self._draw_charts(v)
            self._show_samples(v)
            self._show_checkpoints(v)
        self._show_log(v)

    def _show_head(self, v: MonitorView) -> None:
        head = Text.assemble((v.run_id, "bold"), "  ", (v.display_state, STATE_STYLES.get(v.display_state, "dim")))
        if v.display_state == "dead":
            head.append("  (process gone)", style="red")
        if v.display_state in ("dead", "stopped", "failed") and v.resumable_step is not None:
            head.append(f"  resumable from step {v.resumable_step} (R)", style="yellow")
        self.query_one("#train-run", Static).update(head)
        bar = self.query_one("#train-progress", ProgressBar)
        bar.display = bool(v.max_steps)
        if v.max_steps:
            bar.update(total=v.max_steps, progress=v.step)
        steps = f"step {v.step}/{v.max_steps}" if v.max_steps else f"step {v.step}"
        eta = f"  ETA {format_duration(v.eta)}" if v.eta is not None else ""
        self.query_one("#train-eta", Static).update(Text(f"{steps}{eta}"))

    def _stats_text(self, v: MonitorView) -> Text:
        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.4f}"

        t = Text()
        t.append(f"epoch {v.epoch}  ·  ")
        t.append("loss ", style="dim")
        t.append(f(v.loss), style="bold")
        t.append("  smoothed ", style="dim")
        t.append(f(v.loss_smooth), style="bold")
        t.append(f" (EMA {v.smoothing:g}, +/-)", style="dim")
        if v.val_loss is not None:
            t.append("  val ", style="dim")
            t.append(f(v.val_loss), style="bold")
        t.append("\n")
        t.append(f"lr {v.lr:.2e}  ·  " if v.lr is not None else "lr -  ·  ")
        if v.it_s:
            t.append(f"{v.it_s:.2f} it/s ({v.s_it:.2f} s/it)  ·  ")
        t.append(f"elapsed {format_duration(v.elapsed)}")
        if v.mem_gb is not None:
            t.append(f"  ·  trainer {v.mem_gb:.1f} GB")
        for g in self.gpu or ():
            t.append(f"  ·  GPU{g.index} {g.mem_used_gb:.1f}/{g.mem_total_gb:.0f} GB {g.util}%")
        if v.error:
            t.append("\n" + v.error, style="bold red")
        elif v.bad_lines:
            t.append(f"\n{plural(v.bad_lines, 'unreadable line')} in events.jsonl skipped", style="yellow")
        if v.skipped:
            names = ", ".join(f"{path} ({reason})" for path, reason in v.skipped[:3])
            more = f" and {len(v.skipped) - 3} more (l: log)" if len(v.skipped) > 3 else ""
            t.append(f"\n{plural(len(v.skipped), 'image')} skipped: {names}{more}", style="yellow")
        return t

    def _draw_charts(self, v: MonitorView) -> None:
        lines = [Line("loss", *v.loss_xy, "loss"), Line(f"EMA {v.smoothing:g}", *v.smooth_xy, "loss-smooth")]
        if v.val_xy[0]:
            lines.append(Line("val", *v.val_xy, "val-loss"))
        self.query_one("#chart-loss", SeriesChart).set_lines(lines)
        self.query_one("#chart-lr", SeriesChart).set_lines([Line("lr", *v.lr_xy, "lr")])

    def _show_samples(self, v: MonitorView) -> None:
        strip = self.query_one(SampleStrip)
        strip.trigger = self.project.trigger or ""
        if not v.samples:
            strip.show(None, 0, 0, True)
            return
        n = len(v.samples)
        pos = n - 1 if self.sample_pos is None else min(self.sample_pos, n - 1)
        strip.show(v.samples[pos], pos + 1, n, self.sample_pos is None)

    def _show_checkpoints(self, v: MonitorView) -> None:
        if v.checkpoints == self._ckpts_drawn:
            return
        self._ckpts_drawn = v.checkpoints
        table = self.query_one("#train-ckpts", DataTable)
        table.clear()
        for c in v.checkpoints:
            when = datetime.fromtimestamp(c.time).strftime("%m-%d %H:%M:%S") if c.time else "-"
            table.add_row(str(c.step), c.name, format_size(c.size), when, key=str(c.path))

    def _show_log(self, v: MonitorView) -> None:
        log = self.query_one("#train-log", RichLog)
        if self._log_for != v.run_id or v.log_total < self._log_seen:
            log.clear()
            self.log_lines = []
            self._log_for, self._log_seen = v.run_id, v.log_total
            self._write_log(log, v.log)
            return
        new = v.log_total - self._log_seen
        if new > 0:
            self._write_log(log, v.log[-new:] if new < len(v.log) else v.log)
            self._log_seen = v.log_total

    def _write_log(self, log: RichLog, lines: list[str]) -> None:
        for line in lines:
            log.write(Text(line))
        self.log_lines = (self.log_lines + list(lines))[-2000:]

    def _show_comparison(self, c: Comparison) -> None:
        self.comparison = c
        head = Text.assemble(
            ("A ", "dim"), (c.a, "bold"), ("  vs  B ", "dim"), (c.b, "bold"), ("   (b in Runs picks B)", "dim")
        )
        la, lb = c.loss_at_common
        if c.common_step and la is not None and lb is not None:
            head.append(f"\nsmoothed loss at step {c.common_step}: A {la:.4f}  B {lb:.4f}")
        ra, rb = c.regularisation
        if ra != rb:
            head.append(f"\nkept general by: A {ra}  B {rb}")
        for side, changes in zip("AB", c.changed, strict=True):
            for change in changes:
                head.append(f"\n{side} changed {change} (on resume)", style="yellow")
        n = len(c.diff)
        if n > 1:
            head.append(f"\n{n} settings differ: more than one change makes the effect hard to read", style="yellow")
        self.query_one("#compare-head", Static).update(head)
        table = self.query_one("#compare-diff", DataTable)
        table.clear()
        for key, a, b in c.diff:
            table.add_row(key, format_value(a), format_value(b), key=key)
        if not c.diff:
            table.add_row("(same config)", "", "")
        ca, cb = c.curves
        self.query_one("#chart-compare", SeriesChart).set_lines(
            [
                Line(f"A {short_id(ca.run_id)}", *ca.smooth, "loss"),
                Line(f"B {short_id(cb.run_id)}", *cb.smooth, "val-loss"),
            ]
        )

    # --- actions ----------------------------------------------------------------
    def _active_view(self) -> str:
        return self.query_one("#train-views", TabbedContent).active.removeprefix("tv-")

    def action_view(self, name: str) -> None:
        self.query_one("#train-views", TabbedContent).active = f"tv-{name}"
        target = self.focus_target()
        if target is not None:
            target.focus()
        self.request_poll()

    @on(TabbedContent.TabActivated, "#train-views")
    def _view_changed(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tv-new" and self._shown():
            self.query_one(RunForm).refresh_sources()
        self.request_poll()

    def action_smoothing(self, direction: int) -> None:
        steps = SMOOTHING_STEPS
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - self.smoothing))
        self.smoothing = steps[max(0, min(len(steps) - 1, i + direction))]
        self.notify(f"loss smoothing (EMA): {self.smoothing:g}", timeout=2)
        self.request_poll()

    def action_sample_step(self, delta: int) -> None:
        if self.view is None or not self.view.samples:
            return
        n = len(self.view.samples)
        pos = n - 1 if self.sample_pos is None else self.sample_pos
        pos = max(0, min(n - 1, pos + delta))
        self.sample_pos = None if pos == n - 1 and delta > 0 else pos
        self._show_samples(self.view)

    def action_sample_page(self, delta: int) -> None:
        """The next / previous page of the sample step's prompts (every prompt can be seen)."""
        self.query_one(SampleStrip).page_by(delta)

    def action_sample_latest(self) -> None:
        self.sample_pos = None
        if self.view is not None:
            self._show_samples(self.view)

    def action_mark_compare(self) -> None:
        run = self.query_one(RunTable).cursor_run
        if run is None:
            return
        self.compare_with = None if self.compare_with == run else run
        self.notify(f"compare with {run}" if self.compare_with else "compare mark cleared", timeout=3)
        self.query_one(RunTable).update_rows(self.rows, self.compare_with)

    def _selected_run(self) -> RunFolder | None:
        if self.selected is None:
            self.notify("no run selected", severity="warning")
            return None
        return RunFolder(self.project.runs_dir / self.selected)

    def action_stop(self) -> None:
        """x twice: a stop is not undoable, and x sits next to keys used all the time."""
        run = self._selected_run()
        if run is None:
            return
        if self.view is None or not self.view.alive:
            self.notify(f"{run.id} is not running", severity="warning")
            return
        now = time.monotonic()
        if self._stop_armed and self._stop_armed[0] == run.id and now - self._stop_armed[1] < 3:
            self._stop_armed = None
            self._stop_now()
        else:
            self._stop_armed = (run.id, now)
            self.notify(f"press x again to stop {run.id} (it saves a checkpoint and its resume state)", timeout=3)

    def _stop_now(self) -> None:
        run = self._selected_run()
        if run is not None:
            self._stop_worker(run)

    @work(thread=True, group="train-control", exit_on_error=False)
    def _stop_worker(self, run: RunFolder) -> None:
        from lorawb.queue import stop_folder
        from lorawb.train.process import stop_run

        try:
            if stop_folder(run.path) is None:  # a queue job is stopped through the queue (on Slurm: scancel)
                stop_run(run)
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.notify, f"asked {run.id} to stop: it saves, then ends", timeout=4)

    def action_resume(self) -> None:
        run = self._selected_run()
        if run is None:
            return
        if self.view is not None and self.view.alive:
            self.notify(f"{run.id} is still running", severity="warning")
            return
        self._resume_worker(run)

    @work(thread=True, group="train-control", exit_on_error=False)
    def _resume_worker(self, run: RunFolder) -> None:
        from lorawb.train.process import resume_run

        try:
            resumed = resume_run(run, detach=True)
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self._started, resumed, "resumed")

    def _started(self, run: RunFolder, verb: str = "started") -> None:
        self.notify(f"{verb} {run.id} (a separate process: closing the app leaves it running)", timeout=5)
        self.board.discover()
        self.select_run(run.id)
        self.action_view("monitor")

    def on_run_form_started(self, msg: RunForm.Started) -> None:
        self._started(msg.run)
