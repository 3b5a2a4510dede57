"""`lorawb sweep [PROJECT] NAME --vary KEY=V1,V2 ...`, `sweep report NAME`, `sweep list`: lorawb.sweep."""

from __future__ import annotations

import argparse
import json
import sys

from lorawb.cli import add_project_arg, split_words
from lorawb.words import plural

USAGE = {
    "new": "lorawb sweep [PROJECT] NAME --vary KEY=VALUE,VALUE [--vary ...] [--product] [--matrix SPEC]",
    "report": "lorawb sweep report [PROJECT] NAME [--out FILE.png]",
    "list": "lorawb sweep list [PROJECT]",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="queue runs that each change one setting, each followed by the same matrix; rank them",
        usage=f"{USAGE['new']}\n       {USAGE['report']}\n       {USAGE['list']}",
    )
    p.add_argument("words", nargs="+", metavar="[report|list] [PROJECT] NAME")
    add_project_arg(p, positional=False)
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a setting and its values, e.g. train.learning_rate=1e-4,2e-4 (repeatable: one at a time)",
    )
    p.add_argument("--product", action="store_true", help="every combination of the --vary values")
    p.add_argument(
        "--matrix", default="", metavar="SPEC", help="the matrix to test each run with (a matrix id or a .toml file)"
    )
    p.add_argument("--config", metavar="FILE", help="a TOML file with base settings (over lorawb.toml's)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="a base setting for every run"
    )
    p.add_argument(
        "--weights", default="0,0.5,0.75,1", help="matrix LoRA weights without --matrix (default 0,0.5,0.75,1)"
    )
    p.add_argument("--seeds", default="0,1", help="matrix seeds without --matrix (default 0,1)")
    p.add_argument("--checkpoints", type=int, default=6, help="matrix checkpoints per run without --matrix")
    p.add_argument("--out", default="", metavar="FILE.png", help="report: write the picture here")
    p.add_argument("--json", action="store_true", help="report/list: machine-readable output")
    p.add_argument("--top", type=int, default=10, help="report: rows of the ranking shown")
    p.set_defaults(func=cmd_sweep, normalize=_normalize)


def _normalize(args: argparse.Namespace) -> None:
    words = list(args.words)
    args.action = words.pop(0) if words and words[0] in ("report", "list") else "new"
    args.name = (split_words(args, words, 0 if args.action == "list" else 1, USAGE[args.action]) or [""])[0]


def cmd_sweep(args: argparse.Namespace) -> int:
    return {"new": cmd_new, "report": cmd_report, "list": cmd_list}[args.action](args)


def cmd_new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lorawb.cli.matrix_cmds import _numbers
    from lorawb.core.project import Project
    from lorawb.matrix.folder import find_matrix
    from lorawb.sweep.plan import MatrixOptions, create_sweep, plan_sweep

    project = Project.load(args.project)
    plan = plan_sweep(
        project, args.name, args.vary, product=args.product, config_file=args.config, overrides=args.overrides
    )
    text = None
    if args.matrix:
        given = Path(args.matrix).expanduser()
        spec = given if given.is_file() else find_matrix(project, args.matrix).spec
        text = spec.read_text(encoding="utf-8")
    options = MatrixOptions(
        weights=tuple(_numbers(args.weights, float)),
        seeds=tuple(_numbers(args.seeds, int)),
        checkpoints=args.checkpoints,
    )
    jobs = create_sweep(project, plan, matrix_text=text, options=options)
    print(f"sweeps/{plan.name}/: {plural(len(plan.variants), 'run')}, each followed by its matrix")
    for v, train, matrix in zip(plan.variants, jobs[::2], jobs[1::2], strict=True):
        print(f"  {v.label:<30} jobs {train.id} (train) → {matrix.id} (matrix)")
    for note in plan.notes:
        print(f"  note: {note}")
    where = "on Slurm" if jobs[0].executor == "slurm" else "on this machine's queue"
    print(f"  queued {where}; `lorawb queue` follows them, `lorawb sweep report {plan.name}` ranks them")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lorawb.core.project import Project
    from lorawb.sweep.report import format_report, load_sweep_report

    project = Project.load(args.project)
    report = load_sweep_report(project, args.name)
    if args.json:
        data = {
            "name": report.name,
            "vary": report.vary,
            "scorer": report.scorer,
            "runs": [vars(e) for e in report.entries],
            "ranking": [c.as_dict() for c in report.candidates],
            "best": report.best.as_dict() if report.best else None,
            "margin": report.margin,
            "spread": report.spread,
            "beats_spread": report.beats_spread,
            "verdict": report.verdict(),
        }
        print(json.dumps(data, indent=2))
    else:
        print(format_report(report, top=args.top), flush=True)
    if args.out:
        from lorawb.sweep.chart import render

        path = render(report, Path(args.out))
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from lorawb.core.project import Project
    from lorawb.sweep.plan import list_sweeps
    from lorawb.sweep.report import load_sweep_report

    project = Project.load(args.project)
    found = list_sweeps(project)
    if not found:
        print("no sweeps yet; `lorawb sweep NAME --vary KEY=V1,V2` starts one")
        return 0
    for path in found:
        r = load_sweep_report(project, path.name)
        done = sum(e.matrix_state == "finished" for e in r.entries)
        best = f"best {r.best.label} at {r.best.checkpoint}" if r.best else r.reason
        print(f"{r.name:<20} {done}/{len(r.entries)} matrices done  {best}")
    return 0
