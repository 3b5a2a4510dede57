"""`lorawb train`, `runs`, `stop`, `resume` and `make-tiny-model`: thin wrappers over lorawb.train."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-tiny-model", help="build a tiny random base model (Stable Diffusion layout) for tests")
    p.add_argument("dest", help="folder to create")
    p.add_argument("--family", choices=["sd1", "sdxl"], default="sd1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=32, help="native image size in pixels (default 32)")
    p.add_argument("--single-file", metavar="FILE", help="also write the model as one .safetensors checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a model already in DEST")
    p.set_defaults(func=cmd_make_tiny_model)


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from lorawb.toyworld.tiny import build_tiny_model

    path = build_tiny_model(args.dest, family=args.family, seed=args.seed, image_size=args.size, overwrite=args.force)
    print(f"built a tiny {args.family} model in {path}")
    if args.single_file:
        from lorawb.toyworld.tiny import write_single_file

        out = write_single_file(path, args.single_file)
        print(f"wrote {out}")
    return 0
