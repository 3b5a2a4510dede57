"""Which base model a config points at, checked without loading it (and without torch).

``start_run`` calls ``check_model_path`` before it creates a run folder, so a
missing model or a refused pickle file is reported at once, not by a worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lorawb.errors import ModelError
from lorawb.train.config import ModelSection

PICKLE_EXTS = (".ckpt", ".pt", ".pth", ".bin")
SINGLE_FILE_EXTS = (".safetensors", *PICKLE_EXTS)


# --- finding and checking (no torch) -------------------------------------------------------------------------


def check_model_path(cfg: ModelSection) -> Path:
    """The base model path, checked without loading: exists, known kind, pickle refused unless allowed."""
    if not cfg.path:
        raise ModelError(
            "no base model set (model.path is empty)",
            hint="set [model] path in lorawb.toml to a diffusers folder or a .safetensors file, "
            "or build a test model with `lorawb make-tiny-model models/tiny`",
        )
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise ModelError(
            "base model not found", path=path, hint="check model.path (relative paths start at the project)"
        )
    if path.is_dir():
        if not (path / "model_index.json").is_file() and not (path / "unet" / "config.json").is_file():
            raise ModelError(
                "not a diffusers model folder (no model_index.json or unet/config.json)",
                path=path,
                hint="point model.path at the folder that holds model_index.json, or at a single .safetensors file",
            )
        if not cfg.allow_pickle and _folder_needs_pickle(path):
            raise ModelError(
                "this model folder has only pickle weights (.bin), which can run code when loaded",
                path=path,
                hint="convert it to safetensors, or pass --allow-pickle (model.allow_pickle = true) if you trust it",
            )
        return path
    ext = path.suffix.lower()
    if ext in PICKLE_EXTS and not cfg.allow_pickle:
        raise ModelError(
            f"refusing to load a pickle checkpoint ({ext}): it can run arbitrary code",
            path=path,
            hint="use a .safetensors file, or pass --allow-pickle (model.allow_pickle = true) if you trust it",
        )
    if ext not in SINGLE_FILE_EXTS:
        raise ModelError(
            f"unknown model file type {ext!r}", path=path, hint="use a .safetensors file or a diffusers folder"
        )
    return path


def _folder_needs_pickle(path: Path) -> bool:
    unet = path / "unet"
    if not unet.is_dir():
        return False
    names = [p.name for p in unet.iterdir()]
    return not any(n.endswith(".safetensors") for n in names) and any(n.endswith(".bin") for n in names)


def detect_family(path: Path, forced: str = "auto") -> str:
    """sd1, sd2 or sdxl, from model_index.json / unet config, or a single file's keys."""
    if forced != "auto":
        return forced
    if path.is_dir():
        index = read_json(path / "model_index.json")
        cls = str(index.get("_class_name", ""))
        if "XL" in cls or (path / "text_encoder_2").is_dir():
            return "sdxl"
        unet_cfg = read_json(path / "unet" / "config.json")
        if unet_cfg.get("addition_embed_type") == "text_time":
            return "sdxl"
        if unet_cfg.get("cross_attention_dim") == 1024:
            return "sd2"
        return "sd1"
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            keys = list(fh.keys())
        if any(k.startswith(("lora_unet_", "lora_te")) for k in keys[:50]):
            raise ModelError("this file is a LoRA, not a base model", path=path, hint="model.path must be a base model")
        if any(k.startswith("conditioner.embedders.1") for k in keys):
            return "sdxl"
        if any(k.startswith("cond_stage_model.model.") for k in keys):
            return "sd2"
        if any(k.startswith(("cond_stage_model.transformer", "model.diffusion_model")) for k in keys):
            return "sd1"
        raise ModelError(
            "cannot tell which model family this file is",
            path=path,
            hint="set model.family to sd1, sd2 or sdxl",
        )
    return "sd1"  # a pickle file we may not open before loading; from_single_file decides


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
