"""`lorawb init` and `lorawb doctor`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a project folder")
    p.add_argument("project", help="folder to create")
    p.add_argument("--images", help="copy this image folder into dataset/")
    p.add_argument("--link", action="store_true", help="with --images: symlink instead of copying")
    p.add_argument("--trigger", default="", help="the trigger phrase, e.g. zkx_mira")
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from lorawb.core.project import init_project

    project = init_project(args.project, trigger=args.trigger, images=args.images, link=args.link)
    print(f"created {project.root}")
    print(f"  edit {project.config_path.name} to set the trigger and the base model, then `lorawb {project.root}`")
    return 0
