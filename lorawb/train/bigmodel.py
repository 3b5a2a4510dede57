"""Big models on one GPU: a quantised frozen base and its blocks offloaded to CPU memory.

The path a big model takes (lorawb.families.load_base_model calls ``stage``; the trainer calls
``place`` once its caches are filled and the idle encoders are parked):

1. the family loads every component on the CPU;
2. ``model.quantize``: the Linear layers of the denoiser's blocks (``Model.blocks()``) are quantised
   there, block by block (lorawb.train.quantize), and the frozen text encoders' too (they fill the
   caches, and come back beside the denoiser for samples: T5-XXL is 9.5 GB in bf16);
3. the text encoders and the VAE go to the GPU (they fill the caches first);
4. ``place``: the denoiser goes to the GPU, except the first ``train.offload_blocks`` blocks' frozen
   weights, which stay in (pinned) CPU memory and are copied in for each forward of their block.

So the denoiser never shares the GPU with the text encoders while they fill the caches, and a
model larger than the card trains at all.

Offloading (``BlockOffload``): each offloaded block's ``forward`` is wrapped so its frozen weights
are on the GPU while it runs and point back at their CPU copies after. Gradient checkpointing is
required: the backward pass then recomputes each block's forward (which copies the weights in
again), and the recomputed graph keeps that copy alive until the block's gradients are done.
The wrapper is installed before checkpointing wraps the blocks, so both the denoiser's own
checkpointing and lorawb's (lorawb.families.flow.checkpoint_blocks) recompute through it.
diffusers' group offloading has no such training path (its hooks move weights away between a
block's forward and its backward). A frozen weight needs no copy back: the CPU copy stays valid.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from lorawb.errors import ConfigError, ModelError
from lorawb.train import quantize as Q


@dataclass
class BigModel:
    """What a staged model still needs: where it goes, and the offloaded blocks' hooks."""

    device: torch.device
    quantize: str = "none"
    offload_blocks: int = 0
    offload: BlockOffload | None = None
    placed: bool = False
    quantized_layers: int = 0
    quantized_text_layers: int = 0


def staged(quantize: str, offload_blocks: int) -> bool:
    """Does the model take the big-model path (loaded on the CPU, then quantised and placed)?"""
    return quantize != "none" or offload_blocks > 0


def stage(model: Any, device: torch.device, quantize: str, offload_blocks: int, quantize_text: bool) -> None:
    """Quantise the CPU-loaded ``model`` (a lorawb.families Model) and move its text encoders and
    VAE to ``device``; the denoiser waits on the CPU for ``place``."""
    blocks = list(model.blocks())
    if not blocks:
        raise ModelError(
            f"{model.spec.label} names no blocks to quantise or offload",
            hint="set model.quantize = 'none' and train.offload_blocks = 0",
        )
    if offload_blocks > len(blocks):
        raise ConfigError(
            f"train.offload_blocks: {model.spec.label} has {len(blocks)} blocks; {offload_blocks} cannot be offloaded",
            hint=f"set train.offload_blocks to at most {len(blocks)}",
        )
    Q.check_device(quantize, device)
    big = BigModel(device=device, quantize=quantize, offload_blocks=offload_blocks)
    if quantize != "none":
        work = device if device.type == "cuda" else torch.device("cpu")
        big.quantized_layers = Q.quantize_blocks(blocks, quantize, work)
        if quantize_text:
            big.quantized_text_layers = sum(Q.quantize_blocks([te], quantize, work) for te in model.text_encoders)
    for te in model.text_encoders:
        Q.move(te, device)
    model.vae.to(device)
    model.big = big


def install_offload(model: Any) -> BlockOffload | None:
    """Wrap the first ``offload_blocks`` blocks' forward (before gradient checkpointing wraps them)."""
    big: BigModel | None = getattr(model, "big", None)
    if big is None or big.offload_blocks <= 0 or big.offload is not None:
        return None
    big.offload = BlockOffload(list(model.blocks())[: big.offload_blocks], big.device)
    return big.offload


def place(model: Any, log: logging.Logger | None = None) -> None:
    """The staged denoiser onto its device: every weight but the offloaded blocks' frozen ones (and
    every LoRA weight: the optimizer updates them there)."""
    big: BigModel | None = getattr(model, "big", None)
    if big is None or big.placed:
        return
    offload = big.offload or install_offload(model)
    denoiser = model.bare_denoiser
    if offload is None:
        Q.move(denoiser, big.device)
    else:
        kept = offload.frozen_ids()
        for module in denoiser.modules():
            for name, p in module.named_parameters(recurse=False):
                if id(p) not in kept:
                    _move_param(module, name, p, big.device)
            for name, b in module.named_buffers(recurse=False):
                if b is not None and not any(b is t for t in offload.frozen_buffers()):
                    module._buffers[name] = b.to(big.device)
        offload.pin()
    big.placed = True
    if log is not None:
        what = []
        if big.quantize != "none":
            what.append(f"{big.quantized_layers} block layers quantised to {big.quantize}")
            if big.quantized_text_layers:
                what.append(f"{big.quantized_text_layers} text-encoder layers too")
        if offload is not None:
            what.append(
                f"{len(offload.blocks)} blocks' frozen weights kept in CPU memory ({offload.nbytes / 2**30:.2f} GB)"
            )
        log.info("big model: %s", "; ".join(what))


