"""A matrix run: generate the cells that do not exist yet, record and score each one.

Read ``run_matrix`` top to bottom: lock → spec → cells → pending → load once → batches
(costly axis outermost) → per batch: images, PNG with its parameters, cells.jsonl row,
``cell`` event, scores → scores the batches could not (leak of a control whose weight-0
twin another process drew) → status. Everything goes to the matrix folder
(lorawb.matrix.folder). A stop request (``lorawb matrix stop``, SIGTERM, Ctrl-C) is
honoured between batches; a rerun skips the cells that exist.

With several processes (``accelerate launch``, see lorawb.matrix.process) each takes a
contiguous share of the batches (Accelerate's ``split_between_processes``), so each loads
as few LoRAs as it can; rank 0 owns the status and scores what is left at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from lorawb.core.fsutil import atomic_write_bytes
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.matrix.cells import Cell, Params
from lorawb.matrix.folder import MatrixFolder, read_rows
from lorawb.matrix.generate import Generator, plan_batches
from lorawb.matrix.plan import Plan, plan_matrix, request_for
from lorawb.matrix.pngtext import png_bytes, record_from_png
from lorawb.matrix.scores import Scorer, make_scorer
from lorawb.train import detached
from lorawb.train.events import EventWriter

ProgressFn = Callable[[dict[str, Any]], None]


def repair_rows(folder: MatrixFolder) -> int:
    """Give back their cells.jsonl rows to PNGs that lost them (killed between the two writes)."""
    rows = read_rows(folder.cells_log, "cell")
    missing = sorted(folder.done_ids() - set(rows))
    if not missing:
        return 0
    n = 0
    with EventWriter(folder.cells_log) as w:
        for cid in missing:
            rec = record_from_png(folder.cell_png(cid))
            if rec is not None:
                rec.pop("type", None)
                w.emit("cell", **rec)
                n += 1
    return n


# --- the run --------------------------------------------------------------------------------------


def run_matrix(folder: MatrixFolder, *, lock_fd: int | None = None, progress: ProgressFn | None = None) -> str:
    """Generate the matrix's missing cells; returns the final state (finished or stopped)."""
    from lorawb.train.trainer import NullEvents, describe_failure

    rank = int(os.environ.get("RANK", "0"))
    lock = contextlib.nullcontext() if detached.lock_is_held_for_us() else detached.hold_lock(folder, lock_fd)
    folder.create()
    status = EventWriter(folder.events) if rank == 0 else NullEvents()
    with lock, status as events, detached.job_log(folder, "matrix", rank) as log, detached.StopFlag(folder) as stop:
        try:
            return _run(folder, events, log, stop, progress, rank)
        except BaseException as exc:
            error, hint = describe_failure(exc)
            log.exception("matrix failed: %s", error)
            events.status("failed", error=error, hint=hint)
            raise


def _run(
    folder: MatrixFolder,
    events: Any,
    log: logging.Logger,
    stop: detached.StopFlag,
    progress: ProgressFn | None,
    rank: int,
) -> str:
    events.status("starting")
    plan = plan_matrix(folder)
    if rank == 0:
        repaired = repair_rows(folder)
        if repaired:
            log.info("%d cells had lost their cells.jsonl rows; restored from their PNGs", repaired)
    pending = plan.pending()
    total = len(plan.layout.cells)
    requests = {plan.request(c.params): c for c in pending}
    batches = plan_batches(list(requests), size=plan.spec.matrix.batch)
    state = _distributed(plan.settings.device)
    mine = batches
    if state is not None and state.num_processes > 1:
        with state.split_between_processes(batches) as share:
            mine = list(share)
    s = plan.settings
    events.status("running", total=total, pending=len(pending), done=total - len(pending))
    log.info(
        "%d cells, %d to draw in %d batches (%d here), base %s",
        total,
        len(pending),
        len(batches),
        len(mine),
        plan.ctx.resolved.base,
    )
    if not mine:
        return _finish(plan, events, log, state, stop.requested())
    device = s.device
    if state is not None and state.device.type == "cuda":
        device = str(state.device)  # each process on its own GPU (cuda:<local rank>)
    gen = Generator.load(plan.ctx.model, device, s.precision, max_loaded=s.max_loaded, settings=plan.ctx.settings)
    log.info("device %s, %s, %d CPU threads", gen.device, gen.dtype, _threads())
    scorer = make_scorer(plan.project, plan.ctx, s)
    scores = EventWriter(folder.scores_log)
    rows = EventWriter(folder.cells_log)
    cell_events = events if rank == 0 else EventWriter(folder.events)
    try:
        for batch in mine:
            if stop.requested():
                break
            cells = [requests[r] for r in batch]
            t0 = time.perf_counter()
            images = gen.run_batch(batch)
            per_image = (time.perf_counter() - t0) / len(batch)
            ids = [c.id for c in cells]
            for i, (cell, image) in enumerate(zip(cells, images, strict=True)):
                rec = cell_record(plan, cell, ids, i, per_image, gen, rank)
                atomic_write_bytes(folder.cell_png(cell.id), png_bytes(image, rec))
                rows.emit("cell", **rec)
                cell_events.emit("cell", id=cell.id, path=f"cells/{cell.id}.png", seconds_per_image=round(per_image, 4))
            if progress:
                progress({"done": len(ids), "seconds_per_image": per_image})
            if scorer.measures:
                write_scores(scores, scorer, cells, images, _base_lookup(folder))
    finally:
        rows.close()
        scores.close()
        if cell_events is not events:
            cell_events.close()
    return _finish(plan, events, log, state, stop.requested())


