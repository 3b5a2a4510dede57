#!/usr/bin/env python3
"""Regenerate sample_project/'s dataset and inbox (deterministic); --toml rewrites lorawb.toml too.

--reset (what scripts/reset-sample runs) puts the sample back as committed: dataset/, inbox/,
lorawb.toml and the app's state (.lorawb/) are rewritten, runs/ and matrices/ kept (--all: removed).
The toy base model under sample_project/models/ is made by `lorawb toyworld pretrain` (see its
README.md) and is never touched here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorawb.toyworld.sample import MODEL_DIR, make_sample_project, reset_sample_project  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1] / "sample_project"))
    ap.add_argument("--toml", action="store_true", help="rewrite lorawb.toml from the template")
    ap.add_argument("--reset", action="store_true", help="remove what the tour changed, then regenerate")
    ap.add_argument("--all", action="store_true", help="with --reset: remove runs/ and matrices/ too")
    ap.add_argument(
        "--two-characters",
        action="store_true",
        help="add the second character qvr_tom, joint images and [characters] (write it to another folder)",
    )
    args = ap.parse_args()
    root = Path(args.root)
    if args.reset:
        for p in reset_sample_project(root, everything=args.all):
            print(f"removed {p}")
        kept = [n for n in ("runs", "matrices") if (root / n).exists()]
        if kept:
            print(f"kept {', '.join(n + '/' for n in kept)} (--all removes them)")
    else:
        make_sample_project(root, write_toml=args.toml, two_characters=args.two_characters)
    print(f"wrote {root}")
    if not (root / MODEL_DIR / "model_index.json").is_file():
        print(f"{root / MODEL_DIR} is missing: `git checkout -- {root / MODEL_DIR}` restores it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
