"""Matrix speed: lorawb's matrix run against the plain diffusers loop a user would write, same spec, one run.

The spec: K checkpoints of a LoRA run × weights 0, 0.5, 0.75, 1 × 4 contexts × 2 seeds, plus one
control prompt, at the model's size and steps. Both sides draw every grid cell and save PNGs:

    (a) lorawb: `run_matrix` (base model loaded once, checkpoints swapped as adapters,
        batched pipeline calls, weight 0 drawn once for every checkpoint, scores off);
    (b) plain: for each checkpoint a pipeline from_pretrained, load_lora_weights, then for each
        weight set_adapters, then one pipeline call per image, each image saved.

    python bench/matrix_speed.py                           # the sample project's toy model on CPU
    python bench/matrix_speed.py --checkpoints 4 --steps 20
    python bench/matrix_speed.py --model /path/sd15 --size 512 --device cuda   # an SD1.5 model on a GPU

The LoRA checkpoints come from a short training run on a copy of the sample project (their
quality does not matter here; with --model, a LoRA is trained on that model at --size).
Prints seconds, grid cells per second and images per second of each, and the ratios.
Set OMP_NUM_THREADS / LORAWB_THREADS to the cores to use.
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

WEIGHTS = (0.0, 0.5, 0.75, 1.0)
CONTEXTS = ("forest", "spaceship", "bar", "beach")
SEEDS = (0, 1)
CONTROL = "red hair, green outfit, beach"


def train_checkpoints(project_dir: Path, n: int, size: int, model: str) -> list[Path]:
    from lorawb.toyworld import check

    over = [
        f"train.max_steps={10 * n}",
        "save.every_n_steps=10",
        "sample.every_n_steps=0",
        "sample.at_start=false",
    ]
    if model:
        over += [f"model.path='{model}'", f"dataset.resolution={size}", "dataset.bucket_step=64"]
    last = check.train_project(project_dir, over)
    return sorted(last.parent.glob("*.safetensors"))


def plain_loop(base: str, ckpts: list[Path], out: Path, steps: int, cfg: float, size: int, device: str) -> int:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    prompts = [f"zkx_mira, {c}" for c in CONTEXTS] + [CONTROL]
    n = 0
    for ck in ckpts:
        pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None, requires_safety_checker=False)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights(str(ck), adapter_name="lora")
        for w in WEIGHTS:
            pipe.set_adapters(["lora"], [w])
            for p in prompts:
                for s in SEEDS:
                    g = torch.Generator(device="cpu").manual_seed(s)
                    image = pipe(
                        p, num_inference_steps=steps, guidance_scale=cfg, width=size, height=size, generator=g
                    ).images[0]
                    image.save(out / f"{ck.stem}-{w}-{n}.png")
                    n += 1
        del pipe
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", type=int, default=3, help="LoRA checkpoints on the checkpoint axis")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps")
    ap.add_argument("--cfg", type=float, default=1.5)
    ap.add_argument("--size", type=int, default=32, help="image size (the toy model draws 32 px)")
    ap.add_argument("--model", default="", help="an SD1.x diffusers folder instead of the toy model")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch", type=int, default=8, help="lorawb's images per pipeline call")
    args = ap.parse_args()

    import torch

    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.runner import run_matrix
    from lorawb.toyworld import check, sample
    from lorawb.train.trainer import quiet_libraries

    quiet_libraries()
    threads = int(os.environ.get("LORAWB_THREADS") or os.environ.get("OMP_NUM_THREADS") or 2)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        project = check.copy_sample_project(Path(tmp) / "sample_project")
        t0 = time.perf_counter()
        ckpts = train_checkpoints(project, args.checkpoints, args.size, args.model)
        print(f"trained {len(ckpts)} checkpoints in {time.perf_counter() - t0:.0f} s (not timed below)")
        base = args.model or str(project / sample.MODEL_DIR)
        toml = project / "lorawb.toml"
        toml.write_text(toml.read_text() + f'\n[matrix]\nscorer = "none"\ndevice = "{args.device}"\n')
        run_id = ckpts[0].parent.parent.name
        folder = MatrixFolder(project / "matrices" / "bench").create()
        steps_list = ", ".join(str(int(p.stem.rsplit("-", 1)[1])) for p in ckpts)
        contexts = ", ".join(f'"{c}"' for c in CONTEXTS)
        folder.spec.write_text(
            f'[matrix]\nrun = "{run_id}"\nprompt = "{{trigger}}, {{context}}"\ncontrols = ["{CONTROL}"]\n'
            f"steps = {args.steps}\ncfg = {args.cfg}\nwidth = {args.size}\nheight = {args.size}\nbatch = {args.batch}\n"
            + (f'base_model = "{base}"\n' if args.model else "")
            + f"\n[axes]\ncheckpoint = [{steps_list}]\nweight = [{', '.join(str(w) for w in WEIGHTS)}]\n"
            f"context = [{contexts}]\nseed = [{', '.join(str(s) for s in SEEDS)}]\n",
            encoding="utf-8",
        )
        plan = plan_matrix(folder)
        positions, images = len(plan.layout.positions), len(plan.layout.cells)

        t0 = time.perf_counter()
        assert run_matrix(folder) == "finished"
        t_lorawb = time.perf_counter() - t0

        out = Path(tmp) / "plain"
        out.mkdir()
        t0 = time.perf_counter()
        n_plain = plain_loop(base, ckpts, out, args.steps, args.cfg, args.size, args.device)
        t_plain = time.perf_counter() - t0
        assert n_plain == positions

    print(
        f"\nspec: {len(ckpts)} checkpoints × {len(WEIGHTS)} weights × ({len(CONTEXTS)} contexts + 1 control) × "
        f"{len(SEEDS)} seeds = {positions} grid cells, {args.size} px, {args.steps} steps, {threads} CPU thread(s), "
        f"{args.device}"
    )
    print(f"{'':28} {'seconds':>8} {'cells/s':>8} {'images':>7} {'images/s':>9}")
    print(
        f"{'plain diffusers loop':28} {t_plain:>8.1f} {positions / t_plain:>8.2f} {n_plain:>7} {n_plain / t_plain:>9.2f}"
    )
    print(
        f"{'lorawb matrix run':28} {t_lorawb:>8.1f} {positions / t_lorawb:>8.2f} {images:>7} {images / t_lorawb:>9.2f}"
    )
    print(
        f"\nlorawb: {t_plain / t_lorawb:.2f}x the plain loop's grid cells per second "
        f"({images / t_lorawb / (n_plain / t_plain):.2f}x its images per second; the rest is weight 0 drawn once)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
