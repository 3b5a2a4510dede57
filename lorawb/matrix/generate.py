"""The image generator: a base model loaded once, LoRAs swapped as adapters, images in batches.

This is the core that a matrix run (and anything else that draws images from a project's
model, such as regularisation images) calls:

    gen = Generator.load(model_section)            # the base model, once (lorawb.families)
    for batch in plan_batches(requests, size=8):   # the costly settings outermost
        images = gen.run_batch(batch)              # one pipeline call per batch

An ``ImageRequest`` is every parameter of one image. Requests that share all settings but
prompt, negative prompt and seed are drawn in one pipeline call. Each image's starting
noise comes from its own CPU generator seeded with its seed, so an image does not depend
on the other images of its batch (up to float summation order: a regenerated batch is
bit-identical, a lone regeneration differs by at most a level in a few pixels), nor on the
device. LoRA files are loaded by the model's family (``Model.load_lora``: diffusers'
``load_lora_weights`` where it reads the file's naming) as named adapters on the one pipeline; a weight is the adapter's
scale; for a batch the scaled deltas are merged into the base weights (copied back exactly
afterwards), so drawing with a LoRA costs no more than without; weight 0 is the base model
exactly. At most ``max_loaded`` LoRAs stay loaded; the least recently used one is deleted first.

A variation helper (``use_helper``: an IP-Adapter, a ControlNet, reference editing; what the
model's family offers) turns the pipeline into the family's pipeline for it, built from the same
loaded components; each request then brings the helper's image (``helper_input``).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lorawb.core.dataset import load_image
from lorawb.errors import ModelError
from lorawb.families import Helper, Model, load_base_model
from lorawb.matrix.requests import ImageRequest, plan_batches
from lorawb.train.config import ModelSection

log = logging.getLogger("lorawb.matrix")
__all__ = ["Generator", "ImageRequest", "plan_batches"]


def pick_device(device: str = "auto") -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device is 'cuda' but no CUDA GPU is visible", hint="use device = 'auto'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class Generator:
    """One loaded base model as a diffusers pipeline, drawing batches of ImageRequests."""

    def __init__(self, model: Model, device: torch.device, dtype: torch.dtype, max_loaded: int = 2) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.max_loaded = max(1, max_loaded)
        self.pipe = model.pipeline()
        self.pipe.set_progress_bar_config(disable=True)
        self._schedulers: dict[str, Any] = {}
        self._adapters: dict[str, str] = {}  # file -> adapter name, least recently used first
        self._count = 0
        self.lora_warnings: dict[str, list[str]] = {}  # file -> what diffusers said while loading it
        self.merge = True  # merge LoRA deltas into the weights per batch (False: peft's unmerged layers)
        self._originals: list[tuple[Any, torch.Tensor]] = []  # (LoRA layer, its base weight as loaded)
        self._merged: tuple[tuple[str, float], ...] | None = None
        self.helper: Helper | None = None

    def use_helper(self, helper: Helper) -> None:
        """Draw with a variation helper from now on (the family's pipeline for it, same components)."""
        self.pipe = self.model.helper_pipeline(self.pipe, helper)
        self.pipe.set_progress_bar_config(disable=True)
        self.helper = helper

    @classmethod
    def load(
        cls,
        model: ModelSection,
        device: str = "auto",
        precision: str = "auto",
        threads: int = 0,
        max_loaded: int = 2,
        settings: dict[str, Any] | None = None,
    ) -> Generator:
        """The base model once (``settings``: its family's section as a run trained it, e.g. the T5
        length, so a matrix draws the run's model as it was trained; None: the family's defaults)."""
        from lorawb.train.trainer import quiet_libraries

        quiet_libraries()
        threads = threads or int(os.environ.get("LORAWB_THREADS", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        dev = pick_device(device)
        dtype = pick_dtype(dev, precision)
        return cls(load_base_model(model, dev, dtype, settings=settings), dev, dtype, max_loaded)

    # --- adapters -------------------------------------------------------------------------------
    def _adapter(self, path: str) -> str:
        if path in self._adapters:
            self._adapters[path] = self._adapters.pop(path)  # most recently used last
            return self._adapters[path]
        self._count += 1
        name = f"l{self._count}_" + re.sub(r"[^A-Za-z0-9_]", "_", Path(path).stem)[:40]
        caught = _Warnings()
        logger = logging.getLogger("diffusers")
        logger.addHandler(caught)
        try:
            with warnings.catch_warnings():
                # peft warns on every adapter after the first; several adapters is what we want
                warnings.filterwarnings("ignore", message=".*Already found a `peft_config`")
                self.model.load_lora(self.pipe, Path(path), name)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(
                f"cannot load this LoRA: {exc}", path=path, hint="is it a LoRA for this base model?"
            ) from exc
        finally:
            logger.removeHandler(caught)
        if caught.messages:
            self.lora_warnings[path] = caught.messages
            for msg in caught.messages:
                log.warning("%s: %s", Path(path).name, msg)
        self._adapters[path] = name
        return name

    def _evict(self, keep: set[str]) -> None:
        while len(self._adapters) > self.max_loaded:
            if self._merged is not None:
                self._restore()
            victim = next((p for p in self._adapters if p not in keep), None)
            if victim is None:
                return
            self.pipe.delete_adapters([self._adapters.pop(victim)])

    def _lora_layers(self) -> list[Any]:
        from peft.tuners.lora import LoraLayer

        nets = [self.model.denoiser, *self.model.text_encoders]
        return [m for net in nets for m in net.modules() if isinstance(m, LoraLayer)]

    def _restore(self) -> None:
        """The base weights exactly as loaded (merged LoRA deltas removed by copying the originals back)."""
        for module, original in self._originals:
            module.get_base_layer().weight.data.copy_(original)
        self._merged = None

    def _merge(self, names: list[str]) -> bool:
        """Add the active adapters' deltas (at their set scales) into the base weights; False if one cannot be."""
        layers = [(m, n) for m in self._lora_layers() for n in names if n in m.lora_A]
        if any(n in getattr(m, "lora_magnitude_vector", {}) for m, n in layers):
            return False  # DoRA rescales the whole weight: run it unmerged
        kept = {id(m) for m, _ in self._originals}
        for m, n in layers:
            base = m.get_base_layer()
            if id(m) not in kept:
                self._originals.append((m, base.weight.data.clone()))
                kept.add(id(m))
            base.weight.data += m.get_delta_weight(n).to(base.weight.dtype)
        return True

    def use_loras(self, loras: tuple[tuple[str, float], ...]) -> None:
        """Apply these LoRAs at these weights (none: the base model, exactly).

        The deltas are merged into the weights for the batch (as ComfyUI and A1111 apply a LoRA),
        so a LoRA costs nothing per step; the original weights are copied back afterwards.
        """
        active = tuple((p, w) for p, w in loras if w != 0.0)
        if active == self._merged:
            return
        if self._merged is not None:
            self._restore()
        if not active:
            if self._adapters:
                self.pipe.disable_lora()
            return
        names = [self._adapter(p) for p, _ in active]
        self._evict({p for p, _ in active})
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=[w for _, w in active])
        if self.merge and self._merge(names):
            self.pipe.disable_lora()  # the merged weights carry the LoRAs; their own layers are skipped
            self._merged = active

    def _scheduler(self, name: str) -> Any:
        if name not in self._schedulers:
            self._schedulers[name] = self.model.sampler(name)
        return self._schedulers[name]

    # --- drawing --------------------------------------------------------------------------------
    def noise(self, r: ImageRequest) -> torch.Tensor:
        """The starting latents of one request: its own CPU generator, so the same on every device."""
        return self.model.initial_noise(int(r.seed), r.width, r.height)

    @torch.no_grad()
    def run_batch(self, requests: Sequence[ImageRequest]) -> list[Any]:
        """Draw one batch (all sharing ``setting()``) in one pipeline call; PIL images in request order."""
        if not requests:
            return []
        first = requests[0]
        if any(r.setting() != first.setting() for r in requests):
            raise ValueError("a batch must share LoRAs, sampler, steps, size, guidance and helper")
        extra: dict[str, Any] = {}
        if first.helper:
            if self.helper is None or self.helper.kind != first.helper:
                raise ValueError(f"these requests need the {first.helper} helper; use_helper() loads it")
            image = load_image(first.helper_input).convert("RGB")  # the one safe image reader
            extra = self.model.helper_inputs(self.pipe, self.helper, image, first.width, first.height)
        self.use_loras(first.active_loras)
        self.pipe.scheduler = self._scheduler(first.sampler)
        latents = torch.cat([self.noise(r) for r in requests]).to(self.device, self.dtype)
        generators = [torch.Generator(device="cpu").manual_seed(int(r.seed) + 1) for r in requests]
        negatives = [r.negative for r in requests]
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)
        with autocast:
            return self.model.draw(
                self.pipe,
                prompt=[r.prompt for r in requests],
                negative_prompt=negatives if any(negatives) else None,
                num_inference_steps=first.steps,
                guidance_scale=first.cfg,
                width=first.width,
                height=first.height,
                latents=latents,
                generator=generators,
                **extra,
            )
