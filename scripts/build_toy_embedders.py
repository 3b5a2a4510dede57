#!/usr/bin/env python3
"""Train the tiny toy-world CLIP and DINOv2 embedders the score calibration uses (fixed seed, CPU).

    OMP_NUM_THREADS=1 python scripts/build_toy_embedders.py            # -> sample_project/models/toy-{clip,dinov2}
    python scripts/build_toy_embedders.py --out /tmp/emb --steps 100   # a quick smaller pair

A few minutes on one CPU thread (lorawb.toyworld.embedders says how they are trained).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "sample_project" / "models"))
    ap.add_argument("--steps", type=int, default=1500)
    args = ap.parse_args()
    from lorawb.toyworld.embedders import build_embedders

    info = build_embedders(Path(args.out), steps=args.steps, log=lambda m: print(m, flush=True))
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
