"""The auto-tag dialog of the Captions and Triage tabs: run a local model, preview its change set, apply.

The tab hands in the scopes it can offer (the list shown, this image, the inbox). The
model runs in a thread worker with a progress bar; escape cancels it (what was read is
kept in the cache, so running again goes on from there). The preview is the change set's
diff with each tag's confidence under it; nothing is written until ctrl+s, and what is
written is one step of the caption history (u in the Captions tab undoes it).
"""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, ProgressBar, Select, Static
from textual.worker import Worker, get_current_worker

from lorawb.core import caption_history
from lorawb.core.config import TAG_MODES
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.tagger.plan import TagPlan, plan_tags, tagger_settings
from lorawb.tui.widgets.caption_modals import PREVIEW_FILES, diff_content
from lorawb.tui.workbench import workbench
from lorawb.words import plural

HELP = "F5 (or enter in a field): run the model · ctrl+s: apply · esc: cancel · tab: next field"
Scope = tuple[str, list[str]]  # (what the user reads, the images: relative to the project)


def preview_content(text: str) -> Content:
    """A tagger preview: the diff coloured as a bulk edit's, the model's lines (``#``) muted."""
    parts: list[Content] = []
    for line in text.splitlines(keepends=True):
        parts.append(Content.styled(line, "$text-muted") if line.startswith("#") else diff_content(line))
    return Content.assemble(*parts)


