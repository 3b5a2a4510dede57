"""Image (and text) embeddings from a local model folder, and the dataset's, cached in .lorawb/.

The folder is a transformers model saved with ``save_pretrained``: a CLIP (``CLIPModel``,
image and text towers; or ``CLIPVisionModelWithProjection``, images only) or a DINOv2
(``Dinov2Model``, images only), with its ``preprocessor_config.json`` (and tokenizer for
CLIP). It is loaded offline with safetensors weights. Embeddings are L2-normalised, so a
dot product is the cosine similarity.

The dataset's embeddings are cached under ``.lorawb/matrix/embeddings/`` per embedder,
keyed by image path, size and modification time: a changed image is embedded again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lorawb.core.fsutil import atomic_write_bytes
from lorawb.errors import ImageError, ModelError

KINDS = {
    "CLIPModel": "clip",
    "CLIPVisionModelWithProjection": "clip_vision",
    "Dinov2Model": "dinov2",
}
BY_MODEL_TYPE = {"clip": "CLIPModel", "clip_vision_model": "CLIPVisionModelWithProjection", "dinov2": "Dinov2Model"}


def _tensor(out: Any) -> torch.Tensor:
    """transformers versions differ: ``get_*_features`` return a tensor or an output object."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    return pooled if pooled is not None else out[0]


def _normalise(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


@dataclass
class Embedder:
    path: Path
    architecture: str
    model: Any
    processor: Any
    tokenizer: Any | None
    device: torch.device

    @property
    def kind(self) -> str:
        return KINDS[self.architecture]

    @property
    def has_text(self) -> bool:
        return self.kind == "clip" and self.tokenizer is not None

    @property
    def name(self) -> str:
        """What the scores say measured them: ``CLIP (clip-vit-b32)``."""
        label = {"clip": "CLIP", "clip_vision": "CLIP vision", "dinov2": "DINOv2"}[self.kind]
        return f"{label} ({self.path.name})"

    @property
    def key(self) -> str:
        """Changes when the folder's config or weights change (the dataset cache is per key)."""
        h = hashlib.sha1(str(self.path.resolve()).encode())
        for f in sorted(self.path.glob("*.json")) + sorted(self.path.glob("*.safetensors")):
            if f.name.startswith("lorawb_"):  # lorawb's notes about the model (calibration), not the model
                continue
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    @torch.no_grad()
    def images(self, images: Sequence[Image.Image], batch: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch):
            chunk = [im.convert("RGB") for im in images[i : i + batch]]
            pixels = self.processor(images=chunk, return_tensors="pt")["pixel_values"].to(self.device)
            if self.kind == "clip":
                feats = self.model.get_image_features(pixel_values=pixels)
            elif self.kind == "clip_vision":
                feats = self.model(pixel_values=pixels).image_embeds
            else:
                feats = self.model(pixel_values=pixels).pooler_output  # the CLS token after the final norm
            out.append(_normalise(_tensor(feats)))
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    @torch.no_grad()
    def texts(self, texts: Sequence[str]) -> np.ndarray:
        if not self.has_text:
            raise ModelError(f"{self.name} has no text tower", path=self.path)
        tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        feats = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok.get("attention_mask"))
        return _normalise(_tensor(feats))


def load_embedder(path: str | Path, device: str = "cpu") -> Embedder:
    """Load a CLIP / CLIP vision / DINOv2 folder offline (ModelError says what is missing)."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars are noise in logs
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelError(
            "not a transformers model folder (no config.json)",
            path=folder,
            hint="[matrix] embedder names a local CLIP or DINOv2 folder saved with save_pretrained",
        )
    if not any(folder.glob("*.safetensors")):
        raise ModelError(
            "the embedder folder has no .safetensors weights (pickle .bin files can run code; they are not loaded)",
            path=folder,
            hint="convert it with `model.save_pretrained(folder, safe_serialization=True)`",
        )
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the embedder's config: {exc}", path=folder) from exc
    arch = next((a for a in (getattr(config, "architectures", None) or []) if a in KINDS), None)
    arch = arch or BY_MODEL_TYPE.get(getattr(config, "model_type", ""))
    if arch is None:
        raise ModelError(
            f"unsupported embedder ({getattr(config, 'model_type', '?')})",
            path=folder,
            hint="use a CLIPModel, CLIPVisionModelWithProjection or Dinov2Model folder",
        )
    if not (folder / "preprocessor_config.json").is_file():
        raise ModelError(
            "the embedder folder has no preprocessor_config.json (how to resize and normalise images)",
            path=folder,
            hint="save the model's image processor beside it: processor.save_pretrained(folder)",
        )
    cls = getattr(transformers, arch)
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    proc_kw: dict[str, Any] = {"local_files_only": True}
    if int(transformers.__version__.split(".")[0]) >= 5:
        proc_kw["backend"] = "pil"  # torchvision does not load beside the CPU torch build (DESIGN.md)
    try:
        model = cls.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(dev).eval()
        processor = AutoImageProcessor.from_pretrained(folder, **proc_kw)
        tokenizer = None
        if arch == "CLIPModel" and any((folder / n).is_file() for n in ("tokenizer.json", "vocab.json")):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load the embedder: {exc}", path=folder) from exc
    return Embedder(folder, arch, model, processor, tokenizer, dev)


# --- the dataset's embeddings, cached -------------------------------------------------------------


def _stamp(p: Path) -> str:
    st = p.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def dataset_embeddings(embedder: Embedder, cache_dir: Path, root: Path, images: Sequence[Path]) -> np.ndarray:
    """Embeddings of ``images`` (rows in their order), from the cache where the file has not changed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    index_path = cache_dir / f"{embedder.key}.json"
    vectors_path = cache_dir / f"{embedder.key}.npy"
    cached: dict[str, Any] = {}
    vectors = None
    try:
        cached = json.loads(index_path.read_text(encoding="utf-8"))
        vectors = np.load(vectors_path)
    except (OSError, ValueError):
        cached, vectors = {}, None
    rels = [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in images]
    stamps = [_stamp(p) for p in images]
    rows: list[np.ndarray | None] = []
    todo: list[int] = []
    for i, (rel, stamp) in enumerate(zip(rels, stamps, strict=True)):
        hit = cached.get(rel)
        if vectors is not None and hit and hit.get("stamp") == stamp and hit.get("row", -1) < len(vectors):
            rows.append(vectors[hit["row"]])
        else:
            rows.append(None)
            todo.append(i)
    if todo:
        fresh = embedder.images([_open(images[i]) for i in todo])
        for j, i in enumerate(todo):
            rows[i] = fresh[j]
    mat = np.stack(rows) if rows else np.zeros((0, 1), np.float32)  # type: ignore[arg-type]
    if todo or len(cached) != len(rels):
        import io

        buf = io.BytesIO()
        np.save(buf, mat.astype(np.float32))
        atomic_write_bytes(vectors_path, buf.getvalue())
        index = {rel: {"stamp": stamp, "row": i} for i, (rel, stamp) in enumerate(zip(rels, stamps, strict=True))}
        atomic_write_bytes(index_path, json.dumps(index).encode("utf-8"))
    return mat


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read image: {exc}", path=path) from exc
