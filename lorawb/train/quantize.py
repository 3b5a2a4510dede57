"""A quantised frozen base: ``model.quantize = "nf4" | "int8" | "fp8"`` (``"none"``: as loaded).

The Linear layers inside the denoiser's blocks (``Model.blocks()``: the repeated transformer or
UNet blocks, where nearly every weight is) are replaced by quantised ones, on the CPU, block by
block, before the model goes to the GPU; the embedders, norms and output layers stay in the
weight dtype. The LoRA trains in fp32 on top (peft wraps the quantised layers as it wraps
nn.Linear), so the LoRA file is the same as with a bf16 base and loads unquantised elsewhere.

- **int8**: bitsandbytes' LLM.int8 (``Linear8bitLt``, a row-wise absmax scale per output, outlier
  threshold 6 as diffusers' ``BitsAndBytesConfig`` sets it); runs on CPU too (bitsandbytes >= 0.49).
- **nf4**: bitsandbytes' 4-bit NormalFloat (``Linear4bit``, blocks of 64 with double-quantised
  absmax, as QLoRA and diffusers' ``BitsAndBytesConfig(load_in_4bit=True)`` do).
- **fp8**: weight-only float8 (e4m3) with a scale per output row, upcast per layer in the forward
  (what kohya's ``--fp8_base`` does, with a scale). Stored as uint8 bits so that peft, which casts a
  LoRA to its base layer's floating dtype, leaves the LoRA in fp32.

Why not diffusers' own quantisation configs: its bitsandbytes quantiser refuses a machine without
a GPU, and single-file models are built on the meta device and filled with ``load_state_dict``,
with no ``from_pretrained`` to pass a config to; one step after loading quantises every family
the same way, for training, samples, validation and the matrix. torchao's float8 weight-only
tensors have no training path through peft (its torchao LoRA takes int8 only).

``weight_bytes`` is the exact size of a quantised Linear (the memory plan uses it; a test counts
the real tensors against it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from lorawb.errors import ModelError

KINDS = ("none", "nf4", "int8", "fp8")
NF4_BLOCK = 64  # bitsandbytes' default 4-bit block size
NESTED_BLOCK = 256  # double quantisation: absmax quantised to 8 bits in blocks of this many
INT8_THRESHOLD = 6.0  # LLM.int8's outlier threshold (bitsandbytes' and diffusers' default)
FP8_MAX = 448.0  # the largest float8_e4m3fn value


class Fp8Linear(torch.nn.Linear):
    """A frozen Linear whose weight is float8 (e4m3) bits with a float32 scale per output row."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / FP8_MAX
        bits = (w / scale[:, None]).to(torch.float8_e4m3fn).view(torch.uint8)
        self.weight = torch.nn.Parameter(bits, requires_grad=False)
        self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Fp8Linear.apply(x, self.weight, self.scale, self.bias)


