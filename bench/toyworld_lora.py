"""Does `lorawb train sample_project` teach the toy base model its character? Prints the table.

Trains a LoRA on a copy of the sample project with the project's own settings (sampling
off, to time the training alone), then draws `zkx_mira, <context>` for every context and
two unrelated prompts with fixed seeds, without and with the LoRA, and prints what the
attribute reader finds: the character's look (blue hair and orange outfit), its scarf,
the prompted context, and the unrelated prompts still drawn as asked.

    python bench/toyworld_lora.py                   # 4 seeds per prompt
    python bench/toyworld_lora.py --seeds 8 --set train.max_steps=200 --lora run/checkpoints/x.safetensors

Set OMP_NUM_THREADS / LORAWB_THREADS to the cores you want used (2 in the README's figures).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4, help="images per prompt")
    ap.add_argument("--cfg", type=float, default=0.0, help="guidance scale (default: the project's sample.cfg)")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="a training override, e.g. train.max_steps=200"
    )
    ap.add_argument("--lora", default="", help="check this LoRA file instead of training one")
    ap.add_argument("--keep", default="", help="train in this folder (kept) instead of a temporary one")
    args = ap.parse_args()

    import torch

    from lorawb.core.project import Project
    from lorawb.toyworld import check, sample

    torch.set_num_threads(int(os.environ.get("LORAWB_THREADS") or os.environ.get("OMP_NUM_THREADS") or 2))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp) / "sample_project"
        project_dir = check.copy_sample_project(work)
        cfg = args.cfg or float(Project.load(project_dir).config.sample.get("cfg", 1.5))
        train_s = 0.0
        if args.lora:
            lora = Path(args.lora)
        else:
            t = time.perf_counter()
            lora = check.train_project(project_dir, ["sample.every_n_steps=0", *args.overrides])
            train_s = time.perf_counter() - t
        t = time.perf_counter()
        base, with_lora = check.check_lora(project_dir / sample.MODEL_DIR, lora, seeds=list(range(args.seeds)), cfg=cfg)
        check_s = time.perf_counter() - t
    print(
        f"toy world LoRA check: {lora.name}, {args.seeds} seeds per prompt, guidance {cfg}, threads {torch.get_num_threads()}"
    )
    if train_s:
        print(
            f"training: {train_s:.0f} s (project defaults{', ' + ', '.join(args.overrides) if args.overrides else ''})"
        )
    print(f"checking: {check_s:.0f} s")
    print(check.table([base, with_lora]))
    print(f"unrelated prompts: {', '.join(check.UNRELATED)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
