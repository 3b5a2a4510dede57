#!/usr/bin/env python3
"""Regenerate sample_project/'s dataset and inbox (deterministic); --toml rewrites lorawb.toml too.

The toy base model under sample_project/models/ is made by `lorawb toyworld pretrain` (see its README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorawb.toyworld.sample import make_sample_project  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1] / "sample_project"))
    ap.add_argument("--toml", action="store_true", help="rewrite lorawb.toml from the template")
    args = ap.parse_args()
    root = make_sample_project(args.root, write_toml=args.toml)
    print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
