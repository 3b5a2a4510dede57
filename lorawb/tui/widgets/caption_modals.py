"""Dialogs of the Captions tab: a bulk operation with its preview, and a save conflict.

BulkScreen never writes: it builds the change set (in a thread worker, from the
captions as they are on disk now), shows the count and the diff, and hands the
change set back to the tab when the user applies it. ConflictScreen asks what to
do with a caption that another program changed while it was being edited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static

from lorawb.core import caption_ops as co
from lorawb.core.characters import Character, characters_of
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.tui.workbench import workbench
from lorawb.words import plural

PREVIEW_FILES = 200  # diff shown for this many files; the count is always the full one


@dataclass(frozen=True)
class OpSpec:
    key: str
    title: str
    a: str = ""  # placeholder of the first argument ("" = none)
    b: str = ""
    positions: tuple[str, ...] = ()


OP_SPECS = {
    s.key: s
    for s in (
        OpSpec("add", "add tag", "tag to add", positions=("end", "start", "after-trigger")),
        OpSpec("remove", "remove tag", "tag to remove"),
        OpSpec("replace", "replace / rename tag", "old tag", "new tag"),
        OpSpec("move", "move tag", "tag to move", positions=("front", "back")),
        OpSpec("regex", "regex replace", "pattern (Python re)", "replacement (\\1 for groups)"),
        OpSpec("trigger", "set trigger (first in every caption)", "trigger"),
        OpSpec("rename-trigger", "rename trigger", "old trigger", "new trigger"),
        OpSpec("triggers", "lead with each image's triggers (several characters)"),
        OpSpec("dedupe", "dedupe tags"),
        OpSpec("sort", "sort tags (trigger first)"),
        OpSpec("strip", "strip empty tags"),
        OpSpec("utf8", "convert to UTF-8 (no BOM; the text unchanged)"),
    )
}


def make_operation(
    key: str, a: str, b: str, position: str, trigger: str, chars: Sequence[Character] = ()
) -> co.Operation:
    """The core operation for a form's values (raises CaptionError with a message for the user)."""
    return co.make_operation(key, a, b, position, trigger, chars)


def diff_content(diff: str) -> Content:
    """A unified diff coloured with the theme's $diff-add / $diff-del."""
    parts: list[Content] = []
    for line in diff.splitlines(keepends=True):
        if line.startswith(("+++", "---")):
            parts.append(Content.styled(line, "bold"))
        elif line.startswith("+"):
            parts.append(Content.styled(line, "$diff-add"))
        elif line.startswith("-"):
            parts.append(Content.styled(line, "$diff-del"))
        elif line.startswith("@@"):
            parts.append(Content.styled(line, "$text-muted"))
        else:
            parts.append(Content(line))
    return Content.assemble(*parts)


@dataclass(frozen=True)
class BulkEdit:
    """What the bulk dialog hands back: the previewed change set and the operation that made it."""

    changeset: co.ChangeSet
    operation: co.Operation | None


