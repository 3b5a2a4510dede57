"""`lorawb captions [PROJECT] OP ...`: bulk caption edits with preview and undo, tag stats, composition.

A thin layer over lorawb.core.caption_ops / caption_history / caption_stats / composition.
Exit codes: 0 done, 1 some files were not written (changed on disk meanwhile), 2 a user
error (bad regex, unknown tag, bad filter...), as every lorawb command.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

from lorawb.cli import PROJECT_HELP, project_dir
from lorawb.words import plural

OPS = (
    "add",
    "remove",
    "replace",
    "move",
    "regex",
    "trigger",
    "rename-trigger",
    "triggers",
    "dedupe",
    "sort",
    "strip",
    "utf8",
    "undo",
    "redo",
    "history",
    "stats",
    "composition",
)

USAGE = "lorawb captions [PROJECT] OP ... [-p PROJECT] [--where FILTER] [--dry-run] [--json]"
EPILOG = """\
operations:
  add TAG [--at start|end|after-trigger]   add a tag where missing (default: end)
  remove TAG                               remove a tag (any weight: (tag:1.2) too)
  replace OLD NEW                          rename a tag, keeping its weight
  move TAG [--to front|back]               move a tag (front: right after the trigger)
  regex PATTERN REPLACEMENT                Python regex over each caption (\\1 for groups)
  trigger NAME                             put the trigger first in every caption
  rename-trigger OLD NEW                   rename the trigger everywhere (whole words); lorawb.toml follows
  triggers                                 several characters: lead each caption with its image's triggers
  dedupe | sort | strip                    drop repeated tags | sort (trigger first) | drop empty tags
  utf8                                     store as UTF-8 without BOM (edits otherwise keep each file's encoding)
  undo [N] [--id ID] | redo [N] | history  step back / forward through applied operations (anyone's;
                                           each step says who made it); history lists them by author
  stats [--top N]                          tag frequency, co-occurrence with the trigger
  composition [--by GROUP,GROUP]           images per tag group value and pair; the gaps

filters (--where, repeatable, AND'ed):
  has:TAG  -has:TAG  text:WORDS  -text:WORDS  in:FOLDER  file:PATH   e.g. --where 'has:forest -has:"pixel art"'
  char:NAME  char:A+B  joint  char:none  (several characters: images holding NAME, both, two or more, none)

--dry-run prints the diff of every file that would change and writes nothing.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "captions",
        help="bulk-edit captions (tags, trigger) with preview and undo; tag stats; composition",
        usage=USAGE,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=run, normalize=_split)


def _common(p: argparse.ArgumentParser, prefix: str = "") -> None:
    # The options may come before PROJECT, between PROJECT and OP, or after OP: each place gets its
    # own dests (a subparser's defaults would otherwise overwrite what was given before OP).
    p.add_argument(
        "--where", action="append", dest=prefix + "where", metavar="FILTER", help="limit to captions matching FILTER"
    )
    p.add_argument("--dry-run", action="store_true", dest=prefix + "dry_run", help="print the diff; change nothing")
    p.add_argument("--json", action="store_true", dest=prefix + "json", help="machine-readable output")
    p.add_argument("-p", "--project", dest=prefix + "project_opt", metavar="PROJECT", help=PROJECT_HELP)


def _inner_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorawb captions [PROJECT]", usage=USAGE, epilog=EPILOG, add_help=True)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _common(parser, "top_")
    common = argparse.ArgumentParser(add_help=False)
    _common(common)
    ops = parser.add_subparsers(dest="op", metavar="OP")

    def op(name: str, help: str) -> argparse.ArgumentParser:
        return ops.add_parser(name, help=help, parents=[common])

    a = op("add", "add a tag where missing")
    a.add_argument("tag")
    a.add_argument("--at", choices=["start", "end", "after-trigger"], default="end")
    op("remove", "remove a tag").add_argument("tag")
    r = op("replace", "rename a tag, keeping its weight")
    r.add_argument("old")
    r.add_argument("new")
    m = op("move", "move a tag to the front (after the trigger) or the back")
    m.add_argument("tag")
    m.add_argument("--to", choices=["front", "back"], default="front")
    x = op("regex", "regex replace over each caption")
    x.add_argument("pattern")
    x.add_argument("replacement")
    op("trigger", "put the trigger first in every caption").add_argument("name")
    rt = op("rename-trigger", "rename the trigger everywhere")
    rt.add_argument("old")
    rt.add_argument("new")
    op("triggers", "several characters: lead each caption with the triggers of the characters its image holds")
    op("dedupe", "drop repeated tags")
    op("sort", "sort tags (the trigger stays first)")
    op("strip", "drop empty tags")
    op("utf8", "store the captions as UTF-8 without a BOM (the text unchanged; every other edit keeps the encoding)")
    u = op("undo", "undo the last N operations (whoever made them: the CLI or an app window)")
    u.add_argument("n", nargs="?", type=int, default=1)
    u.add_argument("--id", type=int, dest="op_id", help="undo this one history entry (see `history`) instead")
    op("redo", "redo the last N undone operations").add_argument("n", nargs="?", type=int, default=1)
    op("history", "list the operations that can be undone / redone")
    s = op("stats", "tag frequency and the trigger")
    s.add_argument("--top", type=int, default=40, help="show the N most frequent tags (0: all)")
    c = op("composition", "images per tag group value and pair of groups; the gaps")
    c.add_argument("--by", help="one group or a pair, e.g. context,style (default: all pairs)")
    return parser


def _split(args: argparse.Namespace) -> None:
    """`captions [PROJECT] OP …` with -p anywhere: ``args.ns`` is the parsed OP, ``args.project`` the folder."""
    rest = list(args.rest)
    word = None
    if rest and rest[0] not in OPS and not rest[0].startswith("-"):
        word = rest.pop(0)
    args.ns = _inner_parser().parse_args(rest) if rest else None
    opts = [args.project_opt] + ([args.ns.top_project_opt, args.ns.project_opt] if args.ns else [])
    given = [o for o in opts if o]
    option = given[0] if given else None
    for other in given[1:]:
        project_dir(option, other)  # two different -p: an error
    args.project = project_dir(option, word)


def run(args: argparse.Namespace) -> int:
    inner = _inner_parser()
    if args.ns is None:
        inner.print_help(sys.stderr)
        return 2
    ns = args.ns
    project_path = args.project
    ns.where = (args.where or []) + (ns.top_where or []) + (ns.where or [])
    ns.dry_run = args.dry_run or ns.top_dry_run or ns.dry_run
    ns.json = args.json or ns.top_json or ns.json

    from lorawb.core.project import Project

    project = Project.load(project_path)
    handler = {
        "undo": _undo,
        "redo": _redo,
        "history": _history,
        "stats": _stats,
        "composition": _composition,
    }.get(ns.op, _edit)
    return handler(project, ns)


# --- bulk edits ---------------------------------------------------------------


def _operation(project: Any, ns: argparse.Namespace) -> Any:
    from lorawb.core import caption_ops as co
    from lorawb.core.characters import characters_of

    a = {"add": "tag", "remove": "tag", "move": "tag", "replace": "old", "regex": "pattern", "trigger": "name"}
    b = {"replace": "new", "regex": "replacement", "rename-trigger": "new"}
    first = getattr(ns, "old" if ns.op == "rename-trigger" else a.get(ns.op, ""), "") or ""
    second = getattr(ns, b.get(ns.op, ""), "") or ""
    position = getattr(ns, "at", None) or getattr(ns, "to", None) or ""
    return co.make_operation(ns.op, first, second, position, project.trigger, characters_of(project.config))


def _edit(project: Any, ns: argparse.Namespace) -> int:
    from lorawb.core import caption_ops
    from lorawb.core.caption_writes import CaptionWrites, keep_trigger_in_step
    from lorawb.core.characters import characters_of

    op = _operation(project, ns)
    selection = caption_ops.parse_where(ns.where, characters_of(project.config))
    cs = caption_ops.build_changeset(project, op, selection)
    if ns.dry_run:
        if ns.json:
            _print_json(
                {
                    "op": cs.label,
                    "selection": cs.selection,
                    "dry_run": True,
                    "scanned": cs.scanned,
                    "caption_files": cs.caption_files,
                    "changed": len(cs),
                    "created": cs.created,
                    "unreadable_images": [{"path": p, "reason": r} for p, r in cs.unreadable],
                    "files": [{"path": c.rel, "old": c.old, "new": c.new} for c in cs.changes],
                }
            )
        else:
            _print_diff(cs.diff())
            print(f"{cs.label}: {cs.counts(verb='would change')} ({cs.selection}); nothing written")
        return 0
    result = CaptionWrites(project).apply(cs) if len(cs) else None
    written = result.written if result else []
    conflicts = result.conflicts if result else []
    config_note = keep_trigger_in_step(project, op, written)
    if ns.json:
        _print_json(
            {
                "op": cs.label,
                "selection": cs.selection,
                "dry_run": False,
                "scanned": cs.scanned,
                "caption_files": cs.caption_files,
                "changed": len(written),
                "created": cs.created,
                "unreadable_images": [{"path": p, "reason": r} for p, r in cs.unreadable],
                "written": written,
                "conflicts": [{"path": c.rel, "reason": c.reason} for c in conflicts],
                "history_id": result.op_id if result else None,
                "config": config_note,
            }
        )
        return 1 if conflicts else 0
    if not len(cs):
        print(f"{cs.label}: no caption needs changing ({cs.scope()} looked at, {cs.selection})")
    else:
        print(f"{cs.label}: {cs.counts(len(written), verb='changed')} ({cs.selection})")
    lossy = [c.rel for c in cs.lossy if c.rel in set(written)]
    if lossy:
        print(
            f"  {len(lossy)} of them could not keep their 8-bit encoding (a new character) and are now UTF-8: {', '.join(lossy[:5])}"
        )
    _print_conflicts(conflicts, "not written")
    if config_note:
        print(f"  lorawb.toml: {config_note}")
    if written:
        print(f"  undo with: lorawb captions {shlex.quote(str(project.root))} undo")
    return 1 if conflicts else 0


# --- history --------------------------------------------------------------------


def _undo(project: Any, ns: argparse.Namespace) -> int:
    from lorawb.core.caption_writes import CaptionWrites

    if ns.op_id is not None:
        return _print_steps([CaptionWrites(project).undo_op(ns.op_id)], ns, "undo")
    return _print_steps(CaptionWrites(project).undo(ns.n), ns, "undo")


def _redo(project: Any, ns: argparse.Namespace) -> int:
    from lorawb.core.caption_writes import CaptionWrites

    return _print_steps(CaptionWrites(project).redo(ns.n), ns, "redo")


def _print_steps(results: list[Any], ns: argparse.Namespace, verb: str) -> int:
    conflicts = any(r.conflicts for r in results)
    if ns.json:
        _print_json(
            [
                {
                    "op": r.label,
                    "history_id": r.op_id,
                    "author": r.author,
                    "created": r.created,
                    "written": r.written,
                    "conflicts": [{"path": c.rel, "reason": c.reason} for c in r.conflicts],
                }
                for r in results
            ]
        )
        return 1 if conflicts else 0
    if not results:
        print(f"nothing to {verb}")
        return 0
    for r in results:
        done = "restored" if verb == "undo" else "rewrote"
        print(f"{r.label}: {done} {plural(len(r.written), 'caption')} ({_made_by(r.author, r.created)})")
        _print_conflicts(r.conflicts, "left as it is on disk")
    return 1 if conflicts else 0


def _made_by(author: str | None, created: float | None) -> str:
    """``made by window 3fa2c1 at 2026-12-02 14:03``."""
    import time

    from lorawb.core import caption_history

    at = f" at {time.strftime('%Y-%m-%d %H:%M', time.localtime(created))}" if created is not None else ""
    return f"made by {caption_history.describe_author(author)}{at}"


def _history(project: Any, ns: argparse.Namespace) -> int:
    import time

    from lorawb.core import caption_history

    entries = caption_history.history(project, limit=50)
    if ns.json:
        _print_json([e.__dict__ for e in entries])
        return 0
    if not entries:
        print("no caption operations yet")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created))
        undone = {
            "undone": "  (undone: redo brings it back)",
            "superseded": "  (undone, then replaced by a later edit)",
        }.get(e.state, "")
        who = caption_history.describe_author(e.author).replace(" (before authors were recorded)", "")
        print(f"{e.id:>5}  {when}  {who:<13}  {plural(e.files, 'file'):>11}  {e.label}{undone}")
    return 0


