"""Tiny CLIP and DINOv2 embedders trained on the toy world, to calibrate the matrix scores.

The matrix scores real images with a CLIP or a DINOv2 folder; the toy world knows the truth
(its reader). To see how far an embedder's numbers follow the truth, ``build_embedders``
trains a CLIP-architecture model (``CLIPModel``: image and text towers) and a
DINOv2-architecture image model (``Dinov2Model``, its CLS token trained against a throwaway
text tower) contrastively on toy images and their captions (every attribute, tags shuffled,
some dropped), with a fixed seed, on the CPU in a few minutes. Both are saved as ordinary
transformers folders (safetensors, ``preprocessor_config.json``; the CLIP with its tokenizer),
loaded by ``lorawb.matrix.embedder`` like any real one. ``scripts/calibrate_scores.py`` uses
them; the sample project carries the results under ``models/toy-clip`` and ``models/toy-dinov2``.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from lorawb.toyworld import world

SEED = 1234
HIDDEN = 64
IMAGE = 32
PATCH = 4


def _captions(specs: list[world.Spec], rng: random.Random) -> list[str]:
    return [world.caption(s, shuffle=rng, drop=0.25) for s in specs]


def _processor() -> Any:
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})


def _text_config(tokenizer: Any) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vision_config() -> dict[str, Any]:
    return dict(
        image_size=IMAGE,
        patch_size=PATCH,
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=3,
        num_attention_heads=4,
    )


def _data(n: int, seed: int) -> tuple[list[world.Spec], Any]:
    import torch

    specs = world.random_specs(n, seed=seed)
    proc = _processor()
    images = [world.render(s, IMAGE) for s in specs]
    pixels = torch.cat(
        [proc(images=images[i : i + 256], return_tensors="pt")["pixel_values"] for i in range(0, n, 256)]
    )
    return specs, pixels


def train(kind: str, dest: Path, *, steps: int = 600, n: int = 2048, batch: int = 64, log: Any = print) -> dict:
    """Train one embedder (``clip`` or ``dinov2``) and save it to ``dest``; returns what was done."""
    import torch
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    from lorawb.toyworld.tokenizer import write_tokenizer

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    write_tokenizer(dest)
    tokenizer = CLIPTokenizer.from_pretrained(dest)
    specs, pixels = _data(n, SEED)
    if kind == "clip":
        cfg = CLIPConfig(text_config=_text_config(tokenizer), vision_config=_vision_config(), projection_dim=HIDDEN)
        model = CLIPModel(cfg)
        params = list(model.parameters())
    elif kind == "dinov2":
        from transformers import Dinov2Config, Dinov2Model

        model = Dinov2Model(
            Dinov2Config(
                hidden_size=HIDDEN,
                num_hidden_layers=3,
                num_attention_heads=4,
                mlp_ratio=2,
                image_size=IMAGE,
                patch_size=PATCH,
            )
        )
        text = CLIPTextModelWithProjection(CLIPTextConfig(**_text_config(tokenizer), projection_dim=HIDDEN))
        scale = torch.nn.Parameter(torch.tensor(2.6592))
        params = list(model.parameters()) + list(text.parameters()) + [scale]
    else:
        raise ValueError(kind)
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    losses = []
    for step in range(steps):
        idx = rng.sample(range(n), batch)
        caps = _captions([specs[i] for i in idx], rng)
        tok = tokenizer(caps, padding=True, return_tensors="pt")
        px = pixels[idx]
        if kind == "clip":
            out = model(
                input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=px, return_loss=True
            )
            loss = out.loss
        else:
            img = model(pixel_values=px).pooler_output
            txt = text(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).text_embeds
            img = img / img.norm(dim=-1, keepdim=True)
            txt = txt / txt.norm(dim=-1, keepdim=True)
            logits = scale.exp().clamp(max=100) * img @ txt.T
            # captions of the same attributes are not negatives: soft targets where the specs agree
            same = torch.tensor([[float(specs[a].tags() == specs[b].tags()) for b in idx] for a in idx])
            target = same / same.sum(dim=1, keepdim=True)
            loss = (
                -(target * logits.log_softmax(dim=1)).sum(1).mean() - (target * logits.log_softmax(dim=0)).sum(0).mean()
            )
            loss = loss / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
        if step % 100 == 0 or step == steps - 1:
            log(f"{kind} step {step + 1}/{steps} loss {np.mean(losses[-50:]):.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    model.save_pretrained(dest, safe_serialization=True)
    _processor().save_pretrained(dest)
    if kind == "dinov2":
        for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
            (dest / f).unlink(missing_ok=True)
    else:
        tokenizer.save_pretrained(dest)
    info = {
        "kind": kind,
        "trained_on": f"{n} toy-world images (world.random_specs seed {SEED}) and their shuffled tag captions",
        "steps": steps,
        "batch": batch,
        "seed": SEED,
        "final_loss": round(float(np.mean(losses[-50:])), 4),
        "seconds": round(time.time() - t0, 1),
    }
    (dest / "lorawb_embedder.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def build_embedders(root: Path, steps: int = 1500, log: Any = print) -> dict[str, dict]:
    """Both embedders under ``root``: ``toy-clip`` and ``toy-dinov2``."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    return {
        "clip": train("clip", Path(root) / "toy-clip", steps=steps, log=log),
        "dinov2": train("dinov2", Path(root) / "toy-dinov2", steps=steps, log=log),
    }