def _finish(plan: Plan, events: Any, log: logging.Logger, state: Any, stopped: bool) -> str:
    if state is not None and state.num_processes > 1:
        state.wait_for_everyone()
    if int(os.environ.get("RANK", "0")) == 0 and not stopped:
        n = score_missing(plan)
        if n:
            log.info("scored %d cells at the end", n)
    done = len(plan.folder.done_ids() & set(plan.layout.cells))
    total = len(plan.layout.cells)
    final = "stopped" if stopped and done < total else "finished"
    events.status(final, total=total, done=done, pending=total - done)
    log.info("%s: %d of %d cells", final, done, total)
    return final


def _distributed(device: str) -> Any:
    """Accelerate's process state when launched as several processes (None in a plain process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # On CPU (or device = "cpu") Accelerate needs to be told, or it runs every process as rank 0 alone.
    return PartialState(cpu=device == "cpu" or not torch.cuda.is_available())


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def cell_record(
    plan: Plan, cell: Cell, batch: list[str], index: int, per_image: float, gen: Generator, rank: int
) -> dict[str, Any]:
    """Every parameter that made the cell, and how (the batch it was drawn in, device, versions)."""
    import diffusers
    import torch

    import lorawb

    return {
        "id": cell.id,
        "file": f"cells/{cell.id}.png",
        "params": cell.params.as_dict(),
        "slots": dict(cell.slots),
        "control": cell.control,
        "plain_prompt": cell.plain_prompt,
        **({"characters": list(cell.characters), "triggers": list(cell.triggers)} if cell.characters else {}),
        "model": plan.ctx.model.model_dump(mode="json"),
        "family_settings": plan.ctx.settings,
        "batch": batch,
        "batch_index": index,
        "seconds_per_image": round(per_image, 4),
        "device": str(gen.device),
        "dtype": str(gen.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "rank": rank,
        "versions": {"lorawb": lorawb.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__},
    }


def _base_lookup(folder: MatrixFolder) -> Callable[[str], Any]:
    def look(cell_id: str) -> Any:
        from PIL import Image

        p = folder.cell_png(cell_id)
        if not p.is_file():
            return None
        with Image.open(p) as im:
            im.load()
            return im.convert("RGB")

    return look


def write_scores(
    out: EventWriter, scorer: Scorer, cells: list[Cell], images: list[Any], base: Callable[[str], Any]
) -> None:
    for cell, row in zip(cells, scorer.score(cells, images, base), strict=True):
        out.emit("score", id=cell.id, scorer=scorer.name, **row)


def _iter_images(folder: MatrixFolder, ids: list[str]) -> Iterator[tuple[str, Any]]:
    from PIL import Image

    for cid in ids:
        with Image.open(folder.cell_png(cid)) as im:
            im.load()
            yield cid, im.convert("RGB")


def score_missing(plan: Plan, rescore: bool = False, scorer: Scorer | None = None) -> int:
    """Score the drawn cells that have no score from the current scorer (or all, with ``rescore``).

    Base cells go first, so a control's leak finds its weight-0 twin. Returns how many were scored.
    """
    folder = plan.folder
    scorer = scorer or make_scorer(plan.project, plan.ctx, plan.settings)
    if not scorer.measures:
        return 0
    have = read_rows(folder.scores_log, "score")
    done = folder.done_ids()
    todo = [
        c
        for c in plan.layout.cells.values()
        if c.id in done
        and (
            rescore
            or have.get(c.id, {}).get("scorer") != scorer.name
            or (
                "leak" in scorer.measures and c.is_control and not c.params.is_base and "leak" not in have.get(c.id, {})
            )
        )
    ]
    todo.sort(key=lambda c: not c.params.is_base)
    if not todo:
        return 0
    with EventWriter(folder.scores_log) as out:
        for i in range(0, len(todo), 32):
            chunk = todo[i : i + 32]
            images = [im for _cid, im in _iter_images(folder, [c.id for c in chunk])]
            write_scores(out, scorer, chunk, images, _base_lookup(folder))
    return len(todo)


# --- regeneration ---------------------------------------------------------------------------------


def regenerate(folder: MatrixFolder, cell_id: str, alone: bool = False, gen: Generator | None = None) -> Any:
    """Draw a cell again from its recorded parameters (its whole batch, unless ``alone``); the PIL image.

    Redrawing the batch it was drawn in reproduces the PNG bit for bit on the same device and
    thread count; drawn alone, float summation order may move a few pixels by one level.
    """
    rows = read_rows(folder.cells_log, "cell")
    if cell_id not in rows:
        rec = record_from_png(folder.cell_png(cell_id))
        if rec is None:
            raise LorawbError(
                f"no record of cell {cell_id}", path=folder.path, hint="`lorawb matrix show` lists the cells"
            )
        rows[cell_id] = rec
    rec = rows[cell_id]
    project = Project.load(folder.path)
    ids = [cell_id] if alone else list(rec.get("batch") or [cell_id])
    missing = [i for i in ids if i not in rows]
    if missing:
        ids = [cell_id]
    requests = [request_for(project, Params.from_dict(rows[i]["params"])) for i in ids]
    if gen is None:
        from lorawb.train.config import ModelSection

        model = ModelSection.model_validate(rec["model"])
        gen = Generator.load(
            model,
            device=rec.get("device", "auto").split(":")[0],
            threads=int(rec.get("threads", 0) or 0),
            settings=rec.get("family_settings"),
        )
    images = gen.run_batch(requests)
    return images[ids.index(cell_id)]
