"""The toy base model: its architecture, its folder (diffusers layout, fp32) and drawing from it.

The folder loads with ``StableDiffusionPipeline.from_pretrained(DEST)`` and no network.
Weights are stored in fp32 (under 10 MB): fp16 files would load as fp16 through
transformers 5's dtype="auto" and slow or break CPU training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lorawb.core.fsutil import atomic_write_text
from lorawb.toyworld import world
from lorawb.toyworld.tokenizer import MAX_LENGTH

SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
    "prediction_type": "epsilon",
}


def build_models(vocab_size: int, bos: int, eos: int) -> tuple[Any, Any, Any]:
    """(vae, unet, text_encoder) with fresh weights: the architecture of the toy base model."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=world.SIZE,
    )
    unet = UNet2DConditionModel(
        sample_size=world.SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=64,
        norm_num_groups=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            hidden_act="quick_gelu",
            projection_dim=64,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
        )
    )
    return vae, unet, text


def save_model(dest: Path, vae: Any, unet: Any, text: Any, meta: dict[str, Any]) -> None:
    import diffusers

    dest.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(dest / "unet", safe_serialization=True)
    vae.save_pretrained(dest / "vae", safe_serialization=True)
    text.save_pretrained(dest / "text_encoder", safe_serialization=True)
    sched = dict(SCHEDULER, _diffusers_version=diffusers.__version__)
    atomic_write_text(dest / "scheduler" / "scheduler_config.json", json.dumps(sched, indent=2) + "\n")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    atomic_write_text(dest / "model_index.json", json.dumps(index, indent=2) + "\n")
    atomic_write_text(dest / "lorawb_model.json", json.dumps(meta, indent=2) + "\n")


def load_pipeline(folder: str | Path, device: str = "cpu", scheduler: str = "ddim") -> Any:
    """The toy model as a StableDiffusionPipeline (fp32, no safety checker), with a DDIM scheduler."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(folder), dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate(
    pipe: Any, prompts: Sequence[str], seeds: Sequence[int], cfg: float, steps: int = 20, batch: int = 64
) -> list[np.ndarray]:
    """One 32x32 image per (prompt, seed) pair, as uint8 arrays; seeded per image."""
    import torch

    out: list[np.ndarray] = []
    for i in range(0, len(prompts), batch):
        ps, ss = list(prompts[i : i + batch]), list(seeds[i : i + batch])
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in ss]
        lat = torch.stack([torch.randn((4, world.SIZE // 2, world.SIZE // 2), generator=g) for g in gens])
        res = pipe(
            ps,
            height=world.SIZE,
            width=world.SIZE,
            num_inference_steps=steps,
            guidance_scale=cfg,
            latents=lat.to(pipe.device),
            output_type="np",
        ).images
        out += [(np.clip(a, 0, 1) * 255).round().astype(np.uint8) for a in res]
    return out


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
