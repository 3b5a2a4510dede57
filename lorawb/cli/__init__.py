"""The command line: a thin layer over core/train/matrix.

``lorawb [PROJECT]`` opens the app; ``lorawb COMMAND ...`` runs a command.
Each module in COMMAND_MODULES has ``register(subparsers)`` adding its
commands with ``set_defaults(func=handler)``; a handler takes the parsed
args and returns an exit code. LorawbError is printed without a traceback.

One rule names the project in every command: ``-p/--project PROJECT`` anywhere on the
line, or the command's first word (``lorawb runs PROJECT``, ``lorawb stop PROJECT RUN``);
left out, the current folder or the nearest folder above it holding lorawb.toml.
``parse(argv)`` applies it (each command's ``normalize`` default splits its words) and
leaves the folder in ``args.project``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
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
    "lorawb.cli.generate_cmd",
    "lorawb.cli.queue_cmds",
    "lorawb.cli.sweep_cmds",
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


# Options whose value is a separate word: the word after them is not a command.
_VALUE_OPTIONS = ("-p", "--project", "--images", "--theme")


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line, the project rule applied: ``args.project`` is the project folder."""
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    # `lorawb`, `lorawb PATH`, `lorawb -p PATH` and `lorawb --debug PATH` open the app.
    positional = [
        a for i, a in enumerate(argv) if not a.startswith("-") and (i == 0 or argv[i - 1] not in _VALUE_OPTIONS)
    ]
    opens_app = not positional or positional[0] not in commands
    if opens_app and not any(a in ("-h", "--help", "--version") for a in argv):
        argv = [a for a in argv if a == "--debug"] + ["open"] + [a for a in argv if a != "--debug"]
    args = parser.parse_args(argv)
    normalize = getattr(args, "normalize", None)
    if normalize is not None:
        normalize(args)
    elif hasattr(args, "project_opt"):
        args.project = project_dir(args.project_opt, getattr(args, "project", None))
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("LORAWB_DEBUG"))
    try:
        args = parse(argv)
        debug = args.debug or debug
        recover(args)
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
    finally:
        _print_notices()


def recover(args: argparse.Namespace) -> None:
    """Before a command touches a project: finish or drop what a killed lorawb left half done there."""
    folder = getattr(args, "project", None)
    if folder is None or getattr(args, "command", None) == "init":
        return
    from lorawb.core import journal
    from lorawb.core.project import Project

    try:
        project = Project.load(folder)
    except LorawbError:
        return  # the command says what is wrong with the folder
    try:
        messages = journal.recover(project)
    except (sqlite3.Error, OSError):
        return  # a read-only or full .lorawb/: the command meets it and says so, or does not need it
    for message in messages:
        print(f"lorawb: {message}", file=sys.stderr)


def _print_notices() -> None:
    """What the state layer found on the way (a damaged .lorawb/state.sqlite moved aside)."""
    state = sys.modules.get("lorawb.core.state")
    if state is not None:
        for notice in state.take_notices():  # type: ignore[attr-defined]
            print(f"lorawb: note: {notice}", file=sys.stderr)


PROJECT_HELP = "project folder (default: the current folder or the nearest one above it with lorawb.toml)"


def add_project_arg(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """``-p/--project PROJECT``, and (``positional``) an optional first word that is the project."""
    if positional:
        p.add_argument("project", nargs="?", default=None, help=PROJECT_HELP)
    p.add_argument("-p", "--project", dest="project_opt", metavar="PROJECT", default=None, help=PROJECT_HELP)


def project_dir(option: str | None, word: str | None = None) -> str:
    """The project named by ``-p`` or by the first word (both: they must agree); else ``.``."""
    from pathlib import Path

    if option and word and Path(option).expanduser().resolve() != Path(word).expanduser().resolve():
        raise LorawbError(f"two projects given: -p {option} and {word}", hint="name the project once")
    return option or word or "."


def is_project(word: str) -> bool:
    """``word`` names a project folder (or its lorawb.toml)."""
    from pathlib import Path

    p = Path(word).expanduser()
    return (p / "lorawb.toml").is_file() or (p.name == "lorawb.toml" and p.is_file())


def split_words(args: argparse.Namespace, words: list[str], needed: int, usage: str) -> list[str]:
    """For ``[PROJECT] WORD…`` commands: with more than ``needed`` words the first is the project.

    Sets ``args.project`` and returns the other words.
    """
    words = list(words)
    word = None
    if len(words) > needed:
        word = words.pop(0)
        if not is_project(word):
            raise LorawbError(f"{word!r} is not a lorawb project (no lorawb.toml there)", hint=f"usage: {usage}")
        if len(words) > needed:
            raise LorawbError("too many arguments", hint=f"usage: {usage}")
    elif len(words) < needed:
        raise LorawbError("missing arguments", hint=f"usage: {usage}")
    args.project = project_dir(getattr(args, "project_opt", None), word)
    return words
