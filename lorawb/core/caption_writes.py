"""Every caption write goes through here: written by the history, then told to the project's index.

A change set applied, an undo, a redo, one history entry undone: lorawb.core.caption_history writes
them (atomic, conflict-checked, recorded for undo), and ``CaptionWrites`` then brings the project's
index up to date for exactly the files written, so every count (the app's header, the Captions
tables, Triage's facts, the doctor) is right at once, even with the file watcher off
(``[ui] watch = "off"``). The app hands over its live index; the CLI and scripts get the project's
own, opened for the update and closed. ``keep_trigger_in_step`` is the one rule for lorawb.toml's
trigger when an operation sets or renames the trigger.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

from lorawb.core import caption_history
from lorawb.core.caption_history import CLI, ApplyResult
from lorawb.core.caption_ops import ChangeSet, Operation, RenameTrigger, SetTrigger
from lorawb.core.captions import tag_key
from lorawb.core.index import ProjectIndex
from lorawb.core.project import Project
from lorawb.errors import LorawbError


class CaptionWrites:
    """The writes of one caller (an app window, the CLI) on one project, and its index kept in step.

    ``index``: the live index to update (the app's); None opens the project's own for each update.
    ``problem`` says why the last index update failed (the files are written either way; a rescan
    mends the index).
    """

    def __init__(self, project: Project, index: ProjectIndex | None = None) -> None:
        self.project = project
        self.index = index
        self.problem: str | None = None
        self.on_problem: Callable[[str], None] | None = None  # told when an index update fails

    def apply(self, cs: ChangeSet, author: str = CLI, also: Iterable[Path | str] = ()) -> ApplyResult:
        """Write ``cs`` (files changed on disk since they were read are refused and reported).

        ``also``: other files the caller wrote beside it (promoted images): the index learns them too.
        """
        result = caption_history.apply_changeset(self.project, cs, author)
        self._tell([*result.written, *also])
        return result

    def undo(self, steps: int = 1, author: str | None = None) -> list[ApplyResult]:
        results = caption_history.undo(self.project, steps, author=author)
        self._tell([w for r in results for w in r.written])
        return results

    def redo(self, steps: int = 1, author: str | None = None) -> list[ApplyResult]:
        results = caption_history.redo(self.project, steps, author=author)
        self._tell([w for r in results for w in r.written])
        return results

    def undo_op(self, op_id: int, author: str = CLI) -> ApplyResult:
        result = caption_history.undo_op(self.project, op_id, author=author)
        self._tell(result.written)
        return result

    def _tell(self, written: Iterable[Path | str]) -> None:
        """The index learns the files written (caption files or images, relative to the project or absolute)."""
        paths = [p if Path(p).is_absolute() else self.project.root / p for p in written]
        self.problem = None
        if not paths:
            return
        index = self.index or ProjectIndex(self.project)
        try:
            index.update(paths)
        except (LorawbError, OSError, sqlite3.Error) as exc:
            self.problem = f"index not updated (a rescan, ctrl+r in the app, mends it): {exc}"
            if self.on_problem is not None:
                self.on_problem(self.problem)
        finally:
            if index is not self.index:
                index.close()


def keep_trigger_in_step(project: Project, op: Operation | None, written: list[str]) -> str | None:
    """lorawb.toml's trigger after ``op`` wrote ``written``: set by `trigger NAME` on a project without one
    (not with several characters: each has its own), renamed with the project's own trigger (the one tag
    identity: ``Zkx_Mira`` renames ``zkx mira``) or with a ``[characters.<name>]`` trigger.

    Returns what changed in lorawb.toml (``trigger = 'new' (was 'old')``), or None.
    """
    if isinstance(op, SetTrigger) and not project.trigger and len(project.config.characters.members) < 2:
        project.save_setting("project.trigger", op.name.strip())
        return f"trigger = {op.name.strip()!r}"
    if not isinstance(op, RenameTrigger) or not written:
        return None
    notes: list[str] = []
    if project.trigger and tag_key(project.trigger) == tag_key(op.old):
        old = project.trigger
        project.save_setting("project.trigger", op.new.strip())
        notes.append(f"trigger = {op.new.strip()!r} (was {old!r})")
    notes += _rename_character(project, op)
    return "; ".join(notes) or None


def _rename_character(project: Project, op: RenameTrigger) -> list[str]:
    """``[characters.<name>] trigger`` follows a rename of that character's trigger. Its kohya folders named by
    the old trigger (``10_zkx_mira``, ``5_zkx_mira+qvr_tom``) still hold it: they are added to its ``folders``
    (no image is moved)."""
    from lorawb.core.characters import folder_concepts
    from lorawb.core.layout import walk_images

    section = project.config.characters.members
    name = next((n for n, sheet in section.items() if tag_key(sheet.trigger) == tag_key(op.old)), None)
    if name is None:
        return []
    notes = [f"characters.{name}.trigger = {op.new.strip()!r} (was {section[name].trigger!r})"]
    dataset = project.dataset_dir
    named = {
        part
        for image in walk_images(dataset)
        for part in image.relative_to(dataset).parts[:-1]
        if tag_key(op.old) in {tag_key(c) for c in folder_concepts(part)}
    }
    listed = list(section[name].folders)
    added = sorted(named - set(listed))
    if added:
        project.save_setting(f"characters.{name}.folders", listed + added)
        notes.append(f"characters.{name}.folders = {listed + added!r}")
    project.save_setting(f"characters.{name}.trigger", op.new.strip())
    return notes
