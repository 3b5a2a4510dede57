"""The Train tab's Queue view: this machine's job queue (every project's), with keys to reorder,
pause and cancel.

The table is read in a thread worker (lorawb.queue.rows: state, lane, progress, ETA) whenever
the Train tab polls with this view on screen; every change goes through lorawb.queue (under the
queue's lock, in a thread worker), then the table is read again. The widget never starts jobs
itself: the queue runner does, in its own process.
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

from lorawb.errors import LorawbError
from lorawb.queue.rows import QueueRow, RowMaker
from lorawb.train.monitor import format_duration
from lorawb.tui.widgets.train_runs import STATE_STYLES

COLUMNS = ("id", "pos", "state", "where", "progress", "ETA", "job")
QUEUE_STYLES = {**STATE_STYLES, "queued": "", "cancelled": "dim"}


def eta_text(row: QueueRow) -> str:
    if row.state == "queued":
        return "in " + format_duration(row.starts_in) if row.starts_in is not None else "-"
    return format_duration(row.eta)


class QueueTable(DataTable):
    """Jobs in queue order (running first, as the queue keeps them). Row keys are job ids."""

    BINDINGS = [
        Binding("K,shift+up", "move(-1)", "Move up"),
        Binding("J,shift+down", "move(1)", "Move down"),
        Binding("P", "pause", "Pause/resume queue"),
        Binding("x", "cancel", "Cancel (x x)"),
    ]

    class Act(Message):
        """A key asked for a change: ``what`` is move, pause or cancel."""

        def __init__(self, what: str, job_id: str | None, arg: int = 0) -> None:
            super().__init__()
            self.what, self.job_id, self.arg = what, job_id, arg

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_by_id: dict[str, QueueRow] = {}
        self._cancel_armed: tuple[str, float] | None = None

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    @property
    def cursor_job(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def show(self, rows: list[QueueRow]) -> None:
        keep = self.cursor_job
        self.clear()
        self.rows_by_id = {r.id: r for r in rows}
        for r in rows:
            title = f"{r.title} · {r.project}" + (f" (after {r.after})" if r.after and r.state == "queued" else "")
            self.add_row(
                r.id,
                str(r.position or ""),
                Text(r.state, style=QUEUE_STYLES.get(r.state, "dim")),
                r.where,
                r.progress,
                eta_text(r),
                Text(title),
                key=r.id,
            )
        if keep in self.rows_by_id:
            self.move_cursor(row=self.get_row_index(keep))

    def action_move(self, delta: int) -> None:
        job = self.cursor_job
        row = self.rows_by_id.get(job or "")
        if row is None or row.position is None:
            self.app.notify("only queued jobs move", severity="warning", timeout=3)
            return
        self.post_message(self.Act("move", job, max(1, row.position + delta)))

    def action_pause(self) -> None:
        self.post_message(self.Act("pause", None))

    def action_cancel(self) -> None:
        """x twice: a cancelled run is not started again."""
        job = self.cursor_job
        if job is None:
            return
        now = time.monotonic()
        if self._cancel_armed and self._cancel_armed[0] == job and now - self._cancel_armed[1] < 3:
            self._cancel_armed = None
            self.post_message(self.Act("cancel", job))
        else:
            self._cancel_armed = (job, now)
            self.app.notify(f"press x again to cancel job {job}", timeout=3)


class QueueView(Vertical):
    """The queue's head line, its table and what the keys do."""

    DEFAULT_CSS = """
    QueueView { height: 1fr; }
    #queue-head { height: auto; }
    #queue-table { height: 1fr; }
    #queue-help { height: auto; }
    """

    class Loaded(Message):
        def __init__(self, rows: list[QueueRow], paused: bool, runner: bool, error: str | None) -> None:
            super().__init__()
            self.rows, self.paused, self.runner, self.error = rows, paused, runner, error

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.maker = RowMaker()
        self.paused = False
        self._loading = False
        self._again = False

    def compose(self) -> ComposeResult:
        yield Static("", id="queue-head")
        yield QueueTable(id="queue-table")
        yield Static(
            "K/J move · P pause/resume · x x cancel · every project's jobs on this machine (lorawb queue)",
            id="queue-help",
            classes="muted",
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "train-queue" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self._loading = False  # the Train tab says what went wrong; the next poll reads again

    def request(self) -> None:
        """Read the queue now, or right after the read in flight (never two at once)."""
        if self._loading:
            self._again = True
            return
        self._loading, self._again = True, False
        self._load()

    @work(thread=True, group="train-queue", exit_on_error=False)
    def _load(self) -> None:
        from lorawb.queue import store
        from lorawb.queue.runner import runner_dir

        try:
            q = store.load()
            rows = self.maker.rows(q)
            self.post_message(self.Loaded(rows, q.paused, runner_dir().is_alive(), None))
        except (OSError, LorawbError) as exc:
            self.post_message(self.Loaded([], False, False, str(exc)))

    def on_queue_view_loaded(self, msg: Loaded) -> None:
        self._loading = False
        if self._again:
            self.request()
        if msg.error:
            self.query_one("#queue-head", Static).update(Text(msg.error, style="bold red"))
            return
        self.paused = msg.paused
        waiting = sum(r.state == "queued" for r in msg.rows)
        running = sum(r.state in ("running", "starting") for r in msg.rows)
        head = Text(f"{waiting} waiting · {running} running · runner {'on' if msg.runner else 'off'}")
        if msg.paused:
            head.append("  PAUSED (P resumes)", style="bold yellow")
        if not msg.rows:
            head.append(" · nothing queued (train --queue, sweep)", style="dim")
        self.query_one("#queue-head", Static).update(head)
        self.query_one(QueueTable).show(msg.rows)

    def on_queue_table_act(self, msg: QueueTable.Act) -> None:
        self._act(msg.what, msg.job_id, msg.arg)

    @work(thread=True, group="train-queue-act", exit_on_error=False)
    def _act(self, what: str, job_id: str | None, arg: int) -> None:
        from lorawb.queue import cancel, move, set_paused

        try:
            if what == "move" and job_id is not None:
                text = f"job {job_id} is now at position {move(job_id, arg)}"
            elif what == "pause":
                set_paused(not self.paused)
                text = "queue resumed" if self.paused else "queue paused: no new job starts (running ones go on)"
            elif job_id is not None:
                text = cancel(job_id)
            else:
                return
        except LorawbError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.app.notify, text, timeout=3)
        self.app.call_from_thread(self.request)
