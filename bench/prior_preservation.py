"""Prior preservation on the toy world: plain LoRA vs reg images vs output preservation. Prints the table.

Trains a copy of the sample project with its own settings three ways (plain; with 64
regularisation images of the class drawn by the base model, `lorawb reg generate`; with
`train.preservation = "output"`), then draws `zkx_mira, <context>` and two unrelated prompts
at fixed seeds with each LoRA and lets the attribute reader count: trigger prompts drawn as
the character, unrelated prompts keeping their own hair and outfit. Speed is each run's
steps per second against the plain run's, in this process (a ratio: noise on a loaded
machine cancels out).

    python bench/prior_preservation.py            # 8 seeds, guidance 1.5 (the model's recommendation)
    python bench/prior_preservation.py --methods plain,output --keep /tmp/prior

Set OMP_NUM_THREADS / LORAWB_THREADS to the cores you want used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def prepare_reg(project_dir: Path, count: int = 64) -> Path:
    """reg/1_person/: ``count`` base-model images of the class over the contexts and styles."""
    from lorawb.core.project import Project
    from lorawb.matrix import reggen
    from lorawb.toyworld.prior import CLASS_WORD

    project = Project.load(project_dir)
    plan = reggen.plan_reg(project, CLASS_WORD, count=count)
    reggen.start_reg(project, plan, detach=False)
    return Path(plan.out_dir)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=8, help="images per prompt")
    ap.add_argument("--methods", default="plain,reg,output", help="comma-separated: plain, reg, output")
    ap.add_argument("--keep", default="", help="work in this folder (kept) instead of a temporary one")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="METHOD:KEY=VALUE, a training override for one method, e.g. output:train.preservation_weight=0.5",
    )
    args = ap.parse_args()

    import torch

    from lorawb.toyworld import check, prior

    torch.set_num_threads(int(os.environ.get("LORAWB_THREADS") or os.environ.get("OMP_NUM_THREADS") or 2))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        project_dir = check.copy_sample_project(Path(args.keep or tmp) / "sample_project")
        t = time.perf_counter()
        extra: dict[str, list[str]] = {}
        for spec in args.overrides:
            method, _, override = spec.partition(":")
            extra.setdefault(method, []).append(override)
        if "reg" in methods:
            prepare_reg(project_dir)
        base, results = prior.measure(project_dir, methods, seeds=tuple(range(args.seeds)), cfg=1.5, extra=extra)
        seconds = time.perf_counter() - t
        if args.json:
            Path(args.json).write_text(json.dumps(prior.as_dict(base, results), indent=1))
    print(f"prior preservation on the toy world: {args.seeds} seeds, guidance 1.5, {torch.get_num_threads()} threads")
    print(f"class word {prior.CLASS_WORD!r}; {seconds:.0f} s in all; overrides {args.overrides or 'none'}")
    print(prior.table(base, results))
    for r in results:
        print(f"  {r.method}: {r.steps_per_s:.2f} steps/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
