"""LoRA files in kohya's format, the one ComfyUI, AUTOMATIC1111/Forge, InvokeAI and diffusers all load.

Keys, per adapted layer (kohya sd-scripts networks/lora.py naming):

    lora_unet_<diffusers module path, dots as underscores>.lora_down.weight   (rank, in[, kh, kw])
    lora_unet_<...>.lora_up.weight                                           (out, rank[, 1, 1])
    lora_unet_<...>.alpha                                                    float scalar
    lora_te_text_model_encoder_layers_0_self_attn_q_proj.*                   SD1/SD2 text encoder
    lora_te1_text_model_... / lora_te2_text_model_...                        SDXL's two text encoders
    <...>.dora_scale                                                         DoRA magnitude, (out, 1)

Text-encoder names always carry the ``text_model_`` level that kohya's loader
expects, even though transformers 5's CLIPTextModel no longer has it in its
module tree. Alpha is a float32 scalar (not int64, which kohya rejects for SD1).

Metadata: kohya's ``ss_*`` keys (strings) plus ``modelspec.*`` and ``lorawb_*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lorawb.core.fsutil import atomic_write_bytes

UNET_PREFIX = "lora_unet_"
TE_PREFIXES = {1: ("lora_te_",), 2: ("lora_te1_", "lora_te2_")}


@dataclass
class LoraWeights:
    """One adapted layer: kohya's down (= peft lora_A) and up (= peft lora_B), alpha, DoRA magnitude."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float
    dora_scale: torch.Tensor | None = None


def extract_lora(model: torch.nn.Module, adapter: str = "default") -> dict[str, LoraWeights]:
    """The LoRA layers peft injected into ``model``, by module name (detached, on CPU)."""
    from peft.tuners.lora import LoraLayer

    out: dict[str, LoraWeights] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
            continue
        rank = module.r[adapter]
        alpha = float(module.scaling[adapter]) * rank
        down = module.lora_A[adapter].weight.detach().float().cpu()
        up = module.lora_B[adapter].weight.detach().float().cpu()
        dora = None
        mag = getattr(module, "lora_magnitude_vector", None)
        if mag is not None and adapter in mag:
            dora = mag[adapter].weight.detach().float().cpu().reshape(up.shape[0], *([1] * (up.dim() - 1)))
        out[name] = LoraWeights(down=down, up=up, alpha=alpha, dora_scale=dora)
    return out


def unet_key(module_name: str) -> str:
    return UNET_PREFIX + module_name.replace(".", "_")


def te_key(module_name: str, index: int, count: int) -> str:
    """Kohya name of a text-encoder module; ``index`` is 0-based, ``count`` the number of encoders."""
    prefix = TE_PREFIXES[count][index]
    if not module_name.startswith("text_model."):
        module_name = "text_model." + module_name
    return prefix + module_name.replace(".", "_")


def kohya_state_dict(
    unet: dict[str, LoraWeights],
    text_encoders: list[dict[str, LoraWeights]] | None = None,
    te_count: int = 1,
    dtype: torch.dtype = torch.float16,
) -> dict[str, torch.Tensor]:
    """Flat kohya tensors from extracted LoRA layers (``te_count``: 1 for SD1/SD2, 2 for SDXL)."""
    tensors: dict[str, torch.Tensor] = {}

    def put(key: str, w: LoraWeights) -> None:
        tensors[f"{key}.lora_down.weight"] = w.down.to(dtype).contiguous()
        tensors[f"{key}.lora_up.weight"] = w.up.to(dtype).contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(w.alpha, dtype=torch.float32)
        if w.dora_scale is not None:
            tensors[f"{key}.dora_scale"] = w.dora_scale.to(dtype).contiguous()

    for name, w in unet.items():
        put(unet_key(name), w)
    for i, layers in enumerate(text_encoders or []):
        for name, w in layers.items():
            put(te_key(name, i, te_count), w)
    return tensors


def save_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Write a .safetensors LoRA atomically; metadata values become strings (JSON for containers)."""
    from safetensors.torch import save

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items() if v is not None}
    atomic_write_bytes(Path(path), save(tensors, metadata=meta))
    return Path(path)


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


BASE_MODEL_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}
MODELSPEC_ARCH = {"sd1": "stable-diffusion-v1", "sd2": "stable-diffusion-v2-512", "sdxl": "stable-diffusion-xl-v1-base"}


def training_metadata(
    *,
    family: str,
    output_name: str,
    base_model: str,
    trigger: str,
    tag_frequency: dict[str, dict[str, int]],
    dataset_dirs: dict[str, dict[str, int]],
    num_train_images: int,
    rank: int,
    alpha: float,
    resolution: int,
    step: int,
    max_steps: int,
    epoch: int,
    epochs: int,
    learning_rate: float,
    text_encoder_lr: float | None,
    train_text_encoder: bool,
    batch_size: int,
    optimizer: str,
    lr_scheduler: str,
    noise_offset: float,
    min_snr_gamma: float,
    seed: int,
    mixed_precision: str,
    started_at: float,
    finished_at: float,
    extra_network_args: dict[str, Any] | None = None,
    prediction_type: str = "epsilon",
) -> dict[str, Any]:
    """kohya-style ``ss_*`` metadata (the keys A1111/Forge/ComfyUI show), modelspec and lorawb keys."""
    import datetime as _dt

    import lorawb

    v2 = family == "sd2"
    meta: dict[str, Any] = {
        "ss_output_name": output_name,
        "ss_sd_model_name": Path(base_model).name,
        "ss_base_model_version": BASE_MODEL_VERSION.get(family, family),
        "ss_v2": str(v2),
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_network_args": extra_network_args or {},
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_num_train_images": str(num_train_images),
        "ss_tag_frequency": tag_frequency,
        "ss_dataset_dirs": dataset_dirs,
        "ss_steps": str(step),
        "ss_max_train_steps": str(max_steps),
        "ss_epoch": str(epoch),
        "ss_num_epochs": str(epochs),
        "ss_learning_rate": str(learning_rate),
        "ss_unet_lr": str(learning_rate),
        "ss_text_encoder_lr": str(text_encoder_lr if text_encoder_lr else learning_rate),
        "ss_network_train_unet_only": str(not train_text_encoder),
        "ss_batch_size_per_device": str(batch_size),
        "ss_optimizer": optimizer,
        "ss_lr_scheduler": lr_scheduler,
        "ss_noise_offset": str(noise_offset),
        "ss_min_snr_gamma": str(min_snr_gamma),
        "ss_seed": str(seed),
        "ss_mixed_precision": mixed_precision,
        "ss_v_parameterization": str(prediction_type == "v_prediction"),
        "ss_training_started_at": str(started_at),
        "ss_training_finished_at": str(finished_at),
        "ss_trigger": trigger,
        "ss_training_comment": f"trigger: {trigger}" if trigger else "",
        "lorawb_trigger": trigger,
        "lorawb_version": lorawb.__version__,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": MODELSPEC_ARCH.get(family, family) + "/lora",
        "modelspec.implementation": "diffusers",
        "modelspec.title": output_name,
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.trigger_phrase": trigger,
        "modelspec.date": _dt.datetime.fromtimestamp(started_at).isoformat(timespec="seconds"),
    }
    if v2:
        meta["ss_v2"] = "True"
    return meta
