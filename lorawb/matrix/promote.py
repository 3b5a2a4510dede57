"""Promoting matrix cells to the inbox: the v1 → v2 loop.

A promotion copies a cell's PNG (its parameters kept in the PNG text) to
``inbox/<matrix>-<cell>.png`` and gives it a caption built from the cell: the trigger
first, then its slot values (``zkx_mira, forest, watercolor``), ready for Triage. The
captions are a change set like every caption edit (lorawb.core.caption_ops: built purely,
previewable as a diff, applied atomically with a conflict check, undoable from the caption
history); the images are written first, atomically, and never over an existing file.
Control cells (no trigger) are refused: they are not the character.

A promotion is journaled (lorawb.core.journal) before its first image is written: a process
killed part-way leaves a promotion the next command finishes (the rest of the images, their
captions, the ratings' record) or drops (no image written yet), so the inbox never holds a
promoted image without its caption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lorawb.core import fsutil, journal, state
from lorawb.core.caption_history import CLI, ApplyResult
from lorawb.core.caption_ops import Change, ChangeSet, rel_to
from lorawb.core.caption_writes import CaptionWrites
from lorawb.core.confine import WriteScope
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
    """Write the images (atomically, never over a file), then apply the captions' change set; journaled.
    The project's index (``index``: the app's live one) learns both."""
    skipped = list(plan.skipped)
    changes = plan.changes.changes if plan.changes else []
    by_image = {c.image: c for c in changes}
    scope = WriteScope(project)
    copies = []
    for cell_id, src, dest in plan.copies:
        why = scope.refuse(dest)
        if why is not None:
            skipped.append((cell_id, why))
        else:
            copies.append((cell_id, src, dest))
    root = project.root
    token = fsutil.new_tag()
    payload = {
        "matrix": rel_to(root, plan.folder.path),
        "label": plan.changes.label if plan.changes else "promote",
        "author": author,
        "copies": [[cid, rel_to(root, src), rel_to(root, dest)] for cid, src, dest in copies],
        "captions": {rel_to(root, dest): by_image[rel_to(root, dest)].new for _, _, dest in copies},
    }
    with journal.holding(project, token):
        conn = journal.connect(project)
        try:
            with state.transaction(conn, durable=True):
                journal.record(conn, "promote", __name__, token, payload)
            written, gone = _write_images(project, payload, token)
            skipped += [(cid, "already in the inbox") for cid in gone]
            result = _finish(project, payload, written, author, index)
            try:
                with state.transaction(conn):
                    journal.finish(conn, token)
            except state.DiskFullError as exc:
                raise LorawbError(
                    f"disk full: {plural(len(written), 'image')} promoted, but the promotion could not be closed; "
                    "the next lorawb command does it",
                    path=exc.path,
                    hint="free some space",
                ) from exc
        finally:
            conn.close()
    return PromoteResult([root / rel for rel in written.values()], result, skipped)


def _write_images(project: Project, payload: dict, token: str) -> tuple[dict[str, str], list[str]]:
    """Copy each cell's PNG into the inbox, never over a file: ({cell id: inbox rel} written, cells refused)."""
    root = project.root
    written: dict[str, str] = {}
    gone: list[str] = []
    for cell_id, src, dest in payload["copies"]:
        fsutil.kill_point("promote")
        target = root / dest
        data = (root / src).read_bytes()
        if target.exists():
            if target.read_bytes() == data:  # written before a kill: this very promotion's
                written[cell_id] = dest
            else:
                gone.append(cell_id)  # appeared since the plan was made
            continue
        try:
            atomic_write_bytes(target, data, tag=token, replace=False)
        except FileExistsError:
            gone.append(cell_id)
            continue
        written[cell_id] = dest
    return written, gone


def _finish(
    project: Project, payload: dict, written: dict[str, str], author: str, index: ProjectIndex | None = None
) -> ApplyResult | None:
    """The captions of the images written (those not there yet) and the ratings' record of them."""
    root = project.root
    keep = []
    for dest in written.values():
        caption = (root / dest).with_suffix(".txt")
        if not caption.exists():
            text = payload["captions"][dest]
            keep.append(Change(image=dest, rel=rel_to(root, caption), path=caption, old=None, new=text))
    result = None
    if keep:
        cs = ChangeSet(payload["label"], keep, len(keep), "inbox")
        result = CaptionWrites(project, index).apply(cs, author, also=[root / d for d in written.values()])
    folder = MatrixFolder(root / payload["matrix"])
    if written and folder.path.is_dir():
        ratings = Ratings.load(folder)
        ratings.promoted.update(written)
        ratings.save(folder)
    return result


def recover_entry(project: Project, entry: journal.Entry) -> str | None:
    """Finish (or drop) a promotion a killed process left half done; says what it did."""
    root = project.root
    payload = entry.payload
    done = [cid for cid, src, dest in payload["copies"] if _same(root / src, root / dest)]
    folders = {(root / dest).parent for _, _, dest in payload["copies"]}
    if not done:
        journal.drop(project, entry, list(folders))
        return f"an interrupted promotion from {payload['matrix']} had written nothing yet: dropped"
    fsutil.remove_leftovers(folders, entry.token)
    written, _gone = _write_images(project, payload, entry.token)
    _finish(project, payload, written, payload.get("author") or CLI)
    conn = journal.connect(project)
    try:
        with state.transaction(conn):
            journal.finish(conn, entry.token)
    finally:
        conn.close()
    return (
        f"finished an interrupted promotion from {payload['matrix']}: {plural(len(written), 'image')} in the inbox "
        "with their captions (`lorawb captions undo` takes the captions back)"
    )


def _same(a: Path, b: Path) -> bool:
    try:
        return b.stat().st_size == a.stat().st_size and b.read_bytes() == a.read_bytes()
    except OSError:
        return False


def promote(
    project: Project,
    folder: MatrixFolder,
    cells: list[Cell],
    trigger: str,
    author: str = CLI,
    index: ProjectIndex | None = None,
) -> PromoteResult:
    return apply_promotion(project, plan_promotion(project, folder, cells, trigger), author, index)