def _move_param(module: torch.nn.Module, name: str, p: torch.nn.Parameter, device: torch.device) -> None:
    if p.device == device:
        return
    if type(p).__name__ in ("Int8Params", "Params4bit"):
        setattr(module, name, p.to(device))
    else:
        p.data = p.data.to(device)


class BlockOffload:
    """The frozen weights of ``blocks`` live in CPU memory; each block's forward brings them in."""

    def __init__(self, blocks: list[torch.nn.Module], device: torch.device) -> None:
        self.blocks = blocks
        self.device = device
        self._frozen: list[list[tuple[torch.nn.Parameter | None, torch.nn.Module, str, torch.Tensor]]] = []
        for block in blocks:
            if any(Q.is_quantized(m) and not isinstance(m, Q.Fp8Linear) for m in block.modules()):
                raise ConfigError(
                    "train.offload_blocks moves plain and fp8 weights; bitsandbytes' int8/nf4 layers stay on the GPU",
                    hint="use model.quantize = 'fp8' (or 'none') with train.offload_blocks",
                )
            entries = []
            for module in block.modules():
                for name, p in module.named_parameters(recurse=False):
                    if not p.requires_grad:
                        entries.append((p, module, name, p.data))
                for name, b in module.named_buffers(recurse=False):
                    if b is not None:
                        entries.append((None, module, name, b))
            self._frozen.append(entries)
            self._wrap(block, len(self._frozen) - 1)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for entries in self._frozen for *_, t in entries)

    def frozen_ids(self) -> set[int]:
        return {id(p) for entries in self._frozen for p, *_ in entries if p is not None}

    def frozen_buffers(self) -> list[torch.Tensor]:
        return [t for entries in self._frozen for p, _, _, t in entries if p is None]

    def pin(self) -> None:
        """The CPU copies in page-locked memory, so copies to the GPU run asynchronously."""
        if self.device.type != "cuda":
            return
        for i, entries in enumerate(self._frozen):
            pinned = []
            for p, module, name, t in entries:
                cpu = t.pin_memory()
                if p is not None:
                    p.data = cpu
                else:
                    module._buffers[name] = cpu
                pinned.append((p, module, name, cpu))
            self._frozen[i] = pinned

    def onload(self, i: int) -> None:
        for p, module, name, cpu in self._frozen[i]:
            on = cpu.to(self.device, non_blocking=True)
            if p is not None:
                p.data = on
            else:
                module._buffers[name] = on

    def offload(self, i: int) -> None:
        for p, module, name, cpu in self._frozen[i]:
            if p is not None:
                p.data = cpu
            else:
                module._buffers[name] = cpu

    def _wrap(self, block: torch.nn.Module, i: int) -> None:
        forward = block.forward

        @functools.wraps(forward)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.onload(i)
            try:
                return forward(*args, **kwargs)
            finally:
                self.offload(i)

        block.forward = wrapped


@dataclass
class OomReport:
    """What an out-of-memory error says: the step, the memory then, and the next lever."""

    step: int
    allocated_gb: float | None
    peak_gb: float | None
    total_gb: float | None
    lever: str | None = None  # e.g. "model.quantize=nf4"
    lever_plan_gb: float | None = None
    notes: list[str] = field(default_factory=list)

    def message(self) -> str:
        mem = ""
        if self.allocated_gb is not None:
            mem = f" ({self.allocated_gb:.1f} GB allocated, peak {self.peak_gb or 0:.1f} GB"
            mem += f" of {self.total_gb:.1f} GB)" if self.total_gb else ")"
        return f"out of GPU memory at step {self.step}{mem}"

    def hint(self, run_id: str) -> str:
        from lorawb.train.memplan import size

        if self.lever is None:
            return "lower train.batch_size or dataset.resolution; `lorawb plan` shows what fits"
        plan = f" (the plan: {size(self.lever_plan_gb * 2**30)})" if self.lever_plan_gb is not None else ""
        return f"next lever: {self.lever}{plan}; continue with `lorawb resume {run_id} --set {self.lever}`"


def memory_now(device: torch.device) -> tuple[float | None, float | None, float | None]:
    """(allocated, peak allocated, total) GB on ``device``; Nones off a GPU."""
    if device.type != "cuda":
        return None, None, None
    gb = 2**30
    total = torch.cuda.get_device_properties(device).total_memory / gb
    return torch.cuda.memory_allocated(device) / gb, torch.cuda.max_memory_allocated(device) / gb, total
