"""The pretraining recipe of the toy base model and its command-line arguments (light: no numpy, no torch).

Kept apart from ``pretrain`` so ``lorawb --help`` does not import the heavy modules.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recipe:
    """Everything that decides the model (recorded in lorawb_model.json)."""

    seed: int = 0
    images: int = 48_000
    vae_steps: int = 1500
    vae_batch: int = 128
    vae_lr: float = 1e-3
    vae_seconds: float = 0.0  # if set: stop the VAE early to fit this budget
    steps: int = 6000  # UNet + text encoder steps; ``seconds`` (if set) picks it from measured speed
    seconds: float = 0.0
    batch: int = 256
    lr: float = 1e-3
    text_lr: float = 3e-4
    warmup: int = 300
    min_lr_ratio: float = 0.05
    weight_decay: float = 1e-2
    ema_decay: float = 0.999
    noise_offset: float = 0.1
    min_snr_gamma: float = 5.0
    caption_dropout: float = 0.1
    tag_drop: float = 0.2
    workers: int = 0
    init: str = ""  # a model folder to go on training (the VAE is kept)
    extra: dict[str, Any] = field(default_factory=dict)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    r = Recipe()
    ap.add_argument("--steps", type=int, default=r.steps, help="UNet + text-encoder steps")
    ap.add_argument("--seconds", type=float, default=0.0, help="instead of --steps: fill this many seconds")
    ap.add_argument("--images", type=int, default=r.images, help="training images to draw")
    ap.add_argument("--vae-steps", type=int, default=r.vae_steps)
    ap.add_argument("--vae-seconds", type=float, default=0.0, help="instead of --vae-steps: fill this many seconds")
    ap.add_argument("--batch", type=int, default=r.batch)
    ap.add_argument("--vae-batch", type=int, default=r.vae_batch)
    ap.add_argument("--lr", type=float, default=r.lr)
    ap.add_argument("--text-lr", type=float, default=r.text_lr)
    ap.add_argument("--seed", type=int, default=r.seed)
    ap.add_argument("--warmup", type=int, default=r.warmup)
    ap.add_argument("--init", default="", help="a toy model folder to go on training (keeps its VAE)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--workers", type=int, default=0, help="processes drawing images (0: cores - 1)")
    ap.add_argument("--eval-cfg", default="1,1.5,2,3", help="guidance scales to evaluate (empty: skip)")
    ap.add_argument("--sheets", default="", help="folder for contact sheets of the evaluation images")
