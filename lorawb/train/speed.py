"""The trainer's speed and memory levers, one small piece each, so the loop stays readable.

- ``LossMeter``: the loss summed on the device; read (one host sync) only when a step is logged,
  every ``train.log_every_n_steps`` steps (0: every step on CPU, where a sync costs nothing, and
  every 10th on a GPU, where a sync per step stalls the queue of kernels).
- ``use_fused_adamw``: PyTorch's fused AdamW where it exists (CUDA) for ``train.optimizer = 'adamw'``.
- ``compile_unet``: ``train.compile`` (opt-in), ``torch.compile`` of the UNet in place, falling
  back to eager where compilation is unavailable or fails.
- ``to_channels_last``: ``train.channels_last`` (opt-in): the UNet's convolutions in NHWC.
- ``Parking``: with the text-embedding cache the text encoders do nothing per step, and with the
  latent cache neither does the VAE: ``train.offload_frozen`` moves them off the GPU until a
  sample or a validation pass needs them.

Which of these made lorawb faster, and by how much, is measured by bench/train_speed.py (README).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from typing import Any

import torch

from lorawb.train.config import TrainConfig

GPU_LOG_EVERY = 10  # the default logging interval on a GPU (train.log_every_n_steps = 0)


def log_interval(cfg: TrainConfig, device: torch.device) -> int:
    n = cfg.train.log_every_n_steps
    if n > 0:
        return n
    return GPU_LOG_EVERY if device.type == "cuda" else 1


class LossMeter:
    """Step losses added up on the device; ``take`` syncs once and returns the mean since the last take."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.total = loss if self.total is None else self.total + loss
        self.count += 1

    def take(self, reduce: Any = None) -> float:
        """The mean loss since the last take (``reduce``: averages a tensor over processes)."""
        if self.total is None:
            return float("nan")
        mean = self.total / self.count
        if reduce is not None:
            mean = reduce(mean)
        self.total, self.count = None, 0
        return float(mean.item())


def use_fused_adamw(cfg: TrainConfig, device: torch.device) -> bool | None:
    """fused=True for 'adamw_fused' (anywhere) and for 'adamw' on CUDA; None leaves torch's default."""
    if cfg.train.optimizer == "adamw_fused":
        return True
    if cfg.train.optimizer == "adamw" and device.type == "cuda":
        return True
    return None


def compile_unet(unet: torch.nn.Module, device: torch.device, log: logging.Logger) -> bool:
    """``torch.compile`` the UNet in place (its module names, which the LoRA export reads, stay as they are).

    Compilation happens at the first step; where it fails, dynamo runs that code eagerly instead
    (``suppress_errors``) and says so in the log. On CPU inductor needs a C++ compiler: without one
    the UNet stays eager. Returns whether the UNet was set to compile.
    """
    if not hasattr(torch, "compile"):
        log.warning("train.compile: this torch has no torch.compile; training eagerly")
        return False
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        log.warning("train.compile: no C++ compiler for inductor on CPU; training eagerly")
        return False
    try:
        from torch import _dynamo

        _dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly
        unet.compile()
    except Exception as exc:  # an unusable backend: keep training, eagerly
        log.warning("train.compile: %s; training eagerly", exc)
        return False
    log.info("train.compile: the UNet compiles at the first step (torch.compile)")
    return True


def to_channels_last(unet: torch.nn.Module) -> None:
    unet.to(memory_format=torch.channels_last)


class Parking:
    """Frozen networks the caches make idle, moved to the CPU (from a GPU) until something needs them."""

    def __init__(self, model: Any, device: torch.device, *, text_cached: bool, latents_cached: bool) -> None:
        self.model = model
        self.device = device
        self.text = text_cached
        self.vae = latents_cached
        self.parked = False

    def _modules(self) -> list[Any]:
        mods: list[Any] = list(self.model.text_encoders) if self.text else []
        return mods + ([self.model.vae] if self.vae else [])

    def park(self) -> list[str]:
        """Move the idle networks to the CPU; the names of those moved (nothing on a CPU run)."""
        if self.device.type == "cpu" or not self._modules():
            return []
        for m in self._modules():
            m.to("cpu")
        torch.cuda.empty_cache()
        self.parked = True
        return (["text encoders"] if self.text else []) + (["VAE"] if self.vae else [])

    @contextlib.contextmanager
    def unparked(self) -> Iterator[None]:
        """The parked networks back on the device for the duration (samples, validation)."""
        if not self.parked:
            yield
            return
        for m in self._modules():
            m.to(self.device)
        try:
            yield
        finally:
            self.park()
