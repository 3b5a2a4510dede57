"""Editing one caption by hand: the rules for saving it, a conflict, and a change made elsewhere.

``OpenCaption`` is a caption as an editor opened it: its image, the caption as read (the conflict
reference) and the rules. Saving writes only when the text changed, keeping the whitespace the file
had around its caption (a trailing newline, a second line), through the one writer
(lorawb.core.caption_writes). A caption changed on disk since it was read is a conflict, never
overwritten: "keep mine" then writes over what is on disk *now*, on purpose (undo gives theirs
back); "take theirs" reloads. When another program moves the image (into rejected/, another
folder) the edit follows it and an unsaved edit stays unsaved; when it changes or deletes the
caption, the editor reloads when nothing is unsaved and asks when something is. No UI here: the
Captions tab shows the outcomes, and tests drive these rules without an app.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorawb.core import caption_ops, layout
from lorawb.core.caption_history import ApplyResult
from lorawb.core.caption_ops import CaptionFile
from lorawb.core.caption_writes import CaptionWrites
from lorawb.core.captions import Caption
from lorawb.core.project import Project
from lorawb.errors import LorawbError


@dataclass(frozen=True)
class Saved:
    """Written (or nothing to write: ``result`` None)."""

    result: ApplyResult | None = None


@dataclass(frozen=True)
class Conflict:
    """The caption changed on disk since it was read: ask keep mine / take theirs / compare."""

    caption: str  # the caption file, relative to the project (what the dialog names)
    mine: str  # the text to write
    theirs: str | None  # what is on disk now (None: deleted)
    reason: str


@dataclass(frozen=True)
class Outside:
    """What another program's change to the open caption means: ``kind`` is "unchanged" (touched, or
    the same text), "reloaded" (no unsaved edit: the editor shows theirs), "gone" (the image was
    deleted), or "conflict" (an unsaved edit: ``conflict`` says what to ask)."""

    kind: str
    conflict: Conflict | None = None


class OpenCaption:
    """One image's caption open in an editor: ``base`` is the caption as read (None: none could be read)."""

    def __init__(self, project: Project, image: str, base: CaptionFile | None) -> None:
        self.project = project
        self.image = image
        self.base = base

    @classmethod
    def open(cls, project: Project, image: str) -> OpenCaption:
        """Read ``image``'s caption now (LorawbError when it cannot be read)."""
        return cls(project, image, caption_ops.read_caption(project.root, project.root / image))

    def read_now(self) -> CaptionFile:
        return caption_ops.read_caption(self.project.root, self.project.root / self.image)

    @property
    def body(self) -> str:
        """The caption as the editor shows it (the file's text without the whitespace around it)."""
        return body_of(self.base)

    def dirty(self, edited: str) -> bool:
        return edited.strip() != self.body

    def text_for(self, edited: str) -> str:
        """What to write for ``edited``: with the whitespace the file had around its caption."""
        edited = edited.strip()
        old = (self.base.text if self.base else None) or ""
        cap = Caption.parse(old)
        return (cap.lead + edited + cap.trail) if old.strip() else edited

    @property
    def caption_rel(self) -> str:
        """The caption file, relative to the project (an existing .caption, else the .txt)."""
        if self.base is not None and self.base.image == self.image:
            return caption_ops.rel_to(self.project.root, self.base.file)
        return caption_ops.rel_to(self.project.root, layout.caption_path_for(self.project.root / self.image))

    def save(self, edited: str, writes: CaptionWrites, author: str) -> Saved | Conflict:
        """Write ``edited`` if it differs from the caption as read; a conflict when the file changed since."""
        if self.base is None or not self.dirty(edited):
            return Saved()
        return self._write(self.base, self.text_for(edited), writes, author)

    def keep_mine(self, mine: str, writes: CaptionWrites, author: str) -> Saved | Conflict:
        """After a conflict: write ``mine`` over what is on disk now (a conflict again if it changes yet again)."""
        fresh = self.read_now()
        self.base = fresh
        return self._write(fresh, mine, writes, author)

    def take_theirs(self) -> None:
        """After a conflict: the caption as it is on disk now becomes the open one."""
        self.base = self.read_now()

    def _write(self, base: CaptionFile, text: str, writes: CaptionWrites, author: str) -> Saved | Conflict:
        result = writes.apply(caption_ops.edit_changeset(self.project, base, text), author)
        if result.conflicts:
            try:
                theirs = self.read_now().text
            except LorawbError:  # unreadable now: shown as deleted in the dialog
                theirs = None
            return Conflict(result.conflicts[0].rel, text, theirs, result.conflicts[0].reason)
        self.base = self.read_now()  # the next save compares with what was written
        return Saved(result)

    def moved_to(self, image: str) -> bool:
        """The image was moved to ``image`` by another program: follow it. True when the caption there is
        the one read (an unsaved edit stays unsaved); False when it differs (see ``changed_outside``)."""
        self.image = image
        if self.base is None:
            return True
        try:
            moved = self.read_now()
        except LorawbError:  # unreadable at its new place: a change made elsewhere
            return False
        if moved.text == self.base.text:
            self.base = moved
            return True
        return False

    def changed_outside(self, edited: str) -> Outside:
        """Another program changed or deleted the caption (or its image): what the editor should do."""
        try:
            theirs: CaptionFile | None = self.read_now()
        except LorawbError:  # unreadable now: as deleted
            theirs = None
        image_gone = not (self.project.root / self.image).exists()
        if self.base is not None and theirs is not None and theirs.text == self.base.text and not image_gone:
            return Outside("unchanged")
        if not self.dirty(edited):
            if image_gone:
                return Outside("gone")
            self.base = theirs
            return Outside("reloaded")
        gone = theirs is None or theirs.text is None
        reason = "deleted on disk by another program" if gone else "changed on disk by another program"
        caption = caption_ops.rel_to(self.project.root, theirs.file) if theirs is not None else self.caption_rel
        return Outside(
            "conflict",
            Conflict(caption, self.text_for(edited), None if gone else theirs.text, reason),  # type: ignore[union-attr]
        )


def body_of(cf: CaptionFile | None) -> str:
    return (cf.text or "").strip() if cf else ""
