"""Caches that make a step cheap: VAE latents on disk, text embeddings in memory.

Latents are cached as the VAE's posterior (mean, std), so each step still
draws a fresh latent sample like an uncached run does. A cache entry is keyed
by the image's content hash, its bucket, crop and flip, and a fingerprint of
the VAE, so editing an image, changing the resolution or the base model never
reuses a stale latent; they live in the project's ``.lorawb/cache/latents/``
and are shared between runs (changing one setting between runs costs nothing).

Text embeddings are cached only when the text encoders are frozen and every
caption is fixed (no tag shuffle or tag dropout): then each distinct caption
is encoded once.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lorawb.core.fsutil import atomic_write_bytes
from lorawb.train.data import Item, file_digest, load_image

if TYPE_CHECKING:
    from lorawb.families import Model, TextCond


def vae_fingerprint(model: Model) -> str:
    """Changes when the VAE's config or weights change (weights sampled, not all hashed)."""
    h = hashlib.sha1(json.dumps(dict(model.vae.config), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for _, p in sorted(model.vae.named_parameters())[:: max(1, len(list(model.vae.parameters())) // 16)]:
            h.update(p.detach().float().flatten()[:64].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class LatentCache:
    """(mean, std) of each image's VAE posterior, on disk and in memory."""

    def __init__(self, folder: Path, model: Model, crop: str) -> None:
        self.model = model
        self.crop = crop
        self.folder = Path(folder) / vae_fingerprint(model)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._mem: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}
        self._digests: dict[Path, str] = {}
        self.hits = 0
        self.misses = 0

    def key(self, item: Item, flip: bool) -> str:
        digest = self._digests.get(item.path)
        if digest is None:
            digest = self._digests[item.path] = file_digest(item.path)
        w, h = item.bucket
        return hashlib.sha1(f"{digest}:{w}x{h}:{self.crop}:{int(flip)}".encode()).hexdigest()

    def fill(self, items: list[Item], flips: tuple[bool, ...] = (False,)) -> None:
        """Load or compute every (item, flip) latent now, so steps never wait on the VAE."""
        for i, item in enumerate(items):
            for flip in flips:
                self._mem[(i, flip)] = self._load_or_encode(item, flip)

    def move_to(self, device: torch.device, budget_bytes: int = 2 << 30) -> bool:
        """Keep the cache on ``device`` when it fits in the budget (no host-to-GPU copy per step)."""
        size = sum(m.numel() * m.element_size() * 2 for m, _ in self._mem.values())
        if device.type == "cpu" or size > budget_bytes:
            return False
        self._mem = {k: (m.to(device), s.to(device)) for k, (m, s) in self._mem.items()}
        return True

    def get(self, index: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self._mem[(index, flip)]

    def _load_or_encode(self, item: Item, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from safetensors.torch import load, save

        path = self.folder / f"{self.key(item, flip)}.safetensors"
        if path.exists():
            try:
                t = load(path.read_bytes())
                self.hits += 1
                return t["mean"], t["std"]
            except Exception:  # a torn or foreign file: recompute it
                pass
        mean, std = encode_posterior(self.model, load_image(item.path, item.bucket, "center", flip).pixels[None])
        mean, std = mean[0].float().cpu().contiguous(), std[0].float().cpu().contiguous()
        atomic_write_bytes(path, save({"mean": mean, "std": std}))
        self.misses += 1
        return mean, std


@torch.no_grad()
def encode_posterior(model: Model, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return model.encode_posterior(pixels)


class TextCache:
    """Each distinct caption's conditioning, computed once with the frozen encoders."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._mem: dict[str, TextCond] = {}

    @torch.no_grad()
    def fill(self, captions: set[str], batch: int = 64) -> None:
        todo = sorted(c for c in captions if c not in self._mem)
        for i in range(0, len(todo), batch):
            chunk = todo[i : i + batch]
            cond = self.model.encode_text(self.model.tokenize(chunk))
            for j, cap in enumerate(chunk):
                self._mem[cap] = cond.index(j)

    def get(self, captions: list[str]) -> TextCond:
        from lorawb.families import TextCond

        missing = {c for c in captions if c not in self._mem}
        if missing:
            self.fill(missing)
        return TextCond.cat([self._mem[c] for c in captions])

    def __len__(self) -> int:
        return len(self._mem)


def save_torch(path: Path, obj: object) -> None:
    """torch.save, atomically (a stop during a write never leaves a torn resume state)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
