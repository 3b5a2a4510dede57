"""`lorawb generate`: candidates for a first dataset (v0), drawn from the character sheet into inbox/.

PROJECT comes first and may be left out (the current folder); ``-p/--project`` names it too.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from lorawb.cli import add_project_arg
    from lorawb.cli.queue_cmds import add_queue_option

    p = sub.add_parser(
        "generate",
        help="draw candidates from the character sheet ([generate]) into inbox/ for triage",
        usage="lorawb generate [PROJECT] [--count N] [--with HELPER] [--lora FILE] [--detach|--queue] | --status | --stop "
        "| --score | --regen IMAGE",
        description="Draw the character in every combination of the sheet's contexts, styles, poses, expressions "
        "and outfits (from [tags.groups] by default) into inbox/, each with a trigger-first caption and its "
        "provenance; a rerun draws only what is missing. Then triage: the person keeps and rejects.",
    )
    add_project_arg(p)
    p.add_argument("--count", type=int, default=0, help="images per combination (default: [generate] count)")
    p.add_argument(
        "--with",
        dest="helper",
        choices=["none", "ip-adapter", "controlnet", "edit"],
        default="",
        help="variation helper (default: [generate] with): IP-Adapter on refs/, ControlNet poses, reference editing",
    )
    p.add_argument("--lora", default="", help="a LoRA of the character (v1 → v2): fills the dataset's gaps with it")
    p.add_argument("--weight", type=float, default=None, help="the LoRA's weight (default: [generate] lora_weight)")
    p.add_argument("--detach", action="store_true", help="draw in the background (`--status` follows it)")
    add_queue_option(p)
    p.add_argument("--dry-run", action="store_true", help="say what would be drawn; draw nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run or --status: JSON")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="how far the generate job is")
    what.add_argument("--stop", action="store_true", help="stop the job after its current batch")
    what.add_argument(
        "--score", action="store_true", help="score the candidates again (e.g. after setting an embedder)"
    )
    what.add_argument("--regen", metavar="IMAGE", default=None, help="draw a candidate again from its record")
    p.add_argument("--alone", action="store_true", help="with --regen: draw it alone, not with its batch")
    p.add_argument("--out", default=None, help="with --regen: write the new image here")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="with --stop: wait until it has stopped")
    p.set_defaults(func=cmd_generate)


def _project(args: argparse.Namespace) -> Any:
    from lorawb.core.project import Project

    return Project.load(args.project)


def cmd_generate(args: argparse.Namespace) -> int:
    project = _project(args)
    if args.status:
        return _status(project, args.json)
    if args.stop:
        return _stop(project, args.wait)
    if args.score:
        from lorawb.generate.job import rescore

        print(rescore(project).describe())
        return 0
    if args.regen:
        return _regen(project, args)
    return _draw(project, args)


def _draw(project: Any, args: argparse.Namespace) -> int:
    from lorawb.generate.job import GenerateOptions, plan_generate, start_generate

    plan = plan_generate(
        project, GenerateOptions(count=args.count, helper=args.helper, lora=args.lora, lora_weight=args.weight)
    )
    missing = plan.missing()
    if args.dry_run and args.json:
        print(json.dumps({"total": plan.total, "missing": len(missing), "candidates": plan.candidates}, indent=1))
        return 0
    inbox = project.inbox_dir.relative_to(project.root).as_posix()
    out = sys.stderr if args.queue else sys.stdout  # with --queue, stdout is the job id alone
    say = functools.partial(print, file=out, flush=True)
    say(f"candidates of '{plan.trigger}': {plan.total - len(missing)}/{plan.total} drawn, into {inbox}/")
    for note in plan.notes:
        say(f"  {note}")
    if plan.candidates:
        c = plan.candidates[0]
        say(f"  e.g. prompt '{c['prompt']}', caption '{c['caption']}'")
    helper = f", with {plan.helper['kind']}" if plan.helper else ""
    lora = f", LoRA {plan.lora['label']} at {plan.lora['weight']:g}" if plan.lora else ""
    say(f"  {plan.width}x{plan.height}, {plan.steps} steps, guidance {plan.cfg:g}{helper}{lora}")
    if args.dry_run or not missing:
        return 0
    if args.queue:
        from lorawb.cli.queue_cmds import report_queued
        from lorawb.queue import queue_generate

        report_queued(queue_generate(project, plan))
        return 0
    if args.detach:
        start_generate(project, plan, detach=True)
        print("  drawing in the background; `lorawb generate --status` follows it, `--stop` stops it")
        return 0
    from lorawb.cli.reg_cmds import Progress

    line = Progress()
    state = start_generate(project, plan, detach=False, progress=line.update)
    line.done()
    from lorawb.generate.job import GenerateJob
    from lorawb.generate.presort import last_pass

    scored = last_pass(GenerateJob.of(project).scores_log)
    print(f"generate {state}; triage them in the inbox (`i` in Triage sorts by score with `s`)")
    if scored:
        print(
            f"  pre-sort: {scored.get('scored', 0)} scored by the {scored.get('scorer')} against {scored.get('reference')}"
        )
    return 0 if state in ("finished", "stopped") else 1


def _status(project: Any, as_json: bool) -> int:
    from lorawb.generate.job import GenerateJob, generate_status
    from lorawb.generate.presort import last_pass

    s = generate_status(project)
    scored = last_pass(GenerateJob.of(project).scores_log)
    if as_json:
        print(json.dumps({"state": s.state, "done": s.done, "total": s.total, "error": s.error, "scores": scored}))
        return 0 if s.state != "failed" else 1
    if s.state == "none":
        print("no generate job in this project; `lorawb generate` starts one")
        return 0
    print(f"generate: {s.state}, {s.done}/{s.total} candidates" + (f" ({s.error})" if s.error else ""))
    if scored:
        what = scored.get("reason") if not scored.get("scored") else f"by the {scored.get('scorer')}"
        print(f"  pre-sort: {scored.get('scored', 0)} scored {what}, against {scored.get('reference')}")
    return 0 if s.state != "failed" else 1


def _stop(project: Any, wait: float) -> int:
    from lorawb.generate.job import GenerateJob, stop_generate

    if not GenerateJob.of(project).is_alive():
        print("no generate job is running")
        return 0
    print("stopped" if stop_generate(project, wait) else "asked to stop after its current batch")
    return 0


def _regen(project: Any, args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from lorawb.generate.job import existing_image, find_record, regenerate

    rec = find_record(project, args.regen)
    image = regenerate(project, args.regen, alone=args.alone)
    if args.out:
        image.save(args.out)
    before_path = existing_image(project, rec)
    if before_path is None:
        print(
            f"{rec['id']}: drawn again"
            + (f" into {args.out}" if args.out else "")
            + " (its PNG is gone: nothing to compare)"
        )
        return 0
    with Image.open(before_path) as im:
        before = np.asarray(im.convert("RGB"), dtype=np.int16)
    diff = np.abs(before - np.asarray(image.convert("RGB"), dtype=np.int16))
    print(
        f"{rec['id']}: max pixel difference {int(diff.max())} levels, {float((diff > 0).mean()):.3%} of values differ"
    )
    return 0 if diff.max() == 0 or args.alone else 1