def _dequantized(bits: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return bits.view(torch.float8_e4m3fn).to(dtype) * scale[:, None].to(dtype)


class _Fp8Linear(torch.autograd.Function):
    """y = x W^T + b with W upcast from fp8 for the product and again in the backward pass: only the
    fp8 bits are kept for the backward (a plain F.linear would keep the upcast weight)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bits: torch.Tensor, scale: torch.Tensor, bias: Any) -> torch.Tensor:
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        ctx.save_for_backward(bits, scale)
        ctx.dtype = dtype
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.to(dtype), _dequantized(bits, scale, dtype), None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        bits, scale = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad.to(ctx.dtype) @ _dequantized(bits, scale, ctx.dtype)
        return grad_x, None, None, None


def quantized_linear(linear: torch.nn.Linear, kind: str, device: torch.device | None = None) -> torch.nn.Module:
    """``linear`` as a frozen quantised layer of ``kind``, quantised on ``device`` (default: the CPU)."""
    device = device or torch.device("cpu")
    if kind == "fp8":
        return Fp8Linear(linear).to(device)
    import bitsandbytes as bnb

    w = linear.weight.detach()
    bias = linear.bias is not None
    if kind == "int8":
        q = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, bias=bias, has_fp16_weights=False, threshold=INT8_THRESHOLD
        )
        q.weight = bnb.nn.Int8Params(w.cpu().clone(), requires_grad=False, has_fp16_weights=False)
    elif kind == "nf4":
        q = bnb.nn.Linear4bit(
            linear.in_features, linear.out_features, bias=bias, compute_dtype=w.dtype, quant_type="nf4"
        )
        q.weight = bnb.nn.Params4bit(w.cpu().clone(), requires_grad=False, quant_type="nf4", compress_statistics=True)
    else:
        raise ValueError(f"unknown quantisation {kind!r}")
    if bias:
        q.bias = torch.nn.Parameter(linear.bias.detach().cpu().clone(), requires_grad=False)
    q.weight = q.weight.to(device)  # bitsandbytes quantises as the weight first goes to a device
    if bias:
        q.bias.data = q.bias.data.to(device)
    q.requires_grad_(False)
    return q


def quantize_blocks(blocks: Iterable[torch.nn.Module], kind: str, work: torch.device | None = None) -> int:
    """Replace every nn.Linear inside ``blocks`` by a quantised one, kept on the CPU; returns how many.
    ``work``: where to quantise (a GPU quantises a 12B model in seconds; the result comes back)."""
    cpu = torch.device("cpu")
    work = work or cpu
    n = 0
    for block in blocks:
        for name, child in list(block.named_modules()):
            if type(child) is not torch.nn.Linear:  # plain Linear only: not already quantised, not a LoRA
                continue
            parent_name, _, leaf = name.rpartition(".")
            parent = block.get_submodule(parent_name) if parent_name else block
            q = quantized_linear(child.to(work) if work != cpu else child, kind, work)
            if work != cpu:
                move(q, cpu)
            setattr(parent, leaf, q)
            n += 1
    return n


def is_quantized(module: torch.nn.Module) -> bool:
    return isinstance(module, Fp8Linear) or type(module).__name__ in ("Linear8bitLt", "Linear4bit")


def move(module: torch.nn.Module, device: torch.device) -> None:
    """``module.to(device)``, with bitsandbytes' quantised weights moved by their own ``to`` (which keeps
    their scales with them; ``Module.to`` would move the bits and leave the scales behind)."""
    for child in module.modules():
        if type(child).__name__ in ("Linear8bitLt", "Linear4bit") and child.weight.device != device:
            child.weight = child.weight.to(device)
    module.to(device)


def weight_bytes(in_features: int, out_features: int, kind: str, dtype_bytes: int) -> int:
    """Bytes of a quantised Linear's weight and its scales (the bias, if any, is counted apart at
    the weight dtype). ``dtype_bytes``: the unquantised weight's element size ("none")."""
    n = in_features * out_features
    if kind == "none":
        return n * dtype_bytes
    if kind == "int8":
        return n + 4 * out_features  # int8 weight, float32 row scale (SCB)
    if kind == "fp8":
        return n + 4 * out_features  # float8 bits, float32 row scale
    if kind == "nf4":
        blocks = math.ceil(n / NF4_BLOCK)
        nested = math.ceil(blocks / NESTED_BLOCK)
        # packed 4-bit weight; absmax per block as uint8; per nested block a float32 absmax; the
        # nested code (256 float32), the absmax mean (one float32) and the NF4 code (16 float32)
        return (n + 1) // 2 + blocks + 4 * nested + 4 * 256 + 4 + 4 * 16
    raise ValueError(f"unknown quantisation {kind!r}")


def check_device(kind: str, device: torch.device) -> None:
    """A ModelError naming ``model.quantize`` when this machine cannot run ``kind`` on ``device``:
    one small layer is quantised and run forward and backward there, as training will."""
    if kind == "none":
        return
    if kind in ("int8", "nf4"):
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ModelError(
                f"model.quantize = {kind!r} needs bitsandbytes",
                hint="pip install 'lorawb[gpu]' (or bitsandbytes), or set model.quantize = 'fp8' or 'none'",
            ) from exc
    try:
        torch.manual_seed(0)
        layer = quantized_linear(torch.nn.Linear(64, 64), kind, device)
        x = torch.randn(2, 64, device=device, requires_grad=True)
        layer(x).sum().backward()
    except Exception as exc:  # whatever the backend raises, the fix is another setting
        raise ModelError(
            f"model.quantize = {kind!r} cannot run on {device.type} here ({type(exc).__name__}: {exc})",
            hint="set model.quantize to another kind ('fp8' runs wherever torch has float8; 'int8' and 'nf4' "
            "need a bitsandbytes backend for this device), or 'none'",
        ) from exc


def tensors_of(module: torch.nn.Module) -> list[torch.Tensor]:
    """Every tensor a (possibly quantised) module holds: parameters, buffers and bitsandbytes' scales
    and quantisation states, each storage once (for counting the memory it takes)."""
    out: list[torch.Tensor] = []
    seen: set[Any] = set()

    def add(t: Any) -> None:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            key = (t.untyped_storage().data_ptr(), t.device)
            if key not in seen:
                seen.add(key)
                out.append(t)
        elif isinstance(t, torch.Tensor):
            out.append(t)

    for t in [*module.parameters(), *module.buffers()]:
        add(t)
        add(getattr(t, "SCB", None))
    for child in module.modules():  # LLM.int8 moves the weight's scales into the layer's state at its first forward
        add(getattr(getattr(child, "state", None), "SCB", None))
    for t in module.parameters():
        state = getattr(t, "quant_state", None)
        if state is not None:
            add(state.absmax)
            add(state.code)
            nested = getattr(state, "state2", None)
            if nested is not None:
                add(nested.absmax)
                add(nested.code)
            add(getattr(state, "offset", None))
    return out
