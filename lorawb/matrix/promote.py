"""Promoting matrix cells to the inbox: the v1 → v2 loop.

A promotion copies a cell's PNG (its parameters kept in the PNG text) to
``inbox/<matrix>-<cell>.png`` and gives it a caption built from the cell: the trigger
first, then its slot values (``zkx_mira, forest, watercolor``), ready for Triage. The
captions are a change set like every caption edit (lorawb.core.caption_ops: built purely,
previewable as a diff, applied atomically with a conflict check, undoable from the caption
history); the images are written first, atomically, and never over an existing file.
Control cells (no trigger) are refused: they are not the character.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lorawb.core.caption_history import CLI, ApplyResult
from lorawb.core.caption_ops import Change, ChangeSet, rel_to
from lorawb.core.caption_writes import CaptionWrites
from lorawb.core.fsutil import atomic_write_bytes
from lorawb.core.index import ProjectIndex
from lorawb.errors import LorawbError
from lorawb.matrix.cells import Cell, Layout
from lorawb.matrix.folder import MatrixFolder, Ratings
from lorawb.words import plural

if TYPE_CHECKING:
    from lorawb.core.project import Project


@dataclass
class Promotion:
    """What promoting some cells would do: images to copy, the captions' change set, and what is skipped."""

    folder: MatrixFolder
    copies: list[tuple[str, Path, Path]] = field(default_factory=list)  # (cell id, source PNG, inbox path)
    changes: ChangeSet | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (cell id, why)

    def summary(self) -> str:
        text = f"promote {plural(len(self.copies), 'cell')} from {self.folder.id} to the inbox"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped"
        return text


def resolve_cells(layout: Layout, refs: list[str]) -> list[Cell]:
    """Cells by id or unique id prefix (as `lorawb matrix show` prints them)."""
    out = []
    for ref in refs:
        hits = [c for cid, c in layout.cells.items() if cid.startswith(ref)]
        if not hits:
            raise LorawbError(f"no cell {ref!r} in this matrix", hint="`lorawb matrix show SPEC --cells` lists them")
        if len(hits) > 1:
            raise LorawbError(f"{ref!r} matches {plural(len(hits), 'cell')}; give more of the id")
        out.append(hits[0])
    return out


def plan_promotion(project: Project, folder: MatrixFolder, cells: list[Cell], trigger: str) -> Promotion:
    """Pure: what promoting ``cells`` would write (nothing is written)."""
    plan = Promotion(folder)
    inbox = project.inbox_dir
    changes: list[Change] = []
    for cell in cells:
        src = folder.cell_png(cell.id)
        if cell.is_control:
            plan.skipped.append((cell.id, "a control prompt (no trigger): not the character"))
            continue
        if not src.is_file():
            plan.skipped.append((cell.id, "not drawn yet"))
            continue
        dest = inbox / f"{folder.id}-{cell.id}.png"
        if dest.exists():
            plan.skipped.append((cell.id, f"already in the inbox ({rel_to(project.root, dest)})"))
            continue
        caption = dest.with_suffix(".txt")
        plan.copies.append((cell.id, src, dest))
        changes.append(
            Change(
                image=rel_to(project.root, dest),
                rel=rel_to(project.root, caption),
                path=caption,
                old=None,
                new=cell.caption(trigger),
            )
        )
    plan.changes = ChangeSet(
        f"promote {plural(len(changes), 'matrix cell')} from {folder.id}", changes, len(cells), "inbox"
    )
    return plan


@dataclass
class PromoteResult:
    images: list[Path]
    captions: ApplyResult | None
    skipped: list[tuple[str, str]]


def apply_promotion(
    project: Project, plan: Promotion, author: str = CLI, index: ProjectIndex | None = None
) -> PromoteResult:
    """Write the images (atomically, never over a file), then apply the captions' change set; the
    project's index (``index``: the app's live one) learns both."""
    written: list[Path] = []
    keep: list[Change] = []
    skipped = list(plan.skipped)
    by_image = {c.image: c for c in (plan.changes.changes if plan.changes else [])}
    for cell_id, src, dest in plan.copies:
        if dest.exists():  # appeared since the plan was made
            skipped.append((cell_id, "already in the inbox"))
            continue
        atomic_write_bytes(dest, src.read_bytes())
        written.append(dest)
        keep.append(by_image[rel_to(project.root, dest)])
    result = None
    if keep and plan.changes is not None:
        cs = ChangeSet(plan.changes.label, keep, len(keep), "inbox")
        result = CaptionWrites(project, index).apply(cs, author, also=written)
    ratings = Ratings.load(plan.folder)
    for cell_id, _src, dest in plan.copies:
        if dest in written:
            ratings.promoted[cell_id] = rel_to(project.root, dest)
    ratings.save(plan.folder)
    return PromoteResult(written, result, skipped)


def promote(
    project: Project,
    folder: MatrixFolder,
    cells: list[Cell],
    trigger: str,
    author: str = CLI,
    index: ProjectIndex | None = None,
) -> PromoteResult:
    return apply_promotion(project, plan_promotion(project, folder, cells, trigger), author, index)
