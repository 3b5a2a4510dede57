"""CaptionEditor: a text area for one caption, completing tags from the dataset's own vocabulary.

The tag being typed (from the last comma to the cursor) is completed from the
vocabulary, most frequent first: the best match shows as ghost text (→, tab or
enter takes it), ctrl+n cycles through the other candidates, which the editor
reports in a ``Candidates`` message for the tab to show. A caption is one line:
enter with nothing to complete posts ``Submitted`` instead of a newline.
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
    ]

    @dataclass
    class Candidates(Message):
        """The completion candidates for the tag being typed (empty when there are none)."""

        editor: CaptionEditor
        candidates: list[str]
        index: int

    class Leave(Message):
        """Tab with nothing to complete: the tab decides where focus goes (it stays in the tab)."""

    class Submitted(Message):
        """Enter with nothing to complete: a caption is one line, so enter means done (save, next)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
        self.vocabulary: list[str] = []
        self.candidates: list[str] = []
        self.candidate_index = 0
        self._partial = ""

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
            self.post_message(self.Leave())
            return
        partial, start = found
        choice = self.candidates[self.candidate_index]
        row, col = self.cursor_location
        self.replace(choice, start, (row, col))
        self._set_candidates([], "")
        self.suggestion = ""
