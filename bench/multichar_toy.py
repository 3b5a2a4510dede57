"""Two characters in one image: two LoRAs trained separately and stacked vs one LoRA trained jointly.

On the toy world (the sample project's ``zkx_mira`` and its second character ``qvr_tom``), trains

- (a) a LoRA on mira's folder alone and a LoRA on tom's folder alone (the sample's settings,
  ``--steps`` each), applied together at weight 1;
- (b) one LoRA on both folders and the joint folder (mira and tom side by side), balanced
  (``[characters] balance = "equal"``), ``2 x --steps`` (the same training steps in all),

then draws one prompt matrix (lorawb.matrix, the ``loras`` and ``character`` axes) with the same
prompts and seeds for each: ``zkx_mira, <context>`` and ``qvr_tom, <context>`` (32x32) and
``zkx_mira, qvr_tom, <context>`` (64x32, mira on the left) for every context, and the toy
world's reader scores each figure (lorawb.matrix.bleed): each character alone drawn right (its
hair, outfit and accessory all read), joint prompts with both drawn right where they stand, two
distinct figures, and bleed (the other character's hair, outfit or accessory on a figure).

    python bench/multichar_toy.py                 # 4 seeds, 200 steps per character
    python bench/multichar_toy.py --seeds 8 --keep /tmp/mc
    python bench/multichar_toy.py --joint 16      # 16 joint scenes in every context instead of the sample's 4

Set OMP_NUM_THREADS / LORAWB_THREADS to the cores you want used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHARACTERS = """
[characters]
balance = "equal"
pair_template = "{a}, {b}, {context}"

[characters.mira]
trigger = "zkx_mira"
invariant = ["blue hair", "orange outfit", "scarf"]

[characters.tom]
trigger = "qvr_tom"
invariant = ["blonde hair", "green outfit", "hat"]
"""

SPEC = """
[matrix]
prompt = "{{trigger}}, {{context}}"
steps = 20
cfg = {cfg}
pair_width = 64

