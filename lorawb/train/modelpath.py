"""Which base model a config points at, checked without loading it (and without torch).

``start_run`` calls ``check_model_path`` before it creates a run folder, so a
missing model or a refused pickle file is reported at once, not by a worker.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
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
        for weights in sorted(path.glob("*/*.safetensors")):  # each component's weights (unet/, vae/...)
            safetensors_header(weights, "model.path")
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
    if ext == ".safetensors":
        safetensors_header(path, "model.path")
    return path


PICKLE_PROTOCOLS = tuple(bytes([0x80, n]) for n in range(2, 6))  # how a pickle (protocol 2-5) starts
TORCH_ZIP = b"PK\x03\x04"  # torch.save's format: a zip that holds a pickle
MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def safetensors_header(path: Path, key: str = "") -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names, shapes, ``__metadata__``), read without
    loading anything (no torch). A file that is not one (a pickle checkpoint renamed .safetensors,
    a truncated download) is a ModelError naming the file (and ``key``, the setting that named it);
    nothing in it is run."""
    where = f"{key}: " if key else ""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = os.fstat(fh.fileno()).st_size
            if head.startswith(TORCH_ZIP) or head[:2] in PICKLE_PROTOCOLS:
                raise ModelError(
                    f"{where}this is a pickle (a PyTorch checkpoint named .safetensors), which can run code when "
                    "loaded: not opened",
                    path=path,
                    hint="use the real .safetensors file, or convert the checkpoint to safetensors where you trust it",
                )
            if len(head) < 8:
                raise ValueError("the file is too short")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, size - 8):
                raise ValueError("its header length does not fit the file")
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelError(
            f"{where}not a readable .safetensors file ({exc})",
            path=path,
            hint="is it complete? download or copy it again",
        ) from exc
    if not isinstance(header, dict):
        raise ModelError(f"{where}not a readable .safetensors file (its header is not a table)", path=path)
    return header


def _folder_needs_pickle(path: Path) -> bool:
    unet = path / "unet"
    if not unet.is_dir():
        return False
    names = [p.name for p in unet.iterdir()]
    return not any(n.endswith(".safetensors") for n in names) and any(n.endswith(".bin") for n in names)


def detect_family(path: Path, forced: str = "auto") -> str:
    """The family's name (``model.family``) of a diffusers folder or single file (lorawb.families)."""
    from lorawb.families import detect

    return detect(path, forced).name


def check_single_file_parts(path: str | Path, config: str | Path = "") -> None:
    """A ModelError naming every part a single-file model lacks: the subfolders its family takes from
    ``model.config``'s diffusers folder (a transformer-only file's text encoders, VAE ...) that are not
    there. Nothing for folders and whole single files."""
    from lorawb.families import detect

    path = Path(path).expanduser()
    if path.is_dir() or not path.exists():
        return
    family = detect(path)
    parts = family.single_file_parts()
    folder = Path(config).expanduser() if config else None
    missing = [p for p in parts if folder is None or not (folder / p).is_dir()]
    if not missing:
        return
    where = "this file holds the transformer only" if folder is None else f"{folder} lacks them"
    raise ModelError(
        f"a single-file {family.label} model needs " + ", ".join(f"{p}/" for p in missing) + f" ({where})",
        path=path,
        hint="name a diffusers folder of the same model that has them: --model-config DIR (model.config)",
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# --- what a model is made for (no torch) -------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    """The resolution a base model was trained at and the bucket step that suits it, and how it is known."""

    resolution: int
    bucket_step: int
    source: str  # e.g. "lorawb_model.json", "unet sample_size 16 x VAE scale 2"


def recommended_bucket_step(resolution: int, vae_scale: int = 8) -> int:
    """Bucket sides in steps of a quarter of the resolution, at most 64 (kohya's 64 at 512; 8 at 32), whole latents."""
    step = min(64, max(1, resolution // 4))
    return max(vae_scale, step // vae_scale * vae_scale)


def recommend(path: str | Path, config: str | Path = "") -> Recommendation | None:
    """The model's own recommendation: lorawb_model.json's ``recommended`` size, else what its
    family reads off its configs (an SD UNet's sample_size x the VAE's scale), else its family's
    usual size; None when it cannot be read. ``config``: a single file's ``model.config`` folder,
    read for what the file cannot say."""
    from lorawb.families import detect

    path = Path(path).expanduser()
    if not path.exists():
        return None
    try:
        family = detect(path)
    except (ModelError, OSError, ValueError):
        return None
    folder = path if path.is_dir() or not config else Path(config).expanduser()
    step_unit = family.latent_step(folder)
    if folder.is_dir():
        rec = read_json(folder / "lorawb_model.json").get("recommended", {})
        if isinstance(rec.get("width"), int) and isinstance(rec.get("height"), int):
            res = int(math.sqrt(rec["width"] * rec["height"]))
            return Recommendation(res, recommended_bucket_step(res, step_unit), "lorawb_model.json")
        native = family.native_size(folder)
        if native is not None:
            res, source = native
            return Recommendation(res, recommended_bucket_step(res, step_unit), source)
    res = family.resolution
    return Recommendation(res, recommended_bucket_step(res, step_unit), f"the usual size of {family.name} models")


def resolution_warning(resolution: int, rec: Recommendation | None) -> str | None:
    """A warning when training is set far (2x or more) from the model's resolution, else None."""
    if rec is None or resolution <= 0:
        return None
    ratio = resolution / rec.resolution
    if 0.5 < ratio < 2:
        return None
    cost = ratio * ratio
    how = f"each step costs about {cost:.0f}x the pixels" if ratio > 1 else "the model draws poorly that small"
    return (
        f"resolution {resolution} is {ratio:.3g}x the model's {rec.resolution} ({rec.source}): {how}; "
        f"set project.resolution = {rec.resolution} and dataset.bucket_step = {rec.bucket_step}"
    )
