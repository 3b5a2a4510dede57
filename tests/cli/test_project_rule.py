"""One rule names the project in every command: `-p/--project PROJECT`, or the first word where it is one.

Left out, the project is the current folder or the nearest one above it with lorawb.toml.
"""

from __future__ import annotations

import argparse
import json

import pytest

from lorawb.cli import build_parser, main, parse
from lorawb.core.project import init_project
from lorawb.errors import LorawbError

# Commands that work on no project (a model or image files).
NO_PROJECT = {"make-tiny-model", "toyworld", "queue"}  # the queue is the machine's, shared by its projects


@pytest.fixture
def proj(tmp_path):
    return str(init_project(tmp_path / "proj", trigger="zkx").root)


# (the positional spelling, the -p spelling, what else must parse the same); P is the project
SPELLINGS = [
    (["P"], ["-p", "P"], {"command": "open"}),
    (["open", "P"], ["open", "--project", "P"], {}),
    (["init", "P"], ["init", "-p", "P"], {}),
    (["doctor", "P", "--json"], ["doctor", "--json", "-p", "P"], {"json": True}),
    (["triage", "P", "--list", "all"], ["triage", "-p", "P", "--list", "all"], {"list": "all"}),
    (["dedupe", "P"], ["dedupe", "-p", "P"], {}),
    (["tag", "P", "--dry-run"], ["tag", "--dry-run", "-p", "P"], {"dry_run": True}),
    (["train", "P", "--detach"], ["train", "--detach", "-p", "P"], {"detach": True}),
    (["runs", "P"], ["runs", "-p", "P"], {}),
    (["stop", "P", "abc"], ["stop", "abc", "-p", "P"], {"run": "abc"}),
    (["resume", "P", "abc", "--detach"], ["resume", "abc", "--project", "P", "--detach"], {"run": "abc"}),
    (["watch", "P", "abc"], ["watch", "abc", "-p", "P"], {"run": "abc"}),
    (["watch", "P"], ["watch", "-p", "P"], {"run": "last"}),
    (["compare", "P", "a", "b"], ["compare", "a", "b", "-p", "P"], {"run_a": "a", "run_b": "b"}),
    (["captions", "P", "stats"], ["captions", "stats", "-p", "P"], {}),
    (["captions", "P", "add", "x"], ["captions", "-p", "P", "add", "x"], {}),
    (["matrix", "list", "P"], ["matrix", "list", "-p", "P"], {}),
    *[
        (["matrix", sub, "P", "m1"], ["matrix", sub, "m1", "-p", "P"], {"words": ["m1"]})
        for sub in ("new", "run", "show", "stop", "export", "score", "promote")
    ],
    (["matrix", "rate", "P", "m1", "c1", "--good"], ["matrix", "rate", "m1", "c1", "--good", "-p", "P"], {}),
    (["matrix", "regen", "P", "m1", "c1"], ["matrix", "regen", "-p", "P", "m1", "c1"], {"words": ["m1", "c1"]}),
]


def _fill(argv, p):
    return [p if a == "P" else a for a in argv]


@pytest.mark.parametrize(
    ("positional", "option", "same"), SPELLINGS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_both_spellings_name_the_same_project(proj, positional, option, same):
    a, b = parse(_fill(positional, proj)), parse(_fill(option, proj))
    assert a.project == b.project == proj
    assert a.command == b.command
    for key, value in same.items():
        assert getattr(a, key) == getattr(b, key) == value, key


@pytest.mark.parametrize(
    "argv",
    [
        ["doctor"],
        ["runs"],
        ["tag"],
        ["train"],
        ["stop", "abc"],
        ["watch"],
        ["watch", "abc"],
        ["captions", "stats"],
        ["matrix", "show", "m1"],
        ["matrix", "list"],
        [],
    ],  # fmt: skip
)
def test_left_out_it_is_the_current_folder(argv):
    assert parse(argv).project == "."


def test_two_different_projects_are_an_error(proj, tmp_path):
    other = str(init_project(tmp_path / "other").root)
    for argv in (
        ["runs", proj, "-p", other],
        ["stop", proj, "abc", "-p", other],
        ["captions", proj, "stats", "-p", other],
    ):
        with pytest.raises(LorawbError, match="two projects"):
            parse(argv)
    assert parse(["runs", proj, "-p", proj]).project == proj  # the same one twice is fine


def test_a_first_word_that_is_not_a_project_is_named(tmp_path):
    with pytest.raises(LorawbError, match="not a lorawb project"):
        parse(["stop", str(tmp_path), "abc"])


def _subcommands(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                subs = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                if subs:
                    yield from _subcommands(sub, (*prefix, name))
                else:
                    yield (*prefix, name), sub


def test_every_project_command_takes_dash_p():
    """A new command must follow the rule too: every command but the project-less ones has -p/--project."""
    seen = []
    for path, sub in _subcommands(build_parser()):
        if path[0] in NO_PROJECT:
            continue
        seen.append(" ".join(path))
        opts = {o for a in sub._actions for o in a.option_strings}
        assert {"-p", "--project"} <= opts, f"`lorawb {' '.join(path)}` lacks -p/--project"
    assert {"runs", "stop", "watch", "captions", "matrix show", "init"} <= set(seen)


def test_the_nearest_project_above_the_current_folder(proj, monkeypatch, capsys):
    sub = f"{proj}/dataset"
    monkeypatch.chdir(sub)
    assert main(["doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 0
    assert main(["runs"]) == 0
    assert "no runs yet in" in capsys.readouterr().out
    assert main(["captions", "stats", "--json"]) == 0