[axes]
loras = [["{mira}@0"], ["{mira}", "{tom}"], ["{joint}"]]
character = ["mira", "tom", "mira+tom"]
context = ["forest", "spaceship", "bar", "beach"]
seed = {seeds}
"""


def more_joint_scenes(root: Path, n: int) -> None:
    """Replace the sample's 4 joint scenes with ``n`` over every context and style (mira left, tom right)."""
    from lorawb.toyworld import sample, world

    folder = root / "dataset" / sample.JOINT_FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(n):
        context, style = world.CONTEXTS[i % 4], world.STYLES[(i // 4) % 4]
        mira = world.Spec(**sample.CHARACTER, context=context, style=style, pose=world.POSES[i % 3], seed=9500 + i)
        tom = world.Spec(**sample.TOM, context=context, style=style, pose=world.POSES[(i + 1) % 3], seed=9700 + i)
        world.write_pair_image(folder / f"pair_{i:02d}.png", mira, tom, sample.joint_caption(mira, tom), 128)


def project(work: Path, name: str) -> Path:
    """A copy of the sample project holding only the folders ``name`` trains on."""
    from lorawb.toyworld import check, sample

    root = check.copy_sample_project(work / name)
    for sub in (root / "dataset").iterdir():
        shutil.rmtree(sub)
    if name in ("mira", "joint"):
        from lorawb.toyworld import world

        for i, spec in enumerate(sample.dataset_specs(), 1):
            world.write_image(
                root / "dataset" / sample.FOLDER / f"mira_{i:02d}.png", spec, sample.dataset_caption(spec), 128
            )
    if name in ("tom", "joint"):
        sample.write_second_character(root, joint=name == "joint")
    toml = (root / "lorawb.toml").read_text(encoding="utf-8")
    head, _, _ = toml.partition("\n[characters]")  # a sample that already has them: written again below
    if name == "tom":
        head = head.replace('trigger = "zkx_mira"', 'trigger = "qvr_tom"')
    if name == "joint":
        head += CHARACTERS
    (root / "lorawb.toml").write_text(head, encoding="utf-8")
    return root


def train(root: Path, steps: int, extra: list[str]) -> tuple[Path, float]:
    from lorawb.toyworld import check

    t = time.perf_counter()
    over = [f"train.max_steps={steps}", "sample.every_n_steps=0", "sample.at_start=false", *extra]
    lora = check.train_project(root, over)
    return lora, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4, help="images per prompt")
    ap.add_argument("--steps", type=int, default=200, help="training steps per character (joint: twice)")
    ap.add_argument("--cfg", type=float, default=1.5)
    ap.add_argument("--keep", default="", help="work in this folder (kept) instead of a temporary one")
    ap.add_argument("--joint", type=int, default=0, help="joint scenes in every context (0: the sample's 4)")
    args = ap.parse_args()

    import torch

    from lorawb.core.project import Project
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.report import load_report
    from lorawb.matrix.runner import run_matrix

    threads = int(os.environ.get("LORAWB_THREADS") or os.environ.get("OMP_NUM_THREADS") or 2)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        roots = {n: project(work, n) for n in ("mira", "tom", "joint")}
        joint = roots["joint"]
        if args.joint:
            more_joint_scenes(joint, args.joint)
        loras, seconds = {}, {}
        for name, steps in (("mira", args.steps), ("tom", args.steps), ("joint", 2 * args.steps)):
            extra = ["dataset.joint_resolution=46"] if name == "joint" else []
            lora, seconds[name] = train(roots[name], steps, extra)
            dest = joint / "loras" / f"{name}.safetensors"
            dest.parent.mkdir(exist_ok=True)
            shutil.copy2(lora, dest)
            loras[name] = f"loras/{name}.safetensors"
            print(f"trained {name}: {steps} steps in {seconds[name]:.0f} s", flush=True)
        folder = joint / "matrices" / "stacked-vs-joint"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "matrix.toml").write_text(
            SPEC.format(cfg=args.cfg, seeds=list(range(args.seeds)), **loras), encoding="utf-8"
        )
        t = time.perf_counter()
        assert run_matrix(MatrixFolder(folder)) == "finished"
        draw_s = time.perf_counter() - t
        report = load_report(MatrixFolder(folder), Project.load(joint))
        print(
            f"\n{args.seeds} seeds per prompt, 4 contexts, guidance {args.cfg}, DDIM 20 steps; "
            f"{threads} thread(s); matrix {len(report.plan.layout.cells)} images in {draw_s:.0f} s\n"
        )
        print(table(report))
    return 0


def table(report) -> str:
    """Per LoRA setting: alone drawn right (mira, tom), bleed alone; joint: both right, two figures, bleed."""
    layout, scores = report.plan.layout, report.scores
    rows: dict[str, dict[str, list[float]]] = {}
    for pos in layout.positions:
        cell = layout.cells[pos.cell]
        if cell.is_control or not cell.characters:
            continue
        setting = "base" if cell.params.is_base else layout.axes["loras"].labels[pos.index("loras")]
        s = scores.get(pos.cell) or {}
        r = rows.setdefault(setting, {})
        chars = s.get("characters") or {}
        if len(cell.characters) == 1:
            name = cell.characters[0]
            r.setdefault(f"{name} right", []).append(float(s.get("identity") == 1.0))
            if s.get("bleed") is not None:
                r.setdefault("bleed alone", []).append(float(s["bleed"]))
        else:
            both = all(c.get("identity") == 1.0 for c in chars.values()) and len(chars) == 2
            r.setdefault("both right", []).append(float(both))
            r.setdefault("two figures", []).append(float(s.get("two_figures") or 0.0))
            if s.get("bleed") is not None:
                r.setdefault("bleed joint", []).append(float(s["bleed"]))
    cols = ["mira right", "tom right", "bleed alone", "both right", "two figures", "bleed joint"]
    names = {"base": "base (no LoRA)", "mira + tom": "(a) mira + tom stacked", "joint": "(b) joint"}
    width = max(len(names.get(k, k)) for k in rows) + 2
    lines = [f"{'LoRAs':<{width}}" + "".join(f"{c:>13}" for c in cols)]
    for setting, r in rows.items():
        cells = "".join(f"{(sum(r[c]) / len(r[c]) if r.get(c) else float('nan')):>13.0%}" for c in cols)
        lines.append(f"{names.get(setting, setting):<{width}}" + cells)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