class TagScreen(ModalScreen["caption_history.ApplyResult | None"]):
    """Choose the images, the model and its rules; run; read the diff; apply (or not)."""

    DEFAULT_CSS = """
    TagScreen { align: center middle; }
    #tag-dialog { width: 100%; max-width: 120; height: 100%; max-height: 40;
                  border: round $accent; background: $surface; padding: 0 1; }
    #tag-title { text-style: bold; }
    #tag-dialog Horizontal { height: auto; }
    #tag-dialog .field { width: auto; padding: 0 1 0 0; color: $text-muted; }
    #tag-scope { width: 2fr; }
    #tag-mode { width: 1fr; }
    #tag-model { width: 1fr; }
    #tag-threshold, #tag-character, #tag-max { width: 8; }
    #tag-exclude { width: 1fr; }
    #tag-progress { height: 1; }
    #tag-summary { height: auto; }
    #tag-summary.error { color: $error; }
    #tag-diff-scroll { height: 1fr; border: round $panel; }
    #tag-buttons Button { margin: 0 1 0 0; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "apply", "Apply", priority=True),
        Binding("f5", "run", "Run"),
    ]

    def __init__(self, project: Project, scopes: list[Scope], *, scope: int = 0) -> None:
        super().__init__()
        self.project = project
        self.scopes = [s for s in scopes if s[1]]
        self.initial_scope = min(scope, max(0, len(self.scopes) - 1))
        self.plan: TagPlan | None = None
        self._planned: tuple[object, ...] | None = None
        self._tag_worker: Worker | None = None

    def compose(self) -> ComposeResult:
        cfg = self.project.config.tagger
        with Vertical(id="tag-dialog"):
            yield Static("Auto-tag: a local model proposes tags, you read the diff, then apply", id="tag-title")
            with Horizontal():
                yield Select(
                    [(f"{label} ({len(images)})", i) for i, (label, images) in enumerate(self.scopes)],
                    value=self.initial_scope,
                    allow_blank=False,
                    compact=True,
                    id="tag-scope",
                )
                yield Select(
                    [(m, m) for m in TAG_MODES], value=cfg.mode, allow_blank=False, compact=True, id="tag-mode"
                )
            with Horizontal():
                yield Static("model", classes="field")
                yield Input(
                    cfg.model,
                    placeholder="model folder, toyworld, or a [tagger.models] name",
                    compact=True,
                    id="tag-model",
                )
            with Horizontal():
                yield Static("threshold", classes="field")
                yield Input(str(cfg.threshold), type="number", compact=True, id="tag-threshold")
                yield Static(" character", classes="field")
                yield Input(str(cfg.character_threshold), type="number", compact=True, id="tag-character")
                yield Static(" max tags", classes="field")
                yield Input(str(cfg.max_tags), type="integer", compact=True, id="tag-max")
            with Horizontal():
                yield Static("exclude", classes="field")
                yield Input(
                    ", ".join(cfg.exclude),
                    placeholder="undesired tags, comma-separated",
                    compact=True,
                    id="tag-exclude",
                )
            yield ProgressBar(id="tag-progress", show_eta=True)
            yield Static(HELP, id="tag-summary")
            with VerticalScroll(id="tag-diff-scroll"):
                yield Static("", id="tag-diff")
            with Horizontal(id="tag-buttons"):
                yield Button("Run", id="tag-run-btn", compact=True)
                yield Button("Apply", id="tag-apply-btn", variant="primary", disabled=True, compact=True)
                yield Button("Close", id="tag-close-btn", compact=True)

    def on_mount(self) -> None:
        self.query_one(ProgressBar).display = False
        if not self.scopes:
            self._summary("no images to tag here", error=True)
            self.query_one("#tag-run-btn", Button).disabled = True
        # The mode is what one changes most (enter opens the list); with no model set, the model first.
        self.query_one("#tag-model" if not self.project.config.tagger.model else "#tag-mode").focus()

    # --- form -------------------------------------------------------------------------
    def _values(self) -> tuple[object, ...]:
        return (
            self.query_one("#tag-scope", Select).value,
            self.query_one("#tag-mode", Select).value,
            *(self.query_one(f"#tag-{k}", Input).value for k in ("model", "threshold", "character", "max", "exclude")),
        )

    def _summary(self, text: str, error: bool = False) -> None:
        s = self.query_one("#tag-summary", Static)
        s.update(Content(text))
        s.set_class(error, "error")

    @on(Select.Changed)
    @on(Input.Changed)
    def _invalidate(self, _event: object = None) -> None:
        if self._planned is not None and self._planned != self._values():
            self._planned = None
            self.query_one("#tag-apply-btn", Button).disabled = True
            self._summary("changed: run again (F5); the model's answers are cached")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#tag-run-btn")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#tag-apply-btn")
    def _apply_pressed(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#tag-close-btn")
    def _close_pressed(self) -> None:
        self.action_cancel()

    # --- run --------------------------------------------------------------------------
    def action_run(self) -> None:
        if not self.scopes or (self._tag_worker is not None and self._tag_worker.is_running):
            return
        values = self._values()
        scope, mode, model, threshold, character, max_tags, exclude = values
        try:
            settings = tagger_settings(
                self.project,
                model=str(model).strip(),
                mode=str(mode),
                threshold=_number(str(threshold), "threshold"),
                character_threshold=_number(str(character), "character threshold"),
                max_tags=int(_number(str(max_tags), "max tags")),
                exclude=[t.strip() for t in str(exclude).split(",") if t.strip()],
            )
        except LorawbError as exc:
            self._summary(str(exc), error=True)
            return
        images = self.scopes[int(scope)][1]  # type: ignore[call-overload]
        bar = self.query_one(ProgressBar)
        bar.display = True
        bar.update(total=len(images), progress=0)
        self._summary(f"opening {settings.model}…")
        self._tag_worker = self._run(settings, images, values)

    @work(thread=True, exclusive=True, group="tag-run")
    def _run(self, settings, images: list[str], values: tuple[object, ...]) -> None:
        worker = get_current_worker()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1 or done >= total:
                last[0] = now
                self.app.call_from_thread(self._progress, done, total)

        try:
            plan = plan_tags(self.project, images, settings, progress=progress, should_stop=lambda: worker.is_cancelled)
        except LorawbError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._show, plan, values)

    def _progress(self, done: int, total: int) -> None:
        self.query_one(ProgressBar).update(total=total, progress=done)
        self._summary(f"tagging {done}/{total}… (esc cancels)")

    def _failed(self, message: str) -> None:
        self.query_one(ProgressBar).display = False
        self._summary(message, error=True)

    def _show(self, plan: TagPlan, values: tuple[object, ...]) -> None:
        self.plan = plan
        self._planned = values
        cs = plan.changeset
        more = f" (diff of the first {PREVIEW_FILES})" if len(cs) > PREVIEW_FILES else ""
        self._summary(plan.summary() + more + (" · ctrl+s applies" if len(cs) else ""))
        text = plan.preview(limit=PREVIEW_FILES)
        empty = "nothing to change"
        if plan.settings.mode == "fill" and plan.run.predictions:
            empty += ": fill only captions images that have no caption; append or replace change the others"
        self.query_one("#tag-diff", Static).update(preview_content(text) if len(cs) or plan.run.skipped else empty)
        apply = self.query_one("#tag-apply-btn", Button)
        apply.disabled = not len(cs)
        if len(cs):
            apply.focus()

    # --- apply / close ----------------------------------------------------------------
    def action_apply(self) -> None:
        if self.plan is None or not len(self.plan.changeset) or self._planned != self._values():
            self._summary("run the model first (F5), then apply", error=self.plan is None)
            return
        self.query_one("#tag-apply-btn", Button).disabled = True
        self._apply(self.plan)

    @work(thread=True, exclusive=True, group="tag-apply")
    def _apply(self, plan: TagPlan) -> None:
        try:
            wb = workbench(self)
            result = wb.caption_writes().apply(plan.changeset, wb.author)  # the app's index learns it at once
        except LorawbError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self.dismiss, result)

    def action_cancel(self) -> None:
        if self._tag_worker is not None and self._tag_worker.is_running:
            self._tag_worker.cancel()
            self._summary("cancelling… what was read so far is kept")
            return
        self.dismiss(None)


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LorawbError(f"{what}: {text!r} is not a number") from None


def report_applied(widget: Widget, result: caption_history.ApplyResult | None) -> None:
    """After the dialog applied a change set: say what was written (and what was not), tell the other tabs."""
    if result is None:
        return
    widget.notify(
        f"{result.label}: wrote {plural(len(result.written), 'caption')} (u in the Captions tab undoes it)", timeout=6
    )
    if result.conflicts:
        first = result.conflicts[0]
        more = f" (and {len(result.conflicts) - 1} more)" if len(result.conflicts) > 1 else ""
        widget.notify(
            f"{len(result.conflicts)} left as they are on disk: {first.rel}: {first.reason}{more}",
            title="conflict",
            severity="warning",
            timeout=10,
        )
    workbench(widget).dataset_changed()
