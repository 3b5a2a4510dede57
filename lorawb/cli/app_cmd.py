"""`lorawb [PROJECT]` / `lorawb open PROJECT`: the Textual app."""

from __future__ import annotations

import argparse

from lorawb.cli import add_project_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("open", help="open the workbench (the default command)")
    add_project_arg(p)
    p.add_argument(
        "--images", choices=["auto", "halfcell", "unicode", "sixel", "tgp"], help="force the image rendering mode"
    )
    p.add_argument("--theme", help="theme name (see themes/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorawb.core.project import Project

    project = Project.load(args.project)
    from lorawb.tui.app import LorawbApp  # imported late: textual-image probes the terminal on import

    app = LorawbApp(project, images=args.images, theme=args.theme)
    app.run()
    return app.return_code or 0
