"""`lorawb triage` (list, decide, undo) and `lorawb dedupe` (near-duplicate groups): triage for scripts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lorawb.cli import add_project_arg
from lorawb.words import plural


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "triage",
        help="list images by triage state, or keep/reject/flag/clear them",
        description="Without options: counts. --list STATE prints one path per line (relative to the project).",
    )
    add_project_arg(p)
    p.add_argument("--list", metavar="STATE", help="all, unreviewed, kept, rejected or flagged")
    p.add_argument("--inbox", action="store_true", help="the inbox instead of the dataset")
    p.add_argument("--missing-caption", action="store_true", help="only images without a caption")
    p.add_argument("--low-res", action="store_true", help="only images below [project] min_resolution")
    p.add_argument("--dups", action="store_true", help="only images in a near-duplicate group (hashes them)")
    p.add_argument("--has-tag", metavar="TAG", help="only captions with this tag")
    p.add_argument("--lacks-tag", metavar="TAG", help="only captions without this tag")
    p.add_argument("--folder", metavar="SUBFOLDER", help="only this dataset subfolder (and below)")
    p.add_argument(
        "--character",
        metavar="NAME",
        help="only images holding this character ([characters.NAME]), a pair (mira+tom), joint or none",
    )
    p.add_argument("--joint", action="store_true", help="only images holding two characters or more")
    p.add_argument("--sort", choices=["name", "time", "size", "aspect"], default="name")
    p.add_argument("--reverse", action="store_true")
    p.add_argument("--json", action="store_true", help="JSON objects with the facts of each image")
    act = p.add_mutually_exclusive_group()
    for name, what in (
        ("keep", "mark as kept (inbox images move into --into or [triage] keep_folder)"),
        ("reject", "move into rejected/ with the caption"),
        ("flag", "mark for a second look"),
        ("clear", "back to unreviewed (rejected images move back)"),
    ):
        act.add_argument(f"--{name}", nargs="+", metavar="IMAGE", help=what)
    act.add_argument("--undo", action="store_true", help="undo the last decision")
    p.add_argument("--into", metavar="FOLDER", help="with --keep on inbox images: the dataset folder to move into")
    p.set_defaults(func=cmd_triage)

    d = sub.add_parser("dedupe", help="near-duplicate groups (perceptual hash)")
    add_project_arg(d)
    d.add_argument(
        "--threshold", type=int, metavar="N", help="max Hamming distance, 0-64 (default: [triage] dup_threshold)"
    )
    d.add_argument("--no-inbox", action="store_true", help="leave the inbox out")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dedupe)


def _rel(project, raw: str, known: list[str]) -> str:
    """An image argument: a path from here if it exists, else relative to the project, else to dataset/,
    else a file name that names one image of the project (``known``: every image, relative to it)."""
    from lorawb.errors import LorawbError

    p = Path(raw).expanduser()
    if p.exists() or p.is_absolute():
        p = p.resolve() if not p.is_symlink() else p.absolute()
        try:
            return p.relative_to(project.root).as_posix()
        except ValueError:
            pass
    if (project.root / raw).exists():
        return Path(raw).as_posix()
    if (project.dataset_dir / raw).exists():
        return (project.dataset_dir / raw).relative_to(project.root).as_posix()
    name = Path(raw).as_posix()
    if name in known:
        return name  # listed but gone from disk: the decision says so
    matches = [rel for rel in known if rel == name or rel.endswith("/" + name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(matches[:5]) + (" …" if len(matches) > 5 else "")
        raise LorawbError(
            f"{raw!r} names {plural(len(matches), 'image')}: {shown}", hint="give the path relative to the project"
        )
    raise LorawbError(
        f"no image {raw!r} in this project",
        path=project.root,
        hint="give its path relative to the project, or a file name (`lorawb triage --list all` lists them)",
    )


def _exists(project, raw: str) -> bool:
    return any(p.exists() for p in (Path(raw).expanduser(), project.root / raw, project.dataset_dir / raw))


def cmd_triage(args: argparse.Namespace) -> int:
    from lorawb.core import triage as tri
    from lorawb.core.characters import characters_of
    from lorawb.core.project import Project

    project = Project.load(args.project)
    store = tri.Triage(project)
    try:
        if args.undo:
            d = store.undo_last()
            print("nothing to undo" if d is None else f"undone: {d.new_rel} ({d.state})")
            return 0
        for action in tri.ACTIONS:
            targets = getattr(args, action)
            if targets:
                known = [i.rel for i in store.items()] if not all(_exists(project, r) for r in targets) else []
                for raw in targets:
                    d = store.decide(action, _rel(project, raw, known), keep_folder=args.into)
                    arrow = f" -> {d.new_rel}" if d.moved else ""
                    print(f"{d.action}: {d.rel}{arrow}")
                return 0
        chars = characters_of(project.config)
        flt = tri.Filter(
            character=tri.character_filter("joint" if args.joint else args.character, chars),
            area=tri.INBOX if args.inbox else tri.DATASET,
            state=tri.parse_state(args.list),
            missing_caption=args.missing_caption,
            low_res=args.low_res,
            duplicates=args.dups,
            has_tag=args.has_tag,
            lacks_tag=args.lacks_tag,
            folder=args.folder,
        )
        items = store.items()
    finally:
        store.close()
    dup_rels: set[str] = set()
    if args.dups:
        from lorawb.core.dedupe import find_duplicates

        dup_rels = find_duplicates(project).dup_rels
    min_res = project.config.project.min_resolution
    if args.list is None and not args.json and not _any_filter(args):
        print(tri.count(items, area=flt.area, min_resolution=min_res).line())
        cast = tri.cast_of(items, chars, area=flt.area)
        if cast is not None:
            print(f"characters: {cast.summary()} (alone; pairs together) · {cast.joint} joint")
        return 0
    shown = tri.apply_filter(
        items, flt, min_resolution=min_res, dup_rels=dup_rels, sort=args.sort, reverse=args.reverse, chars=chars
    )
    if args.json:
        json.dump([_item_json(i) for i in shown], sys.stdout, indent=1)
        print()
    else:
        for i in shown:
            print(i.rel)
    return 0


def _any_filter(args: argparse.Namespace) -> bool:
    return any(
        (
            args.missing_caption,
            args.low_res,
            args.dups,
            args.has_tag,
            args.lacks_tag,
            args.folder,
            args.character,
            args.joint,
        )
    )


def _item_json(i) -> dict:
    return {
        "path": i.rel,
        "state": i.state,
        "decided_at": i.decided_at,
        "folder": i.folder,
        "width": i.width,
        "height": i.height,
        "mode": i.mode,
        "format": i.format,
        "size_bytes": i.size_bytes,
        "caption": i.caption_text,
        "error": i.error,
    }


def cmd_dedupe(args: argparse.Namespace) -> int:
    from lorawb.core.dedupe import find_duplicates
    from lorawb.core.project import Project
    from lorawb.errors import ConfigError

    project = Project.load(args.project)
    if args.threshold is not None and not 0 <= args.threshold <= 64:
        raise ConfigError(f"--threshold {args.threshold}: must be 0-64 (bits of a 64-bit hash)")

    def progress(done: int, total: int) -> None:
        if total and sys.stderr.isatty():
            print(f"\rhashing {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    res = find_duplicates(project, threshold=args.threshold, include_inbox=not args.no_inbox, progress=progress)
    if args.json:
        json.dump(res.to_json(), sys.stdout, indent=1)
        print()
        return 0
    for n, g in enumerate(res.groups, 1):
        print(f"group {n} ({plural(len(g.members), 'image')})")
        for m in g.members:
            mark = "keep?" if m.rel == g.keeper else f"d={m.distance}"
            print(f"  {mark:6} {m.rel}  {m.width}x{m.height}  {m.size_bytes / 1024:.0f} KiB")
    dup = sum(len(g.members) for g in res.groups)
    print(f"{plural(len(res.groups), 'group')}, {dup} of {plural(res.hashed, 'image')}, threshold {res.threshold}")
    for rel, err in sorted(res.errors.items()):
        print(f"unreadable: {rel}: {err}", file=sys.stderr)
    return 0