# --- stats and composition ------------------------------------------------------


def _stats(project: Any, ns: argparse.Namespace) -> int:
    from lorawb.core import caption_ops
    from lorawb.core.caption_stats import tag_stats
    from lorawb.core.characters import characters_of

    chars = characters_of(project.config)
    files = caption_ops.load_captions(project, caption_ops.parse_where(ns.where, chars))
    st = tag_stats(files, project.trigger, chars)
    if ns.json:
        _print_json(
            {
                "trigger": st.trigger,
                "images": st.total,
                "captioned": st.captioned,
                "lead_with_trigger": st.with_trigger,
                "missing_trigger": st.missing_trigger,
                "uncaptioned": st.uncaptioned,
                "tags": [
                    {k: v for k, v in t.__dict__.items() if k != "by_group"}
                    | ({"by_character": dict(zip(st.groups, t.by_group, strict=True))} if st.groups else {})
                    for t in st.tags
                ],
            }
        )
        return 0
    print(f"{plural(st.total, 'image')}, {st.captioned} captioned, {plural(len(st.tags), 'distinct tag')}")
    if st.groups:
        n_missing = len(st.missing_trigger)
        print(
            f"each image's own triggers lead {plural(st.with_trigger, 'caption')} (in lorawb.toml's order); "
            f"{n_missing} " + ("does not" if n_missing == 1 else "do not")
        )
        for img in st.missing_trigger[:10]:
            print(f"  not led by its triggers: {img}")
        if len(st.missing_trigger) > 10:
            print(f"  ... and {len(st.missing_trigger) - 10} more (fix: lorawb captions triggers)")
    elif st.trigger:
        n_missing = len(st.missing_trigger)
        print(
            f"trigger {st.trigger!r} leads {plural(st.with_trigger, 'caption')}; {n_missing} "
            + ("does not" if n_missing == 1 else "do not")
        )
        for img in st.missing_trigger[:10]:
            print(f"  missing trigger: {img}")
        if len(st.missing_trigger) > 10:
            print(f"  ... and {len(st.missing_trigger) - 10} more (fix: lorawb captions trigger {st.trigger})")
    else:
        print("no trigger set in lorawb.toml ([project] trigger)")
    if st.uncaptioned:
        print(f"{plural(len(st.uncaptioned), 'image')} {'has' if len(st.uncaptioned) == 1 else 'have'} no caption")
    shown = st.tags if ns.top <= 0 else st.tags[: ns.top]
    print()
    trig = "w/trigger" if st.trigger else ""
    widths = [max(5, len(g)) for g in st.groups]  # several characters: a column each, and each pair
    per = "".join(f" {g:>{w}}" for g, w in zip(st.groups, widths, strict=True))
    print(f"{'count':>6} {'%':>5} {trig:>9}{per}  tag")
    for t in shown:
        pct = 100.0 * t.count / max(1, st.total)
        co = f"{t.with_trigger:>9}" if st.trigger else " " * 9
        per = "".join(f" {n:>{w}}" for n, w in zip(t.by_group, widths, strict=True))
        print(f"{t.count:>6} {pct:>5.1f} {co}{per}  {t.name}")
    if len(shown) < len(st.tags):
        print(f"... {len(st.tags) - len(shown)} more (--top 0 shows all)")
    return 0


