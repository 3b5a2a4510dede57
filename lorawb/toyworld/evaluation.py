"""Scoring the toy base model: held-out prompts, the attribute reader's verdicts, contact sheets.

Held out from training: every figure with the sample character's combination
(``sample.NEVER_IN_PRETRAINING``), and the (hair, outfit, context) triples of the 64
evaluation prompts, so the scores measure prompts the model never saw.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lorawb.core.fsutil import atomic_write_text
from lorawb.toyworld import reader, sample, world
from lorawb.toyworld.toymodel import generate, load_pipeline, pick_device


def eval_prompts(n: int = 64, seed: int = 4242) -> list[tuple[str, dict[str, str]]]:
    """``n`` held-out prompts (distinct hair/outfit/context triples) and what each asks for."""
    rng = random.Random(seed)
    triples = [
        (h, o, c)
        for h in world.HAIR
        for o in world.OUTFIT
        for c in world.CONTEXTS
        if not any(rule == {"hair": h, "outfit": o} for rule in sample.NEVER_IN_PRETRAINING)
    ]
    rng.shuffle(triples)
    out = []
    for h, o, c in sorted(triples[:n], key=lambda t: (t[2], t[0], t[1])):
        want = {"hair": h, "outfit": o, "context": c}
        out.append((f"{h} hair, {o} outfit, {c}", want))
    return out


def evaluate(pipe: Any, prompts: list[tuple[str, dict[str, str]]], cfgs: Sequence[float]) -> dict[str, Any]:
    """Per guidance scale: the share of images whose hair / outfit / context the reader finds as prompted."""
    results: dict[str, Any] = {}
    for cfg in cfgs:
        imgs = generate(pipe, [p for p, _ in prompts], list(range(len(prompts))), cfg)
        reads = [reader.read(a) for a in imgs]
        per = {
            k: sum(rd.as_dict()[k] == w[k] for rd, (_, w) in zip(reads, prompts, strict=True)) / len(prompts)
            for k in ("hair", "outfit", "context")
        }
        per["all"] = sum(rd.matches(w) for rd, (_, w) in zip(reads, prompts, strict=True)) / len(prompts)
        results[str(cfg)] = {"scores": per, "images": imgs}
    return results


def contact_sheet(images: Sequence[np.ndarray], cols: int = 16, scale: int = 2) -> Any:
    from PIL import Image

    rows = math.ceil(len(images) / cols)
    s = world.SIZE * scale
    sheet = Image.new("RGB", (cols * s, rows * s), "white")
    for i, a in enumerate(images):
        sheet.paste(Image.fromarray(a).resize((s, s), Image.NEAREST), ((i % cols) * s, (i // cols) * s))
    return sheet


def evaluate_folder(folder: Path, cfgs: Sequence[float], device: str, sheet_dir: Path | None = None) -> dict[str, Any]:
    """Evaluate a saved model folder on the held-out prompts; records the scores in lorawb_model.json."""
    pipe = load_pipeline(folder, pick_device(device))
    res = evaluate(pipe, eval_prompts(), cfgs)
    scores = {cfg: v["scores"] for cfg, v in res.items()}
    best = max(scores, key=lambda c: min(scores[c]["hair"], scores[c]["outfit"], scores[c]["context"]))
    meta_path = folder / "lorawb_model.json"
    meta = json.loads(meta_path.read_text())
    meta["eval"] = {
        "prompts": len(eval_prompts()),
        "scheduler": "ddim",
        "steps": 20,
        "by_cfg": scores,
        "best_cfg": float(best),
    }
    # The recommendation stays low (1.5): prompts alone score a little better higher up, but a LoRA's
    # effect fades as the guidance scale rises (see sample_project/models/toyworld-sd/README.md).
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    if sheet_dir is not None:
        sheet_dir.mkdir(parents=True, exist_ok=True)
        for cfg, v in res.items():
            contact_sheet(v["images"]).save(sheet_dir / f"eval_cfg{cfg}.png")
    return meta["eval"]
