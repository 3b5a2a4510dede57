"""Big models on one GPU: peak memory and speed of a full-size FLUX.1 LoRA run per base quantisation and
with offloading, and SDXL under the "SDXL 12 GB" preset, each beside the memory plan's prediction.

    python bench/bigmodels.py --device cuda [--steps 8] [--only flux-bf16,flux-nf4] [--json OUT.json]

Models: FLUX.1-dev and SDXL with random weights from their configs (lorawb.toyworld.fullsize), built
once into --model-dir. Every case: 1024 px, rank 16, cached latents and text, gradient checkpointing,
bf16, a fresh `lorawb train` process (so its peak is its own). The measured peak is the last step
event's ``mem_gb`` (torch.cuda.max_memory_allocated over the whole run: caching included, as the
plan's peak is); steps/s is the last step event's rolling rate. Prints a markdown table (README
"Big models on one GPU") and the plan's error per case (the target: within 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMON = [
    "dataset.resolution=1024",
    "dataset.bucket_step=64",
    "dataset.cache_latents=true",
    "dataset.cache_text=true",
    "dataset.crop='center'",
    "network.rank=16",
    "network.alpha=16",
    "train.gradient_checkpointing=true",
    "train.mixed_precision='bf16'",
    "train.log_every_n_steps=1",
    "sample.every_n_steps=0",
    "save.every_n_steps=0",
]
# name -> (family, batch, extra settings)
CASES = {
    "flux-bf16": ("flux", 1, []),
    "flux-fp8-b2": ("flux", 2, ["model.quantize='fp8'"]),
    "flux-int8": ("flux", 1, ["model.quantize='int8'"]),
    "flux-nf4": ("flux", 1, ["model.quantize='nf4'", "train.optimizer='adamw8bit'"]),
    "flux-fp8-offload19": (
        "flux",
        1,
        ["model.quantize='fp8'", "train.offload_blocks=19", "train.optimizer='adamw8bit'"],
    ),
    "sdxl-12gb-preset": ("sdxl", 1, ["train.optimizer='adamw8bit'", "train.offload_frozen=true"]),
}


def make_project(root: Path, model: Path, n: int = 4) -> Path:
    from PIL import Image

    from lorawb.core.project import init_project

    if root.exists():
        import shutil

        shutil.rmtree(root)
    init_project(root, trigger="zkx_mira")
    folder = root / "dataset" / "2_zkx_mira"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (1024, 1024), (40 + 40 * i, 120, 200 - 30 * i)).save(folder / f"img_{i}.png")
        (folder / f"img_{i}.txt").write_text(f"zkx_mira, red scarf, scene {i}", encoding="utf-8")
    text = (root / "lorawb.toml").read_text(encoding="utf-8")
    (root / "lorawb.toml").write_text(text + f'\n[model]\npath = "{model}"\n', encoding="utf-8")
    return root


def run_case(name: str, model: Path, work: Path, steps: int, device: str) -> dict:
    from lorawb.core.project import Project
    from lorawb.train import memplan
    from lorawb.train.config import resolve_config
    from lorawb.train.events import read_events

    family, batch, extra = CASES[name]
    project_root = make_project(work / name, model)
    sets = [*COMMON, f"train.batch_size={batch}", f"train.max_steps={steps}", f"train.device='{device}'", *extra]
    cfg = resolve_config(Project.load(project_root), overrides=sets)
    plan = memplan.plan(cfg)
    cmd = [sys.executable, "-m", "lorawb", "train", str(project_root)]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    runs = sorted((project_root / "runs").iterdir())
    events = read_events(runs[-1] / "events.jsonl") if runs else []
    steps_ev = [e for e in events if e.get("type") == "step"]
    status = [e for e in events if e.get("type") == "status"]
    out = {
        "case": name,
        "family": family,
        "batch": batch,
        "plan_gb": round(plan.peak_gb, 2),
        "plan_phase": plan.peak_phase,
        "measured_gb": steps_ev[-1].get("mem_gb") if steps_ev else None,
        "it_s": steps_ev[-1].get("it_s") if steps_ev else None,
        "state": status[-1].get("state") if status else "?",
        "error": status[-1].get("error") if status else proc.stderr[-400:],
        "wall_s": round(time.time() - t0, 1),
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--only", default="", help="comma-separated case names: " + ", ".join(CASES))
    ap.add_argument("--model-dir", default="/tmp/lorawb-models/big")
    ap.add_argument("--work", default="/tmp/lorawb-bigmodels")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    from lorawb.toyworld.fullsize import build_random

    names = [n for n in args.only.split(",") if n] or list(CASES)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models: dict[str, Path] = {}
    for family in sorted({CASES[n][0] for n in names}):
        dest = Path(args.model_dir) / family
        if not (dest / "model_index.json").is_file() or not any(dest.rglob("*.safetensors")):
            t = time.time()
            build_random(dest, family, device=args.device)
            print(f"built a random full-size {family} in {time.time() - t:.0f} s", flush=True)
        models[family] = dest
    results = [run_case(n, models[CASES[n][0]], work, args.steps, args.device) for n in names]
    base = next((r["it_s"] for r in results if r["case"] == "flux-bf16" and r["it_s"]), None)
    print("\n| case | batch | plan (GB) | measured peak (GB) | plan error | steps/s | vs bf16 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        m, p = r["measured_gb"], r["plan_gb"]
        err = f"{(p - m) / m:+.0%}" if m else "-"
        ratio = f"{r['it_s'] / base:.2f}×" if base and r["it_s"] and r["family"] == "flux" else "-"
        meas = f"{m:.2f}" if m else f"({r['state']}: {r['error']})"
        print(f"| {r['case']} | {r['batch']} | {p:.2f} | {meas} | {err} | {r['it_s'] or '-'} | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