def _composition(project: Any, ns: argparse.Namespace) -> int:
    from lorawb.core import caption_ops
    from lorawb.core.characters import characters_of
    from lorawb.core.composition import composition

    by = [g.strip() for g in ns.by.split(",") if g.strip()] if ns.by else None
    chars = characters_of(project.config)
    files = caption_ops.load_captions(project, caption_ops.parse_where(ns.where, chars))
    comp = composition(files, project.config.tags.groups, by, chars)
    if ns.json:
        _print_json(
            {
                "images": comp.total,
                "groups": comp.groups,
                "values": comp.value_counts,
                "missing": comp.missing,
                "pairs": [
                    {
                        "rows": t.rows,
                        "cols": t.cols,
                        "counts": [[a, b, n] for (a, b), n in t.counts.items()],
                        "empty": [list(c) for c in t.empty],
                        "thin": [list(c) for c in t.thin],
                        "thin_below": t.threshold,
                    }
                    for t in comp.pairs
                ],
            }
            | ({"cells": {k: [list(c) for c in v] for k, v in comp.cells.items()}} if comp.cells else {})
        )
        return 0
    print(plural(comp.total, "image"))
    for g, values in comp.groups.items():
        counts = comp.value_counts[g]
        parts = ", ".join(f"{v} {counts[v]}" for v in values)
        print(f"{g}: {parts}; naming none: {len(comp.missing[g])}")
    for t in comp.pairs:
        print()
        corner = f"{t.rows} \\ {t.cols}"
        w = max([len(corner)] + [len(v) for v in t.row_values])
        cw = [max(5, len(c)) for c in t.col_values]
        print(f"{corner:<{w}}  " + "  ".join(f"{c:>{n}}" for c, n in zip(t.col_values, cw, strict=True)))
        for r in t.row_values:
            cells = []
            for c, n in zip(t.col_values, cw, strict=True):
                k = t.counts[(r, c)]
                mark = "!" if k == 0 else ("?" if k < t.threshold else " ")
                cells.append(f"{str(k) + mark:>{n}}")
            print(f"{r:<{w}}  " + "  ".join(cells))
        gaps = [f"{a} x {b} (empty)" for a, b in t.empty]
        gaps += [f"{a} x {b} (thin: {t.counts[(a, b)]})" for a, b in t.thin]
        print(f"gaps ({t.rows} x {t.cols}, thin below {t.threshold}): " + ("; ".join(gaps) if gaps else "none"))
    if comp.cells and comp.cell_groups:
        a, b = comp.cell_groups
        print()
        print(f"{a} x {b} cells each character (alone) and pair (together) has, of {comp.cells_total()}:")
        for label, cells in comp.cells.items():
            print(f"  {label}: {len(cells)}" + (" — " + ", ".join(f"{x} x {y}" for x, y in cells) if cells else ""))
    return 0


# --- output helpers ---------------------------------------------------------------


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _print_conflicts(conflicts: list[Any], what: str) -> None:
    for c in conflicts[:20]:
        print(f"  conflict: {c.rel}: {c.reason} ({what})")
    if len(conflicts) > 20:
        print(f"  ... and {len(conflicts) - 20} more conflicts")


def _print_diff(diff: str) -> None:
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    if not color:
        sys.stdout.write(diff)
        return
    for line in diff.splitlines(keepends=True):
        if line.startswith(("+++", "---")):
            sys.stdout.write(f"\x1b[1m{line.rstrip()}\x1b[0m\n")
        elif line.startswith("+"):
            sys.stdout.write(f"\x1b[32m{line.rstrip()}\x1b[0m\n")
        elif line.startswith("-"):
            sys.stdout.write(f"\x1b[31m{line.rstrip()}\x1b[0m\n")
        elif line.startswith("@@"):
            sys.stdout.write(f"\x1b[36m{line.rstrip()}\x1b[0m\n")
        else:
            sys.stdout.write(line)
