"""`lorawb matrix new|run|show|list|compare|promote|rate|stop|export|score|regen`: thin wrappers over lorawb.matrix.

SPEC is a matrix id, a unique prefix of one, its folder or matrix.toml, or 'last'. PROJECT
comes first and may be left out (the current folder), as in every other command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lorawb.cli import add_project_arg
from lorawb.cli.queue_cmds import add_queue_option, report_queued
from lorawb.words import plural

USAGE = {
    "new": "[PROJECT] NAME",
    "run": "[PROJECT] SPEC",
    "show": "[PROJECT] SPEC",
    "stop": "[PROJECT] SPEC",
    "export": "[PROJECT] SPEC",
    "score": "[PROJECT] SPEC",
    "promote": "[PROJECT] SPEC [CELL ...]",
    "rate": "[PROJECT] SPEC CELL ...",
    "regen": "[PROJECT] SPEC CELL",
    "compare": "[PROJECT] SPEC [SPEC_B]",
}


def register(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("matrix", help="prompt matrices: checkpoints × LoRA weights × prompts × seeds, scored")
    msub = top.add_subparsers(dest="matrix_command", metavar="ACTION", required=True)

    def words(name: str, help_: str) -> argparse.ArgumentParser:
        p = msub.add_parser(name, help=help_, usage=f"lorawb matrix {name} {USAGE[name]} [options]")
        p.add_argument("words", nargs="+", metavar=USAGE[name].replace("[", "").replace("]", ""), help=USAGE[name])
        add_project_arg(p, positional=False)
        p.set_defaults(normalize=_normalize)
        return p

    p = words("new", "write a ready matrix spec for a run and print its path, size and estimated time")
    p.add_argument("--run", default="", help="the run to test (default: the latest run with checkpoints)")
    p.add_argument("--fill-gaps", action="store_true", help="only the context × style pairs the dataset lacks")
    p.add_argument(
        "--pairs", action="store_true", help="the joint matrix: each pair of characters over the contexts it lacks"
    )
    p.add_argument("--weights", default=None, help="LoRA weights (default 0,0.5,0.75,1)")
    p.add_argument("--seeds", default=None, help="seeds: 0,1,2 or a range 0-3 (default 0,1)")
    p.add_argument(
        "--checkpoints", type=int, default=None, help="at most this many checkpoints, spread over the run (default 6)"
    )
    p.add_argument("--steps", default="", help="exact checkpoint steps instead, e.g. 50,200")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="fit the seeds, prompts, checkpoints and weights you did not give to about this many minutes of "
        "drawing (default: [matrix] target_minutes; 0: the full matrix)",
    )
    p.set_defaults(func=cmd_new)

    p = words("run", "draw the matrix's missing cells (foreground, or --detach); a rerun skips what exists")
    p.add_argument("--detach", action="store_true", help="generate in a separate process that survives the terminal")
    p.add_argument(
        "--num-processes", type=int, default=1, help="spread the cells over N processes (GPUs) via Accelerate"
    )
    p.add_argument("--yes", action="store_true", help="draw it even when it is bigger than [matrix] max_cells")
    add_queue_option(p)
    p.set_defaults(func=cmd_run)

    p = words("show", "cells done, the score table per checkpoint × weight, the recommendation")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--cells", action="store_true", help="also list every cell with its id and scores")
    p.set_defaults(func=cmd_show)

    p = words("compare", "two runs' matrices side by side (B: the newest matrix with the same spec over another run)")
    p.set_defaults(func=cmd_compare)

    p = msub.add_parser("list", help="the project's matrices, oldest first, with the run each one tests")
    add_project_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = words("promote", "copy cells to inbox/ with a caption from their slots (trigger first)")
    p.add_argument("--good", action="store_true", help="also every cell rated good")
    p.set_defaults(func=cmd_promote)

    p = words("rate", "rate cells good or bad (kept in the matrix folder)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--good", dest="rating", action="store_const", const="good")
    g.add_argument("--bad", dest="rating", action="store_const", const="bad")
    g.add_argument("--clear", dest="rating", action="store_const", const="clear")
    p.set_defaults(func=cmd_rate)

    p = words("stop", "ask a running matrix to stop after its current batch (a queued one: not started again)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait until it has stopped")
    p.set_defaults(func=cmd_stop)

    p = words("export", "write the labelled contact sheet PNG of each page")
    p.add_argument("--page", default="all", help="a page number (1-based) or 'all' (default)")
    p.add_argument("--rows", default="", help="axes down the side, comma-separated (default: the spec's view)")
    p.add_argument("--cols", default="", help="axes across the top")
    p.add_argument("--pages", default="", help="axes with a sheet per value ('none': one sheet)")
    p.add_argument("--out", default="", help="file to write (default: matrices/<id>/grid[-page].png)")
    p.set_defaults(func=cmd_export)

    p = words("score", "score the drawn cells that have no score yet (e.g. after setting [matrix] embedder)")
    p.add_argument("--rescore", action="store_true", help="score every cell again")
    p.set_defaults(func=cmd_score)

    p = words("regen", "draw one cell again from its recorded parameters and compare with its PNG")
    p.add_argument("--alone", action="store_true", help="draw it alone, not in the batch it was drawn in")
    p.add_argument("--out", default="", help="also write the new image here")
    p.set_defaults(func=cmd_regen)


# --- arguments ------------------------------------------------------------------------------------


NEEDED = {"rate": 2, "regen": 2}  # words after the project; 1 for the others


def _normalize(args: argparse.Namespace) -> None:
    """A first word that is a project folder is the project (or -p PROJECT); ``args.words`` keeps the rest."""
    from lorawb.cli import is_project, project_dir
    from lorawb.errors import LorawbError

    needed = NEEDED.get(args.matrix_command, 1)
    w = list(args.words)
    word = None
    if len(w) > needed and is_project(w[0]):
        word, w = w[0], w[1:]
    elif len(w) > needed and args.matrix_command in ("new", "run", "show", "stop", "export", "score"):
        raise LorawbError(
            f"{w[0]!r} is not a lorawb project",
            hint=f"usage: lorawb matrix {args.matrix_command} {USAGE[args.matrix_command]}",
        )
    if len(w) < needed:
        raise LorawbError(f"missing arguments; usage: lorawb matrix {args.matrix_command} {USAGE[args.matrix_command]}")
    args.project = project_dir(args.project_opt, word)
    args.words = w


def _split(args: argparse.Namespace, needed: int) -> tuple[Any, list[str]]:
    """(project, the other words), as ``_normalize`` left them."""
    from lorawb.core.project import Project

    return Project.load(args.project), list(args.words)


def _numbers(text: str, kind: type) -> list[Any]:
    from lorawb.errors import LorawbError

    out: list[Any] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        try:
            if kind is int and "-" in part[1:]:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            else:
                out.append(kind(part))
        except ValueError as exc:
            raise LorawbError(f"{part!r} is not a {'whole ' if kind is int else ''}number") from exc
    return out


def _folder(project: Any, ref: str) -> Any:
    from lorawb.matrix.folder import find_matrix

    return find_matrix(project, ref)


# --- commands -------------------------------------------------------------------------------------


def cmd_new(args: argparse.Namespace) -> int:
    from lorawb.matrix.cells import size_breakdown
    from lorawb.matrix.estimate import describe_estimate, measured_speed
    from lorawb.matrix.new import DEFAULT_SEEDS, DEFAULT_WEIGHTS, MAX_CHECKPOINTS, NewMatrix, create_matrix, spec_path
    from lorawb.matrix.plan import plan_matrix

    project, w = _split(args, 1)
    given = {"weights": args.weights, "seeds": args.seeds, "checkpoints": args.checkpoints}
    opts = NewMatrix(
        name=w[0],
        run=args.run,
        fill_gaps=args.fill_gaps,
        pairs=args.pairs,
        weights=tuple(_numbers(args.weights, float)) if args.weights is not None else DEFAULT_WEIGHTS,
        seeds=tuple(_numbers(args.seeds, int)) if args.seeds is not None else DEFAULT_SEEDS,
        checkpoints=args.checkpoints if args.checkpoints is not None else MAX_CHECKPOINTS,
        steps=tuple(_numbers(args.steps, int)),
        minutes=args.minutes,
        fixed=frozenset(k for k, v in given.items() if v is not None),
    )
    folder = create_matrix(project, opts)
    plan = plan_matrix(folder, project)
    print(spec_path(folder, project), flush=True)
    n_cells = len(plan.layout.cells)
    print(f"  {plural(n_cells, 'image')}: {size_breakdown(plan.layout, plan.spec.matrix.zip)}")
    print("  " + describe_estimate(n_cells, measured_speed(project, folder, plan.layout, plan.ctx.run)))
    for note in opts.notes:
        print(f"  note: {note}")
    print(f"  draw it with `lorawb matrix run {folder.id}` (add --detach to leave it running)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lorawb.matrix.estimate import check_size, describe_estimate, measured_speed
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.process import start_matrix

    project, w = _split(args, 1)
    folder = _folder(project, w[0])
    plan = plan_matrix(folder, project)
    pending = len(plan.pending())
    speed = measured_speed(project, folder, plan.layout, plan.ctx.run)
    check_size(pending, plan.settings.max_cells, speed, args.yes)
    print(
        f"{folder.id}: {len(plan.layout.cells) - pending}/{len(plan.layout.cells)} cells exist; {describe_estimate(pending, speed)}",
        flush=True,
    )
    if pending == 0:
        return 0
    if args.queue:
        from lorawb.queue import enqueue

        title = f"matrix {folder.id} ({plural(pending, 'image')})"
        report_queued(enqueue(project, "matrix", title, folder=folder.path, gpus=args.num_processes))
        return 0
    if args.detach:
        start_matrix(folder, detach=True, num_processes=args.num_processes)
        print(f"  drawing in the background; follow it with `lorawb matrix show {folder.id}` or the Matrix tab")
        return 0
    line = _Progress(pending)
    state = start_matrix(folder, detach=False, num_processes=args.num_processes, progress=line.update)
    line.done()
    print(f"{folder.id}: {state}; `lorawb matrix show {folder.id}` has the scores")
    return 0 if state in ("finished", "stopped") else 1


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done_n, self.t0 = total, 0, time.time()
        self.tty = sys.stdout.isatty()
        self.last = 0.0

    def update(self, ev: dict[str, Any]) -> None:
        from lorawb.matrix.estimate import format_duration

        self.done_n += int(ev.get("done", 0))
        rate = ev.get("seconds_per_image") or 0.0
        eta = format_duration(max(0, self.total - self.done_n) * rate)
        text = f"{self.done_n}/{self.total} images | {rate:.2f} s/image | eta {eta}"
        if self.tty:
            sys.stdout.write("\r\x1b[2K" + text)
            sys.stdout.flush()
        elif time.time() - self.last > 5 or self.done_n >= self.total:
            print(text, flush=True)
            self.last = time.time()

    def done(self) -> None:
        if self.tty:
            sys.stdout.write("\n")


def _report_dict(report: Any) -> dict[str, Any]:
    from lorawb.matrix.bleed import by_character
    from lorawb.matrix.scores import by_axis_value

    s = report.summary()
    best = s.best()
    return {
        "id": report.folder.id,
        "path": str(report.folder.path),
        "run": report.plan.ctx.run.id if report.plan.ctx.run is not None else None,
        "state": report.status.display_state,
        "cells": report.total,
        "done": report.drawn,
        "scorer": report.scorer,
        "measures": list(report.measures),
        "not_measured": report.reason if not report.scorer else None,
        "summary": [r.as_dict() for r in s.rows],
        "recommendation": s.recommendation(),
        "best": best.as_dict() if best else None,
        "by_value": {
            axis: [vars(v) for v in by_axis_value(report.plan.layout, report.scores, report.scorer or "", axis, best)]
            for axis in report.plan.layout.slots
            if best is not None and len(report.plan.layout.axes[axis]) > 1
        },
        "per_character": [vars(r) for r in by_character(report.plan.layout, report.scores, report.scorer or "")],
        "ratings": report.ratings.ratings,
        "promoted": report.ratings.promoted,
    }


def cmd_show(args: argparse.Namespace) -> int:
    from lorawb.matrix.report import load_report
    from lorawb.matrix.scores import format_table

    project, w = _split(args, 1)
    report = load_report(_folder(project, w[0]), project)
    data = _report_dict(report)
    if args.cells:
        data["cells_list"] = [
            {
                "id": cid,
                "done": cid in report.done,
                **report.plan.layout.describe(report.plan.layout.positions_of(cid)[0]),
                "text": cell.params.prompt,
                "scores": {k: v for k, v in report.scores.get(cid, {}).items() if k not in ("type", "id", "time")},
                "rating": report.ratings.ratings.get(cid),
            }
            for cid, cell in report.plan.layout.cells.items()
        ]
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    st = report.status
    print(f"{data['id']}  {data['state']}  {data['done']}/{data['cells']} cells")
    if st.error:
        print(f"  error: {st.error}" + (f"\n  hint: {st.hint}" if st.hint else ""))
    print(f"  {report.view().describe()}")
    print()
    if report.scorer:
        print(f"scores measured by the {report.scorer}:")
    print(format_table(report.summary()))
    from lorawb.matrix.bleed import CharacterRow, format_by_character

    per_character = format_by_character([CharacterRow(**r) for r in data["per_character"]])
    if per_character:
        print()
        print("per character (identity where each stands; bleed: another character's look on it):")
        print(per_character)
    print()
    print("recommendation: " + data["recommendation"])
    for name, rows in data["by_value"].items():
        parts = [f"{r['value']} {r['identity']:.2f}" for r in rows if r["identity"] is not None]
        if parts:
            print(
                f"  identity by {name} at {data['best']['checkpoint']} weight {data['best']['weight']:g}: "
                + " · ".join(parts)
            )
    if args.cells:
        print()
        for c in data["cells_list"]:
            where = " · ".join(str(v) for k, v in c.items() if k not in ("id", "done", "text", "scores", "rating"))
            mark = {"good": "+", "bad": "-"}.get(c["rating"] or "", " ")
            line = report.cell_line(c["id"])
            print(f"{mark} {c['id']}  {'drawn' if c['done'] else 'todo '}  {where}  {line}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from lorawb.core.project import Project
    from lorawb.errors import LorawbError
    from lorawb.matrix.folder import list_matrices
    from lorawb.matrix.report import load_report

    project = Project.load(args.project)
    rows = []
    for folder in list_matrices(project.matrices_dir):
        try:
            rows.append(_report_dict(load_report(folder, project)))
        except LorawbError as exc:
            rows.append({"id": folder.id, "path": str(folder.path), "state": "invalid", "error": str(exc)})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no matrices yet in {project.matrices_dir}; make one with `lorawb matrix new NAME`")
        return 0
    width = max(len(r["id"]) for r in rows)
    run_w = max([len("RUN")] + [len(r.get("run") or "-") for r in rows])
    print(f"{'MATRIX':<{width}}  {'RUN':<{run_w}}  {'STATE':<9} {'CELLS':>11}  RECOMMENDATION")
    for r in rows:
        run = r.get("run") or "-"
        if r["state"] == "invalid":
            print(f"{r['id']:<{width}}  {run:<{run_w}}  invalid    {'-':>11}  {r['error'].splitlines()[0]}")
            continue
        cells = str(r["done"]) + "/" + str(r["cells"])
        print(f"{r['id']:<{width}}  {run:<{run_w}}  {r['state']:<9} {cells:>11}  {r['recommendation']}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from lorawb.errors import LorawbError
    from lorawb.matrix.folder import Ratings
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.promote import promote, resolve_cells

    project, w = _split(args, 1)
    folder = _folder(project, w[0])
    plan = plan_matrix(folder, project)
    cells = resolve_cells(plan.layout, w[1:])
    if args.good:
        good = [cid for cid, r in Ratings.load(folder).ratings.items() if r == "good" and cid in plan.layout.cells]
        cells += [plan.layout.cells[c] for c in good if plan.layout.cells[c] not in cells]
    if not cells:
        raise LorawbError("no cells to promote", hint="give cell ids (`lorawb matrix show SPEC --cells`) or --good")
    result = promote(project, folder, cells, plan.ctx.resolved.trigger)
    for p in result.images:
        print(p.relative_to(project.root).as_posix())
    for cid, why in result.skipped:
        print(f"  skipped {cid}: {why}", file=sys.stderr)
    if result.captions and result.captions.conflicts:
        for c in result.captions.conflicts:
            print(f"  caption not written: {c.rel}: {c.reason}", file=sys.stderr)
    if result.images:
        print(
            f"  {plural(len(result.images), 'image')} in the inbox; triage them (Triage tab, i) or `lorawb captions undo` removes the captions"
        )
    return 0 if result.images or not result.skipped else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from lorawb.errors import LorawbError
    from lorawb.matrix.compare import compare_matrices, format_side_by_side, partner
    from lorawb.matrix.report import load_report

    project, w = _split(args, 1)
    if len(w) > 2:
        raise LorawbError("too many arguments", hint=f"usage: lorawb matrix compare {USAGE['compare']}")
    a = _folder(project, w[0])
    b = _folder(project, w[1]) if len(w) > 1 else partner(project, a)
    if b is None:
        raise LorawbError(
            f"no other matrix with the same spec as {a.id} over another run",
            hint="make one with the same options for the other run: `lorawb matrix new NAME --run RUN`, "
            "or name both: `lorawb matrix compare A B`",
        )
    print(format_side_by_side(compare_matrices(load_report(a, project), load_report(b, project))))
    return 0


def cmd_rate(args: argparse.Namespace) -> int:
    from lorawb.matrix.folder import rate
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.promote import resolve_cells

    project, w = _split(args, 2)
    folder = _folder(project, w[0])
    cells = resolve_cells(plan_matrix(folder, project).layout, w[1:])
    rate(folder, [c.id for c in cells], None if args.rating == "clear" else args.rating)
    print(f"{plural(len(cells), 'cell')} {'cleared' if args.rating == 'clear' else 'rated ' + args.rating}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from lorawb.matrix.process import stop_matrix
    from lorawb.queue import stop_folder

    project, w = _split(args, 1)
    folder = _folder(project, w[0])
    queued = stop_folder(folder.path)
    if queued is not None:
        print(f"{folder.id}: {queued}")
        return 0
    if stop_matrix(folder, wait=args.wait):
        print(f"{folder.id} stopped; `lorawb matrix run {folder.id}` draws the rest")
    else:
        print(f"{folder.id}: stop requested; it stops after the current batch")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lorawb.errors import LorawbError
    from lorawb.matrix.cells import default_view
    from lorawb.matrix.report import export_sheets, load_report

    project, w = _split(args, 1)
    report = load_report(_folder(project, w[0]), project)
    view = None
    if args.rows or args.cols or args.pages:
        base = report.view()

        def names(text: str, fallback: tuple[str, ...]) -> list[str]:
            if text == "none":
                return []
            got = [n.strip() for n in text.split(",") if n.strip()] if text else list(fallback)
            bad = [n for n in got if n not in report.plan.layout.axes]
            if bad:
                raise LorawbError(f"{bad[0]!r} is not an axis", hint="axes: " + ", ".join(report.plan.layout.axes))
            return got

        cols = names(args.cols, base.cols)
        pages = [n for n in names(args.pages, base.pages) if n not in cols]
        rows = [n for n in names(args.rows, ()) if n not in cols + pages]
        view = default_view(report.plan.layout, rows, cols, pages)
        if args.pages == "none":
            view = type(view)(tuple(a for a in view.rows + view.pages if a not in view.cols), view.cols, ())
    grid = report.grid(view)
    pages = None
    if args.page != "all":
        n = _numbers(args.page, int)
        bad = [p for p in n if not 1 <= p <= len(grid.pages)]
        if bad:
            raise LorawbError(f"no page {bad[0]}: the sheet has {plural(len(grid.pages), 'page')}")
        pages = [p - 1 for p in n]
    out = Path(args.out) if args.out else None
    for path in export_sheets(report, view, pages, out):
        print(path)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.runner import score_missing
    from lorawb.matrix.scores import make_scorer

    project, w = _split(args, 1)
    plan = plan_matrix(_folder(project, w[0]), project)
    scorer = make_scorer(project, plan.ctx, plan.settings)
    if not scorer.measures:
        print(f"nothing scored: {scorer.reason}")
        return 1
    n = score_missing(plan, rescore=args.rescore, scorer=scorer)
    print(f"{plural(n, 'cell')} scored by the {scorer.name}")
    return 0


def cmd_regen(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.promote import resolve_cells
    from lorawb.matrix.runner import regenerate

    project, w = _split(args, 2)
    folder = _folder(project, w[0])
    cell = resolve_cells(plan_matrix(folder, project).layout, w[1:2])[0]
    image = regenerate(folder, cell.id, alone=args.alone)
    with Image.open(folder.cell_png(cell.id)) as im:
        before = np.asarray(im.convert("RGB"), dtype=np.int16)
    after = np.asarray(image.convert("RGB"), dtype=np.int16)
    diff = np.abs(before - after)
    if args.out:
        image.save(args.out)
    print(f"{cell.id}: max pixel difference {int(diff.max())} levels, {float((diff > 0).mean()):.3%} of values differ")
    return 0 if diff.max() == 0 or args.alone else 1
