"""`lorawb init` and `lorawb doctor`."""

from __future__ import annotations

import argparse
import json
import sys

from lorawb.cli import add_project_arg
from lorawb.words import plural


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a project folder")
    p.add_argument("project", help="folder to create")
    p.add_argument("--images", metavar="DIR", help="copy this image folder (with its captions) into dataset/")
    p.add_argument("--link", action="store_true", help="with --images: make dataset/ a symlink to DIR instead")
    p.add_argument("--trigger", default="", help="the trigger phrase, e.g. zkx_mira")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("doctor", help="print a health report of the dataset")
    add_project_arg(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--all", action="store_true", help="list every file in each section (default: 10)")
    p.set_defaults(func=cmd_doctor)


def cmd_init(args: argparse.Namespace) -> int:
    from lorawb.core.index import ProjectIndex
    from lorawb.core.project import init_project

    project = init_project(args.project, trigger=args.trigger, images=args.images, link=args.link)
    print(f"created {project.root}")
    if args.images:
        index = ProjectIndex(project)  # the first scan fills the index the app and the doctor read
        try:
            counts = index.refresh().counts()
        finally:
            index.close()
        how = "linked" if args.link else "copied"
        print(
            f"  dataset/ {how} from {args.images}: {plural(counts.images, 'image')}, {counts.caption_files} with captions"
        )
        if counts.unreadable:
            print(f"  {plural(len(counts.unreadable), 'unreadable image')}: `lorawb doctor {project.root}` names them")
    what = "the base model" if project.trigger else "the trigger and the base model"
    print(f"  edit {project.config_path.name} to set {what}, then run `lorawb {project.root}`")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from lorawb.core.doctor import diagnose, render_text
    from lorawb.core.project import Project

    project = Project.load(args.project)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # file names in any script, on any terminal encoding
    report = diagnose(project, progress=_progress_line() if sys.stderr.isatty() else None)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report, limit=None if args.all else 10))
    return 0


def _progress_line():
    """A `scanning 120/10000` line on the terminal, rewritten at most 10 times a second, erased at the end."""
    import time

    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < 0.1:
            return
        last[0] = now
        if done >= total:
            sys.stderr.write("\r\x1b[K")
        else:
            sys.stderr.write(f"\rscanning {done}/{total} images")
        sys.stderr.flush()

    return show
