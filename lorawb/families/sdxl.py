"""SDXL: a UNet, two CLIP text encoders (penultimate layers concatenated), a pooled embedding and
the size/crop "time ids" as added conditioning, DDPM noise.

LoRA files: kohya's SDXL naming, which names UNet layers by the original LDM layout
(``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``: kohya trains SDXL on its own
``sdxl_original_unet`` and nearly every shared SDXL LoRA uses it), and ``lora_te1_``/``lora_te2_``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.families.base import CACHED_1024, Preset, TextCond
from lorawb.families.sd import SDFamily, SDModel, load_unet_model, module_device

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import ModelSection


class SDXLFamily(SDFamily):
    name = "sdxl"
    label = "SDXL"
    resolution = 1024
    trainable_text_encoders = (True, True)
    default_cfg = 5.0
    base_model_version = "sdxl_base_v1-0"
    modelspec_architecture = "stable-diffusion-xl-v1-base"
    lora_versions = ("sdxl",)
    lora_architectures = ("stable-diffusion-xl",)
    lora_group = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    controlnet_pipeline_class = "StableDiffusionXLControlNetPipeline"
    # SDXL LoRA training on a card of a given size: what kohya's users do to fit (caches, checkpointing,
    # an 8-bit optimizer), as lorawb settings. bench/gpu_session.sh measures their peak memory.
    presets = (
        Preset(
            "SDXL 12 GB",
            "1024 px, batch 1: latent + text caches (encoders off the GPU), gradient checkpointing, "
            "bf16, 8-bit AdamW (needs bitsandbytes)",
            CACHED_1024
            + (
                ("train.batch_size", 1),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", True),
                ("train.optimizer", "adamw8bit"),
            ),
            gpu_gb=12,
        ),
        Preset(
            "SDXL 24 GB",
            "1024 px, batch 2: latent + text caches (encoders off the GPU), bf16, fused AdamW, "
            "no gradient checkpointing (faster)",
            CACHED_1024
            + (
                ("train.batch_size", 2),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", False),
                ("train.optimizer", "adamw"),
            ),
            gpu_gb=24,
        ),
    )

    def detect_folder(self, path: Path, index: dict[str, Any]) -> bool:
        from lorawb.train.modelpath import read_json

        if "XL" in str(index.get("_class_name", "")) or (path / "text_encoder_2").is_dir():
            return (path / "unet").is_dir()
        return read_json(path / "unet" / "config.json").get("addition_embed_type") == "text_time"

    def detect_keys(self, keys: list[str]) -> bool:
        return any(k.startswith("conditioner.embedders.1") for k in keys)

    def detect_lora_keys(self, keys: list[str]) -> bool:
        # a second text encoder, or SDXL's LDM block layout
        return any(k.startswith(("lora_te2_", "text_encoder_2.")) or "input_blocks_7" in k for k in keys)

    def load(self, cfg: ModelSection, path: Path, device: torch.device, dtype: torch.dtype, settings: Any) -> SDXLModel:
        return load_unet_model(self, SDXLModel, cfg, path, device, dtype)  # type: ignore[return-value]


@dataclass
class SDXLModel(SDModel):
    """SDXL: two CLIP encoders (penultimate layers, concatenated), pooled embedding + size/crop ids."""

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        import torch

        hidden, pooled = [], None
        for te, tok_ids in zip(self.text_encoders, ids, strict=True):
            out = te(tok_ids.to(module_device(te)), output_hidden_states=True)
            pooled = out[0]  # the last encoder's projected pooled output (text_embeds)
            hidden.append(out.hidden_states[-2])
        return TextCond(torch.cat(hidden, dim=-1), pooled)

    def added_cond(self, text: TextCond, time_ids: torch.Tensor) -> dict[str, torch.Tensor] | None:
        assert text.pooled is not None
        return {"text_embeds": text.pooled, "time_ids": time_ids.to(text.pooled.device, text.pooled.dtype)}

    def unused_text_layers(self) -> list[set[int]]:
        # The first encoder conditions on its penultimate layer and its pooled output is not used.
        first = self.text_encoders[0]
        layers = int(getattr(first, "config", first).num_hidden_layers)
        return [{layers - 1}, set()]

    def unet_layout(self) -> Any:
        from lorawb.families.ldm import UnetLayout

        return UnetLayout(self.bare_denoiser.config)

    def pipeline(self, scheduler: Any = None, denoiser: Any = None, text_encoders: list[Any] | None = None) -> Any:
        from diffusers import StableDiffusionXLPipeline

        tes = text_encoders or self.text_encoders
        return StableDiffusionXLPipeline(
            vae=self.vae,
            text_encoder=tes[0],
            text_encoder_2=tes[1],
            tokenizer=self.tokenizers[0],
            tokenizer_2=self.tokenizers[1],
            unet=denoiser or self.denoiser,
            scheduler=scheduler or self.sampler("ddim"),
        )


SDXLFamily.model_class = SDXLModel
