"""CaptionEditor: a text area for one caption, completing tags from the project's own vocabulary.

The tag being typed (from the last comma to the cursor) is completed from the
vocabulary, most frequent first: the best match shows as ghost text (→, tab or
enter takes it), ctrl+n cycles through the other candidates, which the editor
reports in a ``Candidates`` message for the tab to show. A caption is one line:
enter with nothing to complete posts ``Submitted`` instead of a newline; tab with
nothing to complete does nothing (it never leaves the editor or saves a half word).

While it has focus the editor is *editing*, and says so in its border: every key types or
edits (the tab's and the app's single-letter keys and digits too); esc leaves it.
``home``/``end`` go to the start/end of the caption's line (not of the wrapped row on
screen), ``ctrl+home``/``ctrl+end`` to the start/end of the whole caption.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from lorawb.core.caption_stats import complete
from lorawb.core.captions import split_tags, tag_key


class CaptionEditor(TextArea):
    BINDINGS = [
        Binding("tab", "accept_completion", "Complete", show=True),
        Binding("ctrl+n", "next_candidate", "Next match", show=False),
        Binding("home,ctrl+a", "caption_home", "Line start", show=False),
        Binding("end,ctrl+e", "caption_end", "Line end", show=False),
        Binding("shift+home", "caption_home(True)", "Select to line start", show=False),
        Binding("shift+end", "caption_end(True)", "Select to line end", show=False),
        Binding("ctrl+home", "caption_first", "Caption start", show=False),
        Binding("ctrl+end", "caption_last", "Caption end", show=False),
    ]
    EDITING = "editing · esc: done"
    IDLE = "e: edit"

    @dataclass
    class Candidates(Message):
        """The completion candidates for the tag being typed (empty when there are none)."""

        editor: CaptionEditor
        candidates: list[str]
        index: int

    class Submitted(Message):
        """Enter with nothing to complete: a caption is one line, so enter means done (save, next)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
        self.vocabulary: list[str] = []
        self.candidates: list[str] = []
        self.candidate_index = 0
        self._partial = ""
        self.border_title = self.IDLE

    def on_focus(self) -> None:
        self.border_title = self.EDITING
        self.add_class("-editing")

    def on_blur(self) -> None:
        self.border_title = self.IDLE
        self.remove_class("-editing")

    # --- moving by the caption's own lines, not the wrapped rows on screen -------------
    def action_caption_home(self, select: bool = False) -> None:
        self.move_cursor((self.cursor_location[0], 0), select=select)

    def action_caption_end(self, select: bool = False) -> None:
        row = self.cursor_location[0]
        self.move_cursor((row, len(self.document.get_line(row))), select=select)

    def action_caption_first(self) -> None:
        self.move_cursor((0, 0))

    def action_caption_last(self) -> None:
        self.move_cursor(self.document.end)

    def set_vocabulary(self, vocabulary: list[str]) -> None:
        self.vocabulary = vocabulary

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            if self.candidates and self._partial_tag() is not None:
                self.action_accept_completion()
            else:
                self.post_message(self.Submitted())
            return
        await super()._on_key(event)

    # --- completion ---------------------------------------------------------------
    def _partial_tag(self) -> tuple[str, tuple[int, int]] | None:
        """The tag being typed before the cursor and where it starts; None when the cursor is mid-tag."""
        if not self.selection.is_empty:
            return None
        row, col = self.cursor_location
        line = self.document.get_line(row)
        after = line[col:]
        if after.strip() and not after.lstrip().startswith(","):
            return None  # completing in the middle of a word would garble it
        before = line[:col]
        start = before.rfind(",") + 1
        while start < col and before[start] == " ":
            start += 1
        return before[start:], (row, start)

    def update_suggestion(self) -> None:
        found = self._partial_tag() if self.vocabulary else None
        partial = found[0] if found else ""
        if not partial.strip():
            self._set_candidates([], partial)
            self.suggestion = ""
            return
        if partial != self._partial:
            present = {tag_key(t) for t in split_tags(self.text)} - {tag_key(partial)}
            self._set_candidates(complete(self.vocabulary, partial, limit=6, exclude=present), partial)
        self._show_ghost()

    def _set_candidates(self, candidates: list[str], partial: str) -> None:
        changed = candidates != self.candidates
        self.candidates = candidates
        self._partial = partial
        if changed:
            self.candidate_index = 0
            self.post_message(self.Candidates(self, list(candidates), 0))

    def _show_ghost(self) -> None:
        if not self.candidates:
            self.suggestion = ""
            return
        choice = self.candidates[self.candidate_index]
        partial = self._partial
        # Ghost text only where the choice continues what was typed; tab still takes a mid-word match.
        self.suggestion = choice[len(partial) :] if choice.casefold().startswith(partial.casefold()) else ""

    def action_next_candidate(self) -> None:
        if not self.candidates:
            return
        self.candidate_index = (self.candidate_index + 1) % len(self.candidates)
        self._show_ghost()
        self.post_message(self.Candidates(self, list(self.candidates), self.candidate_index))

    def action_accept_completion(self) -> None:
        found = self._partial_tag()
        if not self.candidates or found is None:
            return  # nothing to complete: tab does nothing (never leaves, never saves a half-typed word)
        partial, start = found
        choice = self.candidates[self.candidate_index]
        row, col = self.cursor_location
        self.replace(choice, start, (row, col))
        self._set_candidates([], "")
        self.suggestion = ""
