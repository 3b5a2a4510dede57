"""The Train tab's Sweeps view: the project's one-change sweeps, ranked, with a chart of a score
against the checkpoint step per setting.

The report is read in a thread worker (lorawb.sweep.report, the same as `lorawb sweep report`)
at most every few seconds while the view is on screen; `[` `]` turn to the previous/next sweep,
`i` puts another score on the chart (identity − leak, identity, leak, prompt following).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.sweep.report import NAMES, SweepReport
from lorawb.tui.widgets.train_charts import Line, SeriesChart

METRICS = ("net", "identity", "leak", "prompt_following")
COLOURS = ("loss", "val-loss", "lr", "loss-smooth", "#87d787", "#d7d787")
EVERY = 3.0  # seconds between reads of the report while the view is shown


def _f(x: float | None, p: int = 2) -> str:
    return "-" if x is None else f"{x:.{p}f}"


class SweepTable(DataTable):
    BINDINGS = [
        Binding("left_square_bracket", "turn(-1)", "Previous sweep"),
        Binding("right_square_bracket", "turn(1)", "Next sweep"),
        Binding("i", "metric", "Chart score"),
    ]

    class Key(Message):
        def __init__(self, what: str, delta: int = 0) -> None:
            super().__init__()
            self.what, self.delta = what, delta

    def action_turn(self, delta: int) -> None:
        self.post_message(self.Key("turn", delta))

    def action_metric(self) -> None:
        self.post_message(self.Key("metric"))


class SweepView(Vertical):
    DEFAULT_CSS = """
    SweepView { height: 1fr; }
    #sweep-head { height: auto; }
    #sweep-verdict { height: auto; max-height: 4; }
    #sweep-rank { height: 1fr; }
    #sweep-chart { height: 1fr; }
    """

    class Loaded(Message):
        def __init__(self, names: list[str], report: SweepReport | None, error: str | None) -> None:
            super().__init__()
            self.names, self.report, self.error = names, report, error

    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project
        self.names: list[str] = []
        self.current: str | None = None
        self.metric = "net"
        self.report: SweepReport | None = None
        self._loading = False
        self._read_at = 0.0

    def compose(self) -> ComposeResult:
        yield Static("", id="sweep-head")
        yield Static("", id="sweep-verdict")
        yield SweepTable(id="sweep-rank", cursor_type="row", zebra_stripes=True)
        yield SeriesChart("identity − leak by checkpoint step", empty="no scores yet", id="sweep-chart")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "train-sweeps" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self._loading = False  # the Train tab says what went wrong; the next poll reads again

    def on_mount(self) -> None:
        self.query_one(SweepTable).add_columns("#", "setting", "ckpt", "w", "id", "leak", "net ± seeds")

    def request(self, force: bool = False) -> None:
        if self._loading or (not force and time.monotonic() - self._read_at < EVERY):
            return
        self._loading = True
        self._read_at = time.monotonic()
        self._load(self.current)

    @work(thread=True, group="train-sweeps", exit_on_error=False)
    def _load(self, current: str | None) -> None:
        from lorawb.sweep.plan import list_sweeps
        from lorawb.sweep.report import load_sweep_report

        try:
            names = [p.name for p in list_sweeps(self.project)]
            name = current if current in names else (names[-1] if names else None)
            report = load_sweep_report(self.project, name) if name else None
            self.post_message(self.Loaded(names, report, None))
        except (OSError, LorawbError) as exc:
            self.post_message(self.Loaded([], None, str(exc)))

    def on_sweep_view_loaded(self, msg: Loaded) -> None:
        self._loading = False
        head = self.query_one("#sweep-head", Static)
        if msg.error:
            head.update(Text(msg.error, style="bold red"))
            return
        self.names = msg.names
        self.report = msg.report
        if msg.report is None:
            head.update(Text("no sweeps yet · lorawb sweep NAME --vary train.learning_rate=1e-4,2e-4", style="dim"))
            return
        r = msg.report
        self.current = r.name
        where = f"{self.names.index(r.name) + 1}/{len(self.names)}" if r.name in self.names else ""
        vary = "; ".join(f"{k} = {', '.join(v)}" for k, v in r.vary.items())
        done = sum(e.matrix_state == "finished" for e in r.entries)
        text = Text.assemble((f"sweep {r.name}", "bold"), f" ({where}, [ ]) · {vary} · ")
        text.append(f"{done}/{len(r.entries)} matrices done")
        if r.scorer:
            text.append(f" · scores by the {r.scorer}", style="dim")
        head.update(text)
        verdict = Text(r.short_verdict())
        if r.beats_spread is False:
            verdict.stylize("yellow")
        self.query_one("#sweep-verdict", Static).update(verdict)
        self._show_table(r)
        self._show_chart()

    def _show_table(self, r: SweepReport) -> None:
        table = self.query_one(SweepTable)
        table.clear()
        for n, c in enumerate(r.candidates, 1):
            net = _f(c.net, 3) + (f" ± {c.spread:.3f}" if c.spread is not None else "")
            step = str(c.step) if c.step is not None else c.checkpoint
            label = Text(c.label + (" ⚠copies" if c.copies else ""), style="bold" if n == 1 else "")
            table.add_row(str(n), label, step, f"{c.weight:g}", _f(c.identity), _f(c.leak), net)
        if not r.candidates:
            table.add_row("", Text(r.reason, style="dim"), "", "", "", "", "")

    def _show_chart(self) -> None:
        chart = self.query_one("#sweep-chart", SeriesChart)
        if self.report is None:
            chart.set_lines([])
            return
        series = self.report.series(self.metric)
        lines = [
            Line(label, [p[0] for p in pts], [p[1] for p in pts], COLOURS[i % len(COLOURS)])
            for i, (label, pts) in enumerate(series.items())
        ]
        weight = self.report.best.weight if self.report.best else None
        title = f"{NAMES[self.metric]} by checkpoint step" + (f" at weight {weight:g}" if weight is not None else "")
        chart.set_lines(lines, title=title + "  (i: another score)")

    def on_sweep_table_key(self, msg: SweepTable.Key) -> None:
        if msg.what == "metric":
            self.metric = METRICS[(METRICS.index(self.metric) + 1) % len(METRICS)]
            self._show_chart()
            return
        if not self.names:
            return
        i = self.names.index(self.current) if self.current in self.names else len(self.names) - 1
        self.current = self.names[(i + msg.delta) % len(self.names)]
        self.request(force=True)
