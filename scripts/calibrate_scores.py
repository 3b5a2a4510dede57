#!/usr/bin/env python3
"""How far the matrix scores follow the truth: the toy embedders against the toy reader on the sample's matrix.

Trains the sample project's LoRA (its own settings, 200 steps), draws a matrix over it
(checkpoints 50 / 100 / 200 × weights 0 / 0.5 / 1 × 4 contexts × 2 styles × 2 seeds, plus 4
control prompts), scores every cell with the toy world's reader (the truth) and with the tiny
toy-world CLIP and DINOv2 (sample_project/models/toy-clip, toy-dinov2;
scripts/build_toy_embedders.py), and prints Spearman's rank correlation of each score with the
truth. Writes lorawb_calibration.json into each embedder folder (the Matrix tab's caveats).

    OMP_NUM_THREADS=1 python scripts/calibrate_scores.py                 # about 10 minutes on one core
    python scripts/calibrate_scores.py --keep /tmp/calib                 # reuse the trained project there
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
EMBEDDERS = {"CLIP": ROOT / "sample_project/models/toy-clip", "DINOv2": ROOT / "sample_project/models/toy-dinov2"}
CONTROLS = [
    "red hair, green outfit, beach",
    "white hair, purple outfit, forest",
    "black hair, white outfit, bar",
    "blonde hair, blue outfit, spaceship",
]
SPEC = """
[matrix]
run = "{run}"
prompt = "{{trigger}}, {{context}}, {{style}}"
controls = [{controls}]
cfg = 1.5
steps = {steps}

[axes]
checkpoint = [50, 100, 200]
weight = [0, 0.5, 1]
context = ["forest", "spaceship", "bar", "beach"]
style = ["flat", "watercolor"]
seed = [0, 1]
"""
NAMES = {"identity": "identity", "leak": "leak", "prompt_following": "prompt following", "prior": "PRES"}


def drawn_matrix(work: Path, steps: int, log) -> Path:
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.runner import run_matrix
    from lorawb.toyworld.check import copy_sample_project, train_project
    from lorawb.train.runfolder import list_runs

    project = work / "sample"
    if not list_runs(project / "runs"):
        copy_sample_project(project)
        t0 = time.time()
        train_project(project, ["sample.every_n_steps=0", "sample.at_start=false"])
        log(f"trained the sample's LoRA in {time.time() - t0:.0f} s")
    folder = MatrixFolder(project / "matrices" / "calibration")
    if not folder.spec.is_file():
        folder.create()
        run = list_runs(project / "runs")[-1]
        controls = ", ".join(f'"{c}"' for c in CONTROLS)
        folder.spec.write_text(SPEC.format(run=run.id, controls=controls, steps=steps), encoding="utf-8")
    t0 = time.time()
    run_matrix(folder)
    log(f"matrix drawn ({time.time() - t0:.0f} s)")
    return folder.path


def score_all(plan, scorer) -> dict[str, dict]:
    """Every drawn cell's scores from ``scorer``, in memory (base cells first, for leak)."""
    from lorawb.matrix.runner import _base_lookup, _iter_images

    cells = sorted(plan.layout.cells.values(), key=lambda c: not c.params.is_base)
    out: dict[str, dict] = {}
    for i in range(0, len(cells), 32):
        chunk = cells[i : i + 32]
        images = [im for _cid, im in _iter_images(plan.folder, [c.id for c in chunk])]
        for c, row in zip(chunk, scorer.score(chunk, images, _base_lookup(plan.folder)), strict=True):
            out[c.id] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", default="", help="work in this folder (kept, reused) instead of a temporary one")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps per cell")
    ap.add_argument("--no-write", action="store_true", help="do not write lorawb_calibration.json")
    ap.add_argument("--json", default="", help="also write the table to this file")
    args = ap.parse_args()

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    from lorawb.matrix.calibration import correlate, write_calibration
    from lorawb.matrix.embedder import load_embedder
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.scores import EmbedderScorer, ToyScorer, dataset_images
    from lorawb.matrix.settings import MatrixSettings

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lorawb-calib-"))
    folder = drawn_matrix(work, args.steps, log)
    plan = plan_matrix(MatrixFolder(folder))
    dataset = dataset_images(plan.project)
    truth_scorer = ToyScorer(dataset)
    truth = score_all(plan, truth_scorer)
    table: dict[str, dict] = {}
    ceilings = {"toy-world reader": truth_scorer.ceiling}
    for name, path in EMBEDDERS.items():
        emb = load_embedder(path, "cpu")
        scorer = EmbedderScorer(
            emb, dataset, plan.project.root, work / "cache" / name / "embeddings", MatrixSettings(top_k=5)
        )
        ceilings[scorer.name] = scorer.ceiling
        table[name] = correlate(truth, score_all(plan, scorer))
    date = datetime.date.today().isoformat()
    command = "OMP_NUM_THREADS=1 python scripts/calibrate_scores.py"
    cells = len(plan.layout.cells)
    print(
        f"Spearman rank correlation with the toy reader's truth, {cells} cells of the sample's matrix ({date}, `{command}`)"
    )
    print()
    print("| score | cells | " + " | ".join(f"toy {n}" for n in EMBEDDERS) + " |")
    print("|---|---|" + "---|" * len(EMBEDDERS))
    for metric, label in NAMES.items():
        n = max(table[e][metric]["n"] for e in EMBEDDERS)
        vals = []
        for e in EMBEDDERS:
            rho = table[e][metric]["rho"]
            vals.append("not measured" if table[e][metric]["n"] == 0 else ("-" if rho is None else f"{rho:.2f}"))
        print(f"| {label} | {n} | " + " | ".join(vals) + " |")
    print()
    print(
        "dataset ceilings (leave-one-out, k = 5): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ceilings.items() if v is not None)
    )
    if not args.no_write:
        for name, path in EMBEDDERS.items():
            write_calibration(path, table[name], date=date, command=command, cells=cells, truth="toy-world reader")
    if args.json:
        Path(args.json).write_text(json.dumps({"date": date, "table": table, "ceilings": ceilings}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
