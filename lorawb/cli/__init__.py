"""The command line: a thin layer over core/train/matrix.

``lorawb [PROJECT]`` opens the app; ``lorawb COMMAND ...`` runs a command.
Each module in COMMAND_MODULES has ``register(subparsers)`` adding its
commands with ``set_defaults(func=handler)``; a handler takes the parsed
args and returns an exit code. LorawbError is printed without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lorawb import __version__
from lorawb.errors import LorawbError

COMMAND_MODULES = [
    "lorawb.cli.app_cmd",
    "lorawb.cli.project_cmds",
    "lorawb.cli.triage_cmds",
    "lorawb.cli.captions_cmd",
    "lorawb.cli.tag_cmd",
    "lorawb.cli.train_cmds",
    "lorawb.cli.watch_cmd",
    "lorawb.cli.matrix_cmds",
    "lorawb.cli.reg_cmds",
    "lorawb.cli.toyworld_cmds",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorawb",
        description="A terminal workbench for character-consistency LoRAs. `lorawb [PROJECT]` opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"lorawb {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    # `lorawb`, `lorawb PATH` and `lorawb --debug PATH` open the app.
    positional = [a for a in argv if not a.startswith("-")]
    opens_app = not positional or positional[0] not in commands
    if opens_app and not any(a in ("-h", "--help", "--version") for a in argv):
        argv = [a for a in argv if a == "--debug"] + ["open"] + [a for a in argv if a != "--debug"]
    args = parser.parse_args(argv)
    debug = args.debug or bool(os.environ.get("LORAWB_DEBUG"))
    try:
        return int(args.func(args) or 0)
    except LorawbError as exc:
        if debug:
            raise
        print(f"lorawb: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lorawb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def add_project_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", nargs="?", default=".", help="project folder (default: the current one)")
