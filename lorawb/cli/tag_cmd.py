"""`lorawb tag [PROJECT]`: auto-tag or caption images with a local model, as an undoable caption change.

A thin layer over lorawb.tagger: the options override [tagger] in lorawb.toml; the result
is a change set applied (and undone: `lorawb captions undo`) like any bulk edit.
Exit codes: 0 done, 1 some captions were not written (changed on disk meanwhile), 2 a
user error (no such model, bad option), as every lorawb command.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

from lorawb.cli import add_project_arg
from lorawb.words import plural

EPILOG = """\
models (--model, or [tagger] model in lorawb.toml; nothing is downloaded):
  DIR with model.onnx + selected_tags.csv   a WD-style tagger (WD v1.4 / v3 layout), via onnxruntime
  DIR with config.json + model.safetensors  a transformers captioner (BLIP, image-text-to-text models)
  toyworld                                  the toy world's attribute reader (the sample project)
  NAME                                      a short name from [tagger.models]

modes:
  fill     caption only the images without a caption (default)
  append   add the model's tags that a caption lacks, at its end
  replace  rewrite everything after the trigger (tags in [tagger] keep / --keep stay)
The trigger ([project] trigger) leads every caption written.

images: the dataset (rejected/ left out), or --inbox, narrowed by --where filters:
  has:TAG  -has:TAG  text:WORDS  in:FOLDER  file:PATH   e.g. --where in:inbox --where -has:forest
  char:NAME  joint   (several characters: each image leaves out the invariant tags of those it holds,
                      and leads with their triggers)

--dry-run prints the diff with each tag's confidence and writes nothing; results are cached
in .lorawb/, so a second run (another threshold, another mode) does not run the model again.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tag",
        help="auto-tag / caption images with a local model (WD ONNX, BLIP, toyworld), previewed and undoable",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_project_arg(p)
    p.add_argument("--model", metavar="PATH|NAME", help="model folder, `toyworld`, or a name from [tagger.models]")
    p.add_argument("--where", action="append", metavar="FILTER", help="only images whose caption matches FILTER")
    p.add_argument("--inbox", action="store_true", help="tag the inbox instead of the dataset")
    p.add_argument("--mode", choices=["fill", "append", "replace"], help="how tags join a caption (default: fill)")
    p.add_argument("--threshold", type=float, metavar="G", help="general tags at or above this confidence")
    p.add_argument("--character-threshold", type=float, metavar="C", help="character tags at or above this")
    p.add_argument("--max-tags", type=int, metavar="N", help="at most N model tags per image (0: no limit)")
    p.add_argument("--exclude", action="append", metavar="TAGS", help="undesired tags, comma-separated")
    p.add_argument("--replace", action="append", metavar="OLD=NEW", help="write OLD as NEW (repeatable)")
    p.add_argument("--keep", action="append", metavar="TAGS", help="tags that replace mode keeps, comma-separated")
    p.add_argument(
        "--no-invariant", action="store_true", help="do not drop the [tagger] invariant tags (the character's look)"
    )
    p.add_argument("--keep-underscores", action="store_true", default=None, help="write blue_hair, not blue hair")
    p.add_argument("--ratings", action="store_true", default=None, help="add the WD rating tag")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per model call")
    p.add_argument("--prompt", metavar="TEXT", help="captioners: text the caption starts from / the question asked")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="captioners: caption length limit")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model folder that runs its own code")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the model runs")
    p.add_argument("--no-cache", action="store_true", help="run the model even where .lorawb/ has its answers")
    p.add_argument("--dry-run", action="store_true", help="print the diff and confidences; change nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _split(values: list[str] | None) -> list[str]:
    return [t.strip() for v in values or [] for t in v.split(",") if t.strip()]


def run(args: argparse.Namespace) -> int:
    from lorawb.core import caption_ops
    from lorawb.core.caption_writes import CaptionWrites
    from lorawb.core.project import Project
    from lorawb.tagger.plan import plan_tags, tagger_settings

    project = Project.load(args.project)
    cfg = project.config.tagger
    settings = tagger_settings(
        project,
        model=args.model,
        mode=args.mode,
        threshold=args.threshold,
        character_threshold=args.character_threshold,
        max_tags=args.max_tags,
        exclude=cfg.exclude + _split(args.exclude) if args.exclude else None,
        replace=cfg.replace + list(args.replace) if args.replace else None,
        keep=cfg.keep + _split(args.keep) if args.keep else None,
        keep_underscores=args.keep_underscores,
        ratings=args.ratings,
        batch_size=args.batch_size,
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
    )
    from lorawb.core.characters import characters_of

    selection = caption_ops.parse_where(args.where, characters_of(project.config))
    if args.inbox:
        selection = caption_ops.Selection(
            folders=(caption_ops.rel_to(project.root, project.inbox_dir),), terms=selection.terms
        )
    images = [cf.image for cf in caption_ops.load_captions(project, selection)]
    if not images:
        print(f"no images to tag ({selection.describe()})", file=sys.stderr)
        return 0
    plan = plan_tags(
        project,
        images,
        settings,
        trust_remote_code=args.trust_remote_code,
        device=args.device,
        use_cache=not args.no_cache,
        use_invariant=not args.no_invariant,
        progress=None if args.json or not sys.stderr.isatty() else _Progress(),
    )
    cs = plan.changeset
    if args.dry_run:
        if args.json:
            _print_json({**plan.to_json(), "dry_run": True})
        else:
            from lorawb.cli.captions_cmd import _print_diff

            _print_diff(plan.preview())
            print(f"{plan.summary()}; nothing written")
        return 0
    result = CaptionWrites(project).apply(cs) if len(cs) else None
    written = result.written if result else []
    conflicts = result.conflicts if result else []
    if args.json:
        _print_json(
            {
                **plan.to_json(),
                "dry_run": False,
                "written": written,
                "conflicts": [{"path": c.rel, "reason": c.reason} for c in conflicts],
                "history_id": result.op_id if result else None,
            }
        )
        return 1 if conflicts else 0
    print(plan.summary().replace("captions change", "captions to change", 1))
    print(f"  wrote {plural(len(written), 'caption')} ({plan.model}; confidence: {plan.confidence})")
    for rel, why in plan.run.skipped:
        print(f"  skipped {rel}: {why}")
    for c in conflicts[:20]:
        print(f"  conflict: {c.rel}: {c.reason} (not written)")
    if written:
        print(f"  undo with: lorawb captions {shlex.quote(str(project.root))} undo")
    return 1 if conflicts else 0


class _Progress:
    """`tagging 120/200 (31 images/s)` on one line of stderr."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        rate = done / max(1e-6, now - self.started)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\rtagging {done}/{total} ({rate:.1f} images/s)  {end}")
        sys.stderr.flush()


def _print_json(obj: Any) -> None:
    from lorawb.cli.captions_cmd import _print_json as print_json

    print_json(obj)
