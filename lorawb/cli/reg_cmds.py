"""`lorawb reg generate|status|stop`: regularisation images drawn by the project's base model.

PROJECT comes first and may be left out (the current folder); ``-p/--project`` names it too.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lorawb.cli.queue_cmds import add_queue_option, report_queued


def _project_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", nargs="?", default=None, help="project folder (default: the current one)")
    p.add_argument("-p", "--project", dest="project_opt", default=None, help="project folder (same as PROJECT)")


def register(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("reg", help="regularisation images (kohya's reg/ folders) drawn by the base model")
    rsub = top.add_subparsers(dest="reg_command", metavar="SUBCOMMAND", required=True)
    p = rsub.add_parser(
        "generate",
        help="draw reg images of a class into reg/1_<class>/ (detached; a rerun draws what is missing)",
        usage="lorawb reg generate [PROJECT] --class WORD [--count N] [--prompts FILE] [options]",
    )
    _project_args(p)
    p.add_argument("--class", dest="class_word", required=True, help="the class word, e.g. woman")
    p.add_argument("--count", type=int, default=200, help="images to draw (default 200; kohya advises hundreds)")
    p.add_argument("--prompts", default=None, help="a file of prompts, one per line, {class} replaced")
    p.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    p.add_argument("--seed", type=int, default=0, help="image i is drawn at seed SEED+i")
    p.add_argument("--wait", action="store_true", help="draw here with a progress line instead of detached")
    add_queue_option(p)
    p.set_defaults(func=cmd_generate)
    p = rsub.add_parser("status", help="how far the reg generation is", usage="lorawb reg status [PROJECT]")
    _project_args(p)
    p.set_defaults(func=cmd_status)
    p = rsub.add_parser(
        "stop", help="stop the reg generation after its current batch", usage="lorawb reg stop [PROJECT]"
    )
    _project_args(p)
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait until it has stopped")
    p.set_defaults(func=cmd_stop)


def _project(args: argparse.Namespace) -> Any:
    from lorawb.core.project import Project
    from lorawb.errors import LorawbError

    if args.project and args.project_opt and args.project != args.project_opt:
        raise LorawbError(f"two projects given: {args.project} and -p {args.project_opt}", hint="give one")
    return Project.load(args.project_opt or args.project or ".")


def cmd_generate(args: argparse.Namespace) -> int:
    from lorawb.matrix.reggen import plan_reg, start_reg

    project = _project(args)
    plan = plan_reg(
        project, args.class_word, count=args.count, prompts_file=args.prompts, steps=args.steps, seed=args.seed
    )
    missing = len(plan.missing())
    where = project.reg_dir / plan.out_dir.rsplit("/", 1)[-1]
    print(f"reg images of '{plan.class_word}': {plan.count - missing}/{plan.count} in {where}", flush=True)
    print(f"  {len(plan.prompts)} prompt(s), e.g. '{plan.prompt(0)}'", flush=True)
    if missing == 0:
        return 0
    if args.queue:
        from lorawb.queue import queue_reg

        report_queued(queue_reg(project, plan))
        return 0
    if not args.wait:
        start_reg(project, plan, detach=True)
        print("  drawing in the background; `lorawb reg status` follows it, `lorawb reg stop` stops it")
        return 0
    line = Progress()
    state = start_reg(project, plan, detach=False, progress=line.update)
    line.done()
    print(f"reg generation {state}; the trainer uses {project.reg_dir}/ (dataset.reg_path)")
    return 0 if state in ("finished", "stopped") else 1


def cmd_status(args: argparse.Namespace) -> int:
    from lorawb.matrix.reggen import reg_status

    s = reg_status(_project(args))
    if s.state == "none":
        print("no reg generation in this project; `lorawb reg generate --class WORD` starts one")
        return 0
    print(f"reg generation: {s.state}, {s.done}/{s.total} images in {s.out_dir}" + (f" ({s.error})" if s.error else ""))
    return 0 if s.state != "failed" else 1


def cmd_stop(args: argparse.Namespace) -> int:
    from lorawb.matrix.reggen import RegJob, stop_reg

    project = _project(args)
    if not RegJob.of(project).is_alive():
        print("no reg generation is running")
        return 0
    stopped = stop_reg(project, args.wait)
    print("stopped" if stopped else "asked to stop after its current batch")
    return 0


class Progress:
    """One progress line for a job drawn here (rewritten in place at a terminal, every 5 s in a log)."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = 0.0
        self.drawn = 0  # this process's images (a rerun starts past the ones that exist)

    def update(self, ev: dict[str, Any]) -> None:
        now = time.time()
        self.drawn += 1
        if not self.tty and now - self.last < 5 and ev["done"] != ev["total"]:
            return
        self.last = now
        rate = ev["elapsed"] / self.drawn
        text = f"  {ev['done']}/{ev['total']} images ({rate:.1f} s each) {ev['path']}"
        print(("\r" + text + "\033[K") if self.tty else text, end="" if self.tty else "\n", flush=True)

    def done(self) -> None:
        if self.tty:
            print()
