"""The new-run form: the most used settings as fields over the full TOML, which stays editable.

Prefilled from the newest run (or any earlier run, or lorawb.toml: the "from" selector); the
"preset" selector writes a set of memory settings (e.g. "SDXL 12 GB") into the TOML.
Each field says when it differs from that source, and the form warns when more than one
setting changed. Problems show in the form as the values are typed: the field (or the
TOML line) and what is expected. Under them, the memory plan of the settings (lorawb.train.memplan:
the predicted peak GPU memory and what makes it fit the card) follows every change, computed in
a worker. ctrl+s (or the button) launches a detached run.
The logic lives in lorawb.train.form; this widget only shows it.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, TabbedContent, Tabs, TextArea
from textual.worker import Worker, WorkerState

from lorawb.core.project import Project
from lorawb.errors import ConfigError, LorawbError
from lorawb.train import form as F
from lorawb.train.compare import format_value
from lorawb.train.config import where
from lorawb.train.runfolder import RunFolder


def _field_id(key: str) -> str:
    return "f-" + key.replace(".", "-")


class RunForm(VerticalScroll):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start run", priority=True),
        Binding("escape", "leave", "Leave form", show=False),
    ]

    class Started(Message):
        def __init__(self, run: RunFolder) -> None:
            super().__init__()
            self.run = run

    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project
        self.sources: list[F.Source] = []
        self.source: F.Source | None = None
        self.diff: list = []
        self.error: ConfigError | None = None
        self._starting = False
        self._model_path: str | None = None  # the TOML's model.path, to notice a new model
        self._plan_timer: Any = None  # the pending memory plan (typing restarts it)

    def compose(self) -> ComposeResult:
        with Horizontal(id="form-top"):
            yield Label("from", classes="form-label")
            yield Select([], id="form-source", allow_blank=True, prompt="lorawb.toml", compact=True)
            yield Label("name", classes="form-label")
            yield Input(placeholder="optional run name", id="form-name", compact=True)
            yield Select(
                [(p.name, i) for i, p in enumerate(F.PRESETS)],
                id="form-preset",
                allow_blank=True,
                prompt="preset",
                compact=True,
                tooltip="\n".join(f"{p.name}: {p.help}" for p in F.PRESETS),
            )
        yield Static("", id="form-status")
        yield Static("", id="form-plan")
        with Grid(id="form-fields"):
            for f in F.FIELDS:
                with Horizontal(classes="form-field"):
                    yield Label(f.label, classes="form-label")
                    yield Input(id=_field_id(f.key), tooltip=f"{f.key}: {f.help}", classes="form-input", compact=True)
                    yield Static("", id=_field_id(f.key) + "-mark", classes="form-mark")
        yield Label("sample prompts, one per line ({trigger} becomes the trigger)", classes="form-heading")
        yield TextArea(id="form-prompts", soft_wrap=True, show_line_numbers=False, compact=True)
        yield Static("", id=_field_id(F.PROMPTS_KEY) + "-mark", classes="form-mark")
        yield Label("full config (TOML); every key can be edited here", classes="form-heading")
        yield TextArea(id="form-toml", soft_wrap=False, show_line_numbers=True, compact=True)
        yield Button("Start run (ctrl+s)", id="form-start", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.reload_sources()

    def focus_target(self) -> Widget:
        return self.query_one(_field_id_selector(F.FIELDS[0].key), Input)

    def action_leave(self) -> None:
        """Out of the fields onto the view tabs, where single-letter keys work again."""
        self.query_ancestor(TabbedContent).query_one(Tabs).focus()

    # --- sources ---------------------------------------------------------------------
    def reload_sources(self, keep: str | None = None) -> None:
        """Re-read the runs (newest first) and prefill from ``keep`` or the newest run."""
        self.sources, problems = F.prefill_sources(self.project)
        for p in problems:
            self.notify(p, title="run config not usable", severity="warning", timeout=6, markup=False)
        for exc in self.sources[-1].errors:  # lorawb.toml's own problems, as the CLI reports them
            self.notify(exc.render(), title="lorawb.toml has an error", severity="error", timeout=10, markup=False)
        select = self.query_one("#form-source", Select)
        with self.prevent(Select.Changed):
            select.set_options([(s.label, i) for i, s in enumerate(self.sources)])
        wanted = next((i for i, s in enumerate(self.sources) if s.label == keep), 0)
        with self.prevent(Select.Changed):
            select.value = wanted
        self.prefill(self.sources[wanted])

    def refresh_sources(self) -> None:
        """Pick up runs started since (from the CLI too). An edited form keeps its source and edits."""
        labels = [s.label for s in self.sources]
        fresh, _ = F.prefill_sources(self.project)
        if [s.label for s in fresh] == labels:
            return
        if not self.diff and self.error is None:
            self.reload_sources()
            return
        keep = self.source.label if self.source else None
        self.sources = fresh
        select = self.query_one("#form-source", Select)
        with self.prevent(Select.Changed):
            select.set_options([(s.label, i) for i, s in enumerate(fresh)])
            select.value = next((i for i, s in enumerate(fresh) if s.label == keep), 0)

    @on(Select.Changed, "#form-source")
    def _source_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int) and 0 <= event.value < len(self.sources):
            self.prefill(self.sources[event.value])

    @on(Select.Changed, "#form-preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        """Write a memory preset's settings into the TOML (the fields and checks follow)."""
        if not isinstance(event.value, int) or not 0 <= event.value < len(F.PRESETS):
            return
        preset = F.PRESETS[event.value]
        try:
            text = F.apply_preset(self.toml_text, preset)
        except Exception:  # the TOML has a syntax error: nothing can be written into it
            self._show_error(ConfigError("fix the TOML below first: it has a syntax error"))
            return
        self._set_toml(text)
        self.refresh_checks()
        self.notify(preset.help, title=f"preset {preset.name}", timeout=5)

    def prefill(self, source: F.Source) -> None:
        with self.prevent(Select.Changed):
            self.query_one("#form-preset", Select).clear()
        self.source = source
        self._set_toml(source.toml())
        self.refresh_checks()

    # --- sync fields <-> TOML --------------------------------------------------------
    # Programmatic updates run inside prevent(...): the Changed messages they would post are
    # dropped, so a field written from the TOML is not written back into the TOML (which would
    # reload the text area under the person typing in it).
    def _set_toml(self, text: str) -> None:
        with self.prevent(Input.Changed, TextArea.Changed):
            self.query_one("#form-toml", TextArea).load_text(text)
            data = F.parse_toml(text)
            self._model_path = F.get_dotted(data, "model.path", "")
            self._fields_from(data)

    def _fields_from(self, data: dict) -> None:
        with self.prevent(Input.Changed, TextArea.Changed):
            for f in F.FIELDS:
                inp = self.query_one(_field_id_selector(f.key), Input)
                value = F.format_field(F.get_dotted(data, f.key))
                if inp.value != value and not _same_number(inp.value, value):
                    inp.value = value
            prompts = F.get_dotted(data, F.PROMPTS_KEY, [])
            text = "\n".join(str(p) for p in prompts) if isinstance(prompts, list) else str(prompts)
            area = self.query_one("#form-prompts", TextArea)
            if _prompt_lines(area.text) != _prompt_lines(text):
                area.load_text(text)

    @on(Input.Changed, ".form-input")
    def _field_changed(self, event: Input.Changed) -> None:
        field = next(f for f in F.FIELDS if _field_id(f.key) == event.input.id)
        try:
            value = F.parse_field(field, event.value)
        except ValueError as exc:
            self._show_error(ConfigError(f"{field.key}: {exc}"))
            return
        self._write_key(field.key, value)

    @on(TextArea.Changed, "#form-prompts")
    def _prompts_changed(self, event: TextArea.Changed) -> None:
        self._write_key(F.PROMPTS_KEY, _prompt_lines(event.text_area.text))

    @on(TextArea.Changed, "#form-toml")
    def _toml_changed(self, _event: TextArea.Changed) -> None:
        try:
            data = F.parse_toml(self.toml_text)
        except ConfigError as exc:
            self._show_error(exc)
            return
        if self._follow_model(data):
            return  # the TOML was rewritten; its own Changed message comes next
        self._fields_from(data)
        self.refresh_checks()

    def _follow_model(self, data: dict) -> bool:
        """A new model.path: resolution and bucket step follow the model's recommendation (said so)."""
        path = F.get_dotted(data, "model.path", "")
        before, self._model_path = self._model_path, path
        if not path or before is None or path == before:
            return False
        changes, rec = F.model_changes(data, path, self.project)
        if rec is None or not changes:
            return False
        text = self.toml_text
        for key, value in changes.items():
            text = F.set_in_toml(text, key, value)
        self.query_one("#form-toml", TextArea).load_text(text)
        said = ", ".join(f"{k} = {v}" for k, v in changes.items())
        self.notify(f"{said}: the model's recommendation ({rec.source})", title="model changed", markup=False)
        return True

    def _write_key(self, key: str, value) -> None:
        text = self.toml_text
        try:
            if F.get_dotted(F.parse_toml(text), key, object()) == value:
                self.refresh_checks()
                return
            text = F.set_in_toml(text, key, value)
        except Exception:  # the TOML has a syntax error: the field cannot be written into it
            self._show_error(ConfigError("fix the TOML below first: it has a syntax error"))
            return
        with self.prevent(TextArea.Changed):
            area = self.query_one("#form-toml", TextArea)
            scroll = area.scroll_offset
            area.load_text(text)
            area.scroll_to(scroll.x, scroll.y, animate=False)
        self.refresh_checks()

    @property
    def toml_text(self) -> str:
        return self.query_one("#form-toml", TextArea).text

    # --- checks ----------------------------------------------------------------------
    def refresh_checks(self) -> None:
        """Validate the whole config and mark the fields that differ from the source."""
        text = self.toml_text
        try:
            F.validate(text, self.project)
            self.error = None
        except ConfigError as exc:
            self.error = exc
        self.diff = F.differences(text, self.source, self.project) if self.source else []
        changed = {r.key: r for r in self.diff}
        source = self.source.label if self.source else "?"
        for key in [*(f.key for f in F.FIELDS), F.PROMPTS_KEY]:
            mark = self.query_one(_field_id_selector(key) + "-mark", Static)
            row = changed.get(key)
            mark.update(Text(f"≠ {format_value(row.a)}") if row else "")
            mark.tooltip = f"differs from {source}" if row else None
        bad = F.error_key(self.error) if self.error else None
        for f in F.FIELDS:
            self.query_one(_field_id_selector(f.key), Input).set_class(f.key == bad, "-invalid")
        self._show_status()
        self._plan_later()

    # --- the memory plan ---------------------------------------------------------------
    def _plan_later(self) -> None:
        """Plan the settings once typing pauses (a plan builds the model on the meta device: ~0.1-1 s)."""
        if self._plan_timer is not None:
            self._plan_timer.stop()
        if self.error is not None:
            self.query_one("#form-plan", Static).update(Text("memory plan: fix the settings first"))
            return
        self._plan_timer = self.set_timer(0.4, self._plan_now)

    def _plan_now(self) -> None:
        self._plan_timer = None
        try:
            config = F.validate(self.toml_text, self.project)
        except ConfigError:
            return
        preset = self.query_one("#form-preset", Select).value
        budget = F.PRESETS[preset].gpu_gb if isinstance(preset, int) and 0 <= preset < len(F.PRESETS) else None
        self._plan(config, budget or None)

    @work(thread=True, group="form-plan", exclusive=True, exit_on_error=False)
    def _plan(self, config, budget: float | None) -> None:
        from lorawb.train import memplan

        line = memplan.one_line(config, budget)
        self.app.call_from_thread(self.query_one("#form-plan", Static).update, Text(line))

    def _show_error(self, exc: ConfigError) -> None:
        self.error = exc
        bad = F.error_key(exc)
        for f in F.FIELDS:
            self.query_one(_field_id_selector(f.key), Input).set_class(f.key == bad, "-invalid")
        self._show_status()

    def _show_status(self) -> None:
        status = self.query_one("#form-status", Static)
        source = self.source.label if self.source else "?"
        n = len(self.diff)
        status.set_class(self.error is not None, "-error")
        status.set_class(self.error is None and n > 1, "-warning")
        known = self._source_error(self.error)
        if known is not None:
            status.update(Text(f"✗ {where(known)}: {known.message} (fix it below or in lorawb.toml)"))
        elif self.error is not None:
            line = f" (TOML line {self.error.line})" if self.error.line else ""
            status.update(Text(f"✗ {self.error.message}{line}"))
        elif n == 0:
            status.update(Text(f"same settings as {source}: change one to learn what it does"))
        elif n == 1:
            status.update(Text(f"1 setting differs from {source}: {self.diff[0].key}"))
        else:
            keys = ", ".join(r.key for r in self.diff[:4]) + (" ..." if n > 4 else "")
            status.update(
                Text(f"⚠ {n} settings differ from {source} ({keys}): one change at a time shows what each does")
            )

    def _source_error(self, error: ConfigError | None) -> ConfigError | None:
        """The source's own error (lorawb.toml, with its file and line) that the form's error is."""
        if error is None or self.source is None:
            return None
        key = F.error_key(error)
        return next((e for e in self.source.errors if key and F.error_key(e) == key), None)

    # --- start -----------------------------------------------------------------------
    @on(Button.Pressed, "#form-start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        if self._starting:
            return
        try:
            config = F.validate(self.toml_text, self.project)
        except ConfigError as exc:
            self._show_error(exc)
            self.notify(str(exc), title="the run was not started", severity="error")
            return
        self._starting = True
        self.query_one("#form-start", Button).disabled = True
        self._start(config, self.query_one("#form-name", Input).value.strip())

    @work(thread=True, group="train-start", exit_on_error=False)
    def _start(self, config, name: str) -> None:
        from lorawb.train.process import start_run

        try:
            run = start_run(self.project, config, detach=True, name=name)
        except LorawbError as exc:
            self.app.call_from_thread(self._start_failed, exc)
            return
        self.app.call_from_thread(self._start_done, run)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Anything but a LorawbError is a bug: report it and let the person try again.
        if event.worker.group == "form-plan" and event.state == WorkerState.ERROR:
            event.stop()  # the plan is a courtesy: say why it is missing, never stop the form
            self.query_one("#form-plan", Static).update(Text(f"memory plan: {event.worker.error}"))
            return
        if event.worker.group == "train-start" and event.state == WorkerState.ERROR:
            event.stop()
            self._start_failed(event.worker.error)

    def _start_failed(self, exc: BaseException | None) -> None:
        self._starting = False
        self.query_one("#form-start", Button).disabled = False
        self.notify(str(exc), title="the run was not started", severity="error")

    def _start_done(self, run: RunFolder) -> None:
        self._starting = False
        self.query_one("#form-start", Button).disabled = False
        self.post_message(self.Started(run))
        self.reload_sources(keep=run.id)


def _field_id_selector(key: str) -> str:
    return "#" + _field_id(key)


def _prompt_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _same_number(a: str, b: str) -> bool:
    """'1e-4' and '0.0001' are the same value: don't rewrite what the person typed."""
    try:
        return float(a) == float(b)
    except ValueError:
        return False
