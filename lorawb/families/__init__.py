"""Model families: one module per family behind one small protocol (``base.Family`` / ``base.Model``).

The registry below names them, in the order detection tries them (the most specific first).
A new family is one module with its ``Family`` and ``Model`` classes, one line here, and its
tests; the training loop, the caches, resume, the monitor and the matrix never name a family.
Importing this package costs no torch: family modules import torch inside their methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.errors import ModelError
from lorawb.families.base import Family, Helper, Model, Noised, TextCond, helper_missing
from lorawb.families.chroma import ChromaFamily
from lorawb.families.flux import FluxFamily
from lorawb.families.flux2_klein import KleinFamily
from lorawb.families.qwenimage import QwenImageFamily
from lorawb.families.sd import SD2Family, SDFamily
from lorawb.families.sd3 import SD3Family
from lorawb.families.sdxl import SDXLFamily
from lorawb.families.zimage import ZImageFamily

if TYPE_CHECKING:
    from lorawb.train.config import ModelSection, TrainConfig

# Detection order: a ComfyUI Flux file also has model.diffusion_model.* keys, so the transformers
# come before SD1; SDXL's UNet config would pass SD1's check, so it comes first of the UNets.
REGISTRY: dict[str, Family] = {
    f.name: f
    for f in (
        KleinFamily(),
        ZImageFamily(),
        QwenImageFamily(),
        SD3Family(),
        ChromaFamily(),
        FluxFamily(),
        SDXLFamily(),
        SD2Family(),
        SDFamily(),
    )
}

__all__ = [
    "Family",
    "Model",
    "Noised",
    "TextCond",
    "Helper",
    "helper_missing",
    "REGISTRY",
    "get",
    "names",
    "detect",
    "settings_sections",
    "load_base_model",
]


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Family:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model family {name!r}", hint="model.family is one of: auto, " + ", ".join(REGISTRY)
        ) from None


def settings_sections() -> dict[str, type[Any]]:
    """The families' own config sections (``[flux]`` …), by section name."""
    return {name: f.settings for name, f in REGISTRY.items() if f.settings is not None}


def detect(path: Path, forced: str = "auto") -> Family:
    """The family of a diffusers folder (model_index.json, component configs) or a single
    .safetensors file (its tensor names); ``forced``: model.family when it is not "auto"."""
    from lorawb.train.modelpath import read_json

    if forced != "auto":
        return get(forced)
    path = Path(path)
    if path.is_dir():
        index = read_json(path / "model_index.json")
        for family in REGISTRY.values():
            if family.detect_folder(path, index):
                return family
        raise ModelError(
            "cannot tell which model family this folder is",
            path=path,
            hint="set model.family to one of: " + ", ".join(REGISTRY),
        )
    if path.suffix.lower() == ".safetensors":
        keys = safetensors_keys(path)
        if any(k.startswith(("lora_unet_", "lora_te", "lora_transformer_")) for k in keys[:50]) or any(
            ".lora_A." in k or ".lora_down." in k for k in keys[:50]
        ):
            raise ModelError("this file is a LoRA, not a base model", path=path, hint="model.path must be a base model")
        for family in REGISTRY.values():
            if family.detect_keys(keys):
                return family
        raise ModelError(
            "cannot tell which model family this file is",
            path=path,
            hint="set model.family to one of: " + ", ".join(REGISTRY),
        )
    return REGISTRY["sd1"]  # a pickle file we may not open before loading; from_single_file decides


def load_base_model(
    model: ModelSection,
    device: Any,
    dtype: Any = None,
    cfg: TrainConfig | None = None,
    place: bool = True,
    settings: dict[str, Any] | None = None,
) -> Model:
    """The base model ``model.path`` names, loaded by its family in ``dtype`` on ``device``.

    ``cfg``: the whole training config, for the family's own section (``[flux]`` ...) and its
    checks of the other settings; without it (the matrix, reg images) ``settings``, the family
    section a run was trained with (as ``family_settings`` gives it), else the family's defaults.
    A big model (``model.quantize``, ``train.offload_blocks``) is loaded on the CPU, quantised
    there and then placed (lorawb.train.bigmodel); ``place=False`` leaves its denoiser on the CPU
    for the trainer, which places it once the caches are filled.
    """
    import torch

    from lorawb.train import bigmodel
    from lorawb.train.modelpath import check_model_path

    path = check_model_path(model)
    family = detect(path, model.family)
    if cfg is not None:
        settings = family.section(cfg)
    elif family.settings is not None:
        settings = family.settings.model_validate(settings or {})
    if cfg is not None:
        family.check_config(cfg)
    offload = cfg.train.offload_blocks if cfg is not None else 0
    big = bigmodel.staged(model.quantize, offload)
    loaded = family.load(model, path, torch.device("cpu") if big else device, dtype or torch.float32, settings)
    loaded.settings = settings
    if big:
        # The frozen text encoders too: they fill the caches, and come back beside the denoiser for samples.
        quantize_text = cfg is None or not cfg.network.train_text_encoder
        bigmodel.stage(loaded, torch.device(device), model.quantize, offload, quantize_text=quantize_text)
        if place:
            bigmodel.place(loaded)
    return loaded


def family_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The model family's own section of a config as plain data ({} when the family has none or
    cannot be told): what a matrix cell records so that its base draws as the run was trained."""
    from lorawb.train.config import family_of

    family = family_of(cfg)
    if family is None or family.settings is None:
        return {}
    return family.section(cfg).model_dump(mode="json")


def lora_family(keys: list[str], metadata: dict[str, str]) -> str | None:
    """The family a LoRA file was made for: from its metadata (ss_base_model_version,
    modelspec.architecture), else from its tensor names; None when nothing tells."""
    version = metadata.get("ss_base_model_version", "")
    arch = metadata.get("modelspec.architecture", "")
    for family in REGISTRY.values():
        if any(version.startswith(v) for v in family.lora_versions) or any(
            a in arch for a in family.lora_architectures
        ):
            return family.name
    for family in REGISTRY.values():
        if family.detect_lora_keys(keys):
            return family.name
    return None


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names of a .safetensors file, sorted, from its header (nothing loaded; a pickle
    named .safetensors is a ModelError naming the file)."""
    from lorawb.train.modelpath import safetensors_header

    return sorted(k for k in safetensors_header(path) if k != "__metadata__")
