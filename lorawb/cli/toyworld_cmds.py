"""`lorawb toyworld ...`: score images with the attribute reader, make toy datasets, pretrain, check a LoRA."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lorawb.errors import LorawbError
from lorawb.words import plural


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("toyworld", help="the toy world: score images, make datasets, pretrain the toy model")
    tw = p.add_subparsers(dest="toyworld_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    s = tw.add_parser("score", help="read the attributes of toy-world images (hair, outfit, accessory, context...)")
    s.add_argument("images", nargs="+", help="image files or folders")
    s.add_argument("--expect", metavar="PROMPT", help="also print the share of images matching this prompt")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_score)

    d = tw.add_parser("dataset", help="write a kohya folder of random toy-world images with captions")
    d.add_argument("dest", help="dataset folder; images go into DEST/<repeats>_<name>/")
    d.add_argument("-n", "--count", type=int, default=24, help="number of images (default 24)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--trigger", default="", help="put this tag first in every caption")
    d.add_argument("--repeats", type=int, default=10, help="the N of the N_name folder (default 10)")
    d.add_argument("--size", type=int, default=32, help="pixel size: 32, or 128 for nicer previews")
    d.add_argument("--omit", default="", help="attribute groups left out of captions, e.g. hair,outfit,accessory")
    for attr in ("hair", "outfit", "accessory", "context", "style", "pose"):
        d.add_argument(f"--{attr}", help=f"fix the {attr} of every image")
    d.set_defaults(func=cmd_dataset)

    t = tw.add_parser("pretrain", help="train the toy base model (GPU when present; long on CPU)")
    t.add_argument("dest", help="model folder to write (diffusers layout)")
    t.set_defaults(func=cmd_pretrain)
    from lorawb.toyworld.recipe import add_arguments

    add_arguments(t)

    c = tw.add_parser("check", help="does a LoRA bring its character? trigger prompts with and without it")
    c.add_argument("lora", help="a LoRA .safetensors file")
    c.add_argument("--model", default="", help="toy base model folder (default: the sample project's)")
    c.add_argument("--trigger", default="", help="trigger (default: the sample character's)")
    c.add_argument("--seeds", type=int, default=4, help="images per prompt (default 4)")
    c.add_argument("--cfg", type=float, default=0.0, help="guidance scale (default: the sample project's 1.5)")
    c.add_argument("--weight", type=float, default=1.0, help="LoRA weight")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_check)


def _image_paths(items: list[str]) -> list[Path]:
    from lorawb.core.layout import walk_images

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += list(walk_images(p))
        elif p.exists():
            out.append(p)
        else:
            raise LorawbError("no such file or folder", path=p)
    return out


def cmd_score(args: argparse.Namespace) -> int:
    from lorawb.toyworld import reader, world

    paths = _image_paths(args.images)
    if not paths:
        raise LorawbError("no images found", hint="pass image files or folders holding .png/.jpg images")
    readings: list[tuple[Path, reader.Reading]] = []
    errors: list[tuple[Path, str]] = []
    for p in paths:
        try:
            readings.append((p, reader.read(p)))
        except LorawbError as exc:
            errors.append((p, exc.message))
    want = world.parse_prompt(args.expect) if args.expect else {}
    if args.expect and not want:
        raise LorawbError(
            f"the prompt {args.expect!r} names no toy-world attribute",
            hint="e.g. --expect 'blue hair, orange outfit, scarf, forest'",
        )
    result = reader.score([r for _, r in readings], want) if want else None
    if args.json:
        doc = {
            "images": [{"path": str(p), **r.as_dict()} for p, r in readings],
            "errors": [{"path": str(p), "error": e} for p, e in errors],
        }
        if result is not None:
            doc["expect"] = {"prompt": args.expect, **result.as_dict()}
        print(json.dumps(doc, indent=2))
    else:
        for p, r in readings:
            print(f"{p}: " + ", ".join(f"{k}={v}" for k, v in r.as_dict().items()))
        if result is not None:
            parts = ", ".join(f"{k} {v:.0%}" for k, v in result.per_attribute.items())
            print(f"expect {args.expect!r}: {result.all_match:.0%} of {result.n} match ({parts})")
    for p, e in errors:
        print(f"lorawb: {p}: {e}", file=sys.stderr)
    return 0 if readings else 2


def cmd_dataset(args: argparse.Namespace) -> int:
    from lorawb.toyworld import world

    if args.count < 1:
        raise LorawbError("--count must be at least 1")
    if args.size % world.SIZE:
        raise LorawbError(f"--size must be a multiple of {world.SIZE}")
    fixed = {
        a: getattr(args, a) for a in ("hair", "outfit", "accessory", "context", "style", "pose") if getattr(args, a)
    }
    try:
        world.Spec(**{"hair": "black", "outfit": "red", **fixed})
    except ValueError as exc:
        raise LorawbError(str(exc)) from exc
    omit = [o.strip() for o in args.omit.split(",") if o.strip()]
    folder = world.write_kohya_folder(
        args.dest,
        args.count,
        seed=args.seed,
        trigger=args.trigger,
        repeats=args.repeats,
        size=args.size,
        omit=omit,
        **fixed,
    )
    print(f"wrote {plural(args.count, 'image')} with captions to {folder}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from lorawb.toyworld import pretrain

    args.out = args.dest
    return pretrain.run(args)


def cmd_check(args: argparse.Namespace) -> int:
    from lorawb.toyworld import check, sample

    lora = Path(args.lora)
    if not lora.is_file():
        raise LorawbError("no such LoRA file", path=lora)
    model = (
        Path(args.model) if args.model else Path(__file__).resolve().parents[2] / "sample_project" / sample.MODEL_DIR
    )
    if not (model / "model_index.json").is_file():
        raise LorawbError("not a toy model folder (no model_index.json)", path=model, hint="pass --model DIR")
    base, with_lora = check.check_lora(
        model,
        lora,
        weight=args.weight,
        trigger=args.trigger or sample.TRIGGER,
        seeds=list(range(args.seeds)),
        cfg=args.cfg or 1.5,
    )
    if args.json:
        print(json.dumps({"base": base.as_dict(), "lora": with_lora.as_dict()}, indent=2))
    else:
        print(check.table([base, with_lora]))
    return 0