class BulkScreen(ModalScreen["BulkEdit | None"]):
    """Choose an operation, preview every file it changes, then apply (or not)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "apply", "Apply", priority=True),
        Binding("f5", "preview", "Preview"),
    ]

    def __init__(
        self,
        project: Project,
        images: list[str],
        scope_label: str,
        *,
        op: str = "add",
        a: str = "",
        b: str = "",
        run_preview: bool = False,
    ) -> None:
        super().__init__()
        self.project = project
        self.images = images
        self.scope_label = scope_label
        self.initial = (op if op in OP_SPECS else "add", a, b)
        self.run_preview = run_preview
        self.changeset: co.ChangeSet | None = None
        self.operation: co.Operation | None = None
        self._previewed: tuple[str, str, str, str] | None = None

    def compose(self) -> ComposeResult:
        op, a, b = self.initial
        with Vertical(id="bulk-dialog"):
            yield Static(
                Content(f"Bulk edit · {plural(len(self.images), 'image')} ({self.scope_label})"), id="bulk-title"
            )
            with Horizontal(id="bulk-form"):
                yield Select([(s.title, s.key) for s in OP_SPECS.values()], value=op, allow_blank=False, id="bulk-op")
                yield Select([("end", "end")], value="end", allow_blank=False, id="bulk-pos")
            with Horizontal(id="bulk-args"):
                yield Input(a, id="bulk-a")
                yield Input(b, id="bulk-b")
            yield Static("enter or F5: preview · ctrl+s: apply · esc: cancel", id="bulk-summary")
            with VerticalScroll(id="bulk-diff-scroll"):
                yield Static("", id="bulk-diff")
            with Horizontal(id="bulk-buttons"):
                yield Button("Preview", id="bulk-preview-btn")
                yield Button("Apply", id="bulk-apply-btn", variant="primary", disabled=True)
                yield Button("Cancel", id="bulk-cancel-btn")

    def on_mount(self) -> None:
        self._configure(self.initial[0])
        if self.run_preview:
            self.action_preview()
        else:
            first = self.query_one("#bulk-a", Input)
            (first if first.display else self.query_one("#bulk-op", Select)).focus()

    # --- form -----------------------------------------------------------------------
    def _configure(self, key: str) -> None:
        spec = OP_SPECS[key]
        a, b = self.query_one("#bulk-a", Input), self.query_one("#bulk-b", Input)
        a.placeholder, b.placeholder = spec.a, spec.b
        a.display, b.display = bool(spec.a), bool(spec.b)
        pos = self.query_one("#bulk-pos", Select)
        pos.display = bool(spec.positions)
        if spec.positions:
            pos.set_options([(p, p) for p in spec.positions])
            pos.value = spec.positions[0]

    def _values(self) -> tuple[str, str, str, str]:
        op = str(self.query_one("#bulk-op", Select).value)
        pos = self.query_one("#bulk-pos", Select)
        position = str(pos.value) if pos.display and not pos.is_blank() else ""
        return op, self.query_one("#bulk-a", Input).value, self.query_one("#bulk-b", Input).value, position

    @on(Select.Changed, "#bulk-op")
    def _op_changed(self, event: Select.Changed) -> None:
        self._configure(str(event.value))
        self._invalidate()

    @on(Select.Changed, "#bulk-pos")
    @on(Input.Changed)
    def _invalidate(self, _event: object = None) -> None:
        if self._previewed is not None and self._previewed != self._values():
            self._previewed = None
            self.changeset = None
            self.query_one("#bulk-apply-btn", Button).disabled = True
            self._summary("changed: preview again (enter)")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_preview()

    @on(Button.Pressed, "#bulk-preview-btn")
    def _preview_pressed(self) -> None:
        self.action_preview()

    @on(Button.Pressed, "#bulk-apply-btn")
    def _apply_pressed(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#bulk-cancel-btn")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def _summary(self, text: str, error: bool = False) -> None:
        s = self.query_one("#bulk-summary", Static)
        s.update(Content(text))
        s.set_class(error, "error")

    # --- preview / apply ----------------------------------------------------------------
    def action_preview(self) -> None:
        values = self._values()
        try:
            op = make_operation(*values, trigger=self.project.trigger, chars=characters_of(self.project.config))
        except LorawbError as exc:
            self._summary(str(exc), error=True)
            return
        self._summary("reading captions…")
        self._build(op, values)

    @work(thread=True, exclusive=True, group="bulk-preview")
    def _build(self, op: co.Operation, values: tuple[str, str, str, str]) -> None:
        try:
            # Read now, not from the tab's cache: the preview shows what is on disk at this moment;
            # the index says which images beside them are unreadable (named in the summary).
            files = co.read_captions(self.project.root, self.images)
            co.with_image_errors(files, workbench(self).index.snapshot())
            cs = co.build_changeset(self.project, op, files=files)
            cs.selection = self.scope_label
            diff = cs.diff(limit=PREVIEW_FILES)
        except LorawbError as exc:
            self.app.call_from_thread(self._summary, str(exc), True)
            return
        self.app.call_from_thread(self._show_preview, cs, diff, values, op)

    def _show_preview(
        self, cs: co.ChangeSet, diff: str, values: tuple[str, str, str, str], op: co.Operation | None = None
    ) -> None:
        self.changeset = cs
        self.operation = op
        self._previewed = values
        more = f" (diff of the first {PREVIEW_FILES} shown)" if len(cs) > PREVIEW_FILES else ""
        lossy = f"; {len(cs.lossy)} cannot keep their 8-bit encoding: written as UTF-8" if cs.lossy else ""
        self._summary(f"{cs.label}: {cs.counts(verb='would change')}{more}{lossy}")
        self.query_one("#bulk-diff", Static).update(diff_content(diff) if diff else "nothing to change")
        apply = self.query_one("#bulk-apply-btn", Button)
        apply.disabled = not len(cs)
        if len(cs):
            apply.focus()

    def action_apply(self) -> None:
        if self.changeset is None or not len(self.changeset) or self._previewed != self._values():
            self._summary("preview first (enter), then apply", error=self.changeset is None)
            return
        self.dismiss(BulkEdit(self.changeset, self.operation))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConflictScreen(ModalScreen[str | None]):
    """A caption changed on disk while being edited: keep mine / take theirs / compare."""

    BINDINGS = [
        Binding("m", "choose('mine')", "Keep mine"),
        Binding("t", "choose('theirs')", "Take theirs"),
        Binding("c", "compare", "Compare"),
        Binding("escape", "choose(None)", "Keep editing"),
    ]

    def __init__(self, rel: str, mine: str, theirs: str | None, reason: str) -> None:
        super().__init__()
        self.rel, self.mine, self.theirs, self.reason = rel, mine, theirs, reason
        self.comparing = False

    def compose(self) -> ComposeResult:
        with Vertical(id="conflict-dialog"):
            yield Static(Content(f"{self.rel}: {self.reason} since you opened it."), id="conflict-title")
            with VerticalScroll(id="conflict-body"):
                yield Static(self._texts(), id="conflict-text")
            with Horizontal(id="conflict-buttons"):
                yield Button("Keep mine (m)", id="conflict-mine", variant="warning")
                yield Button("Take theirs (t)", id="conflict-theirs", variant="primary")
                yield Button("Compare (c)", id="conflict-compare")

    def _texts(self) -> Content:
        theirs = "(deleted)" if self.theirs is None else self.theirs
        if self.comparing:
            change = co.Change(self.rel, self.rel, Path(self.rel), self.theirs, self.mine)
            diff = co.change_diff(change).replace("a/", "on disk: ", 1).replace("b/", "yours: ", 1)
            return diff_content(diff)
        return Content.assemble(
            Content.styled("on disk now:\n", "bold"),
            Content(theirs.rstrip() + "\n\n"),
            Content.styled("yours:\n", "bold"),
            Content(self.mine.rstrip()),
        )

    def on_mount(self) -> None:
        self.query_one("#conflict-theirs", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "conflict-compare":
            self.action_compare()
        else:
            self.dismiss("mine" if event.button.id == "conflict-mine" else "theirs")

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)

    def action_compare(self) -> None:
        self.comparing = not self.comparing
        self.query_one("#conflict-text", Static).update(self._texts())


class PromptScreen(ModalScreen[str | None]):
    """One line of input (the filter query)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog"):
            yield Static(self.title_text, id="prompt-title")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
