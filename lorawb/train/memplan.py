"""The memory plan: the peak GPU memory a run's settings will take, before it starts, and the
levers that bring it under a card's memory, cheapest first.

Nothing is loaded: the family's denoiser, text encoders and VAE are built on the meta device
from their configs (a diffusers folder's config.json files, or a single file's tensor shapes), the
LoRA is injected into them as the trainer injects it, and every parameter is counted. So these
parts are exact: the base weights by dtype and quantisation (lorawb.train.quantize.weight_bytes),
the encoders and VAE while they are on the GPU, the LoRA's fp32 weights, their gradients and the
optimizer's state. The activations are a per-family model (``Family.activation``: bytes per
element of batch x tokens x width, with and without gradient checkpointing), calibrated on a GPU
and stored with the date and card where it was measured; until then the plan says "estimate".

A run has three phases, and the plan's peak is the largest: **caching** (the text encoders and
VAE fill the caches; a big model's denoiser is not on the GPU yet: lorawb.train.bigmodel),
**training** (the step) and **samples** (the parked encoders back beside the denoiser). The
figure is torch's peak allocated memory (what the monitor's memory column shows); the CUDA
context (about 0.5 GB) comes on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from lorawb import families
from lorawb.errors import ConfigError, ModelError
from lorawb.train import quantize as Q
from lorawb.train.config import TrainConfig

GB = 2**30
VAE_ENCODE_PER_PIXEL = 128 * 6  # VAE encoder activations per input pixel (its 128-channel maps, ~6 alive); estimate
ADAM_8BIT_MIN = 4096  # bitsandbytes keeps smaller tensors' state in 32 bits (min_8bit_size)
ADAM_8BIT_BLOCK = 256  # bitsandbytes' blockwise 8-bit state: one float32 absmax per block


@dataclass(frozen=True)
class Part:
    name: str
    bytes: int
    detail: str = ""
    exact: bool = True


@dataclass
class Plan:
    """The predicted peak of each phase, and what makes up the training step's."""

    label: str  # the family, e.g. "Flux.1"
    phases: dict[str, list[Part]]  # "caching", "training", "samples" -> their parts
    activation_source: str  # "estimate", or "measured <date> on <card>"

    def total(self, phase: str) -> int:
        return sum(p.bytes for p in self.phases.get(phase, []))

    @property
    def peak(self) -> int:
        return max(self.total(ph) for ph in self.phases)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.total)

    @property
    def peak_gb(self) -> float:
        return self.peak / GB

    def part(self, name: str, phase: str = "training") -> Part | None:
        return next((p for p in self.phases.get(phase, []) if p.name == name), None)


@dataclass(frozen=True)
class Lever:
    """A setting that lowers the peak, and what it costs."""

    key: str
    value: Any
    cost: str

    @property
    def spec(self) -> str:
        """As ``--set`` takes it."""
        return f"{self.key}={self.value if not isinstance(self.value, bool) else str(self.value).lower()}"


@dataclass
class Advice:
    budget_gb: float
    plan: Plan
    steps: list[tuple[Lever, Plan]] = field(default_factory=list)  # cumulative, cheapest first

    @property
    def fits(self) -> bool:
        return self.plan.peak_gb <= self.budget_gb

    @property
    def fitting(self) -> Plan | None:
        return self.steps[-1][1] if self.steps and self.steps[-1][1].peak_gb <= self.budget_gb else None


# --- the model on the meta device ---------------------------------------------------------------------


def meta_model(cfg: TrainConfig) -> families.Model:
    """The family's Model with its networks built on the meta device from their configs (no weights)."""
    from lorawb.train.modelpath import check_model_path, read_json

    path = check_model_path(cfg.model)
    family = families.detect(path, cfg.model.family)
    folder = path if path.is_dir() else (Path(cfg.model.config).expanduser() if cfg.model.config else None)
    if folder is None or not (folder / "model_index.json").is_file():
        raise ModelError(
            f"the memory plan of a single {family.label} file needs its configs",
            path=path,
            hint="set model.config to a diffusers folder of the same model (its config.json files are read)",
        )
    index = read_json(folder / "model_index.json")
    sub = "transformer" if "transformer" in index else "unet"
    with torch.device("meta"):
        denoiser = _meta_component(folder, sub, index[sub])
        if not path.is_dir():
            denoiser = family.meta_denoiser_from_file(path, folder) or denoiser
        vae = _meta_component(folder, "vae", index["vae"])
        encoders = [
            _meta_component(folder, name, index[name])
            for name in sorted(k for k in index if k.startswith("text_encoder") and index[k][0])
        ]
    scheduler = read_json(folder / "scheduler" / "scheduler_config.json")
    return family.model_class(
        spec=family,
        source=path,
        denoiser=denoiser,
        vae=vae,
        text_encoders=encoders,
        tokenizers=[],
        scheduler_config=scheduler,
        settings=family.section(cfg),
        dtype=torch.float32,
    )


def _meta_component(folder: Path, name: str, entry: list[Any]) -> Any:
    import importlib

    library, cls_name = entry[0], entry[1]
    cls = getattr(importlib.import_module(library), cls_name)
    if library == "transformers":
        from transformers import AutoConfig

        return cls._from_config(AutoConfig.from_pretrained(folder / name, local_files_only=True))
    return cls.from_config(cls.load_config(folder / name, local_files_only=True))


# --- the plan -----------------------------------------------------------------------------------------


def plan(cfg: TrainConfig, model: families.Model | None = None) -> Plan:
    """The memory plan of ``cfg`` on a GPU (``model``: its meta-device model, built once for many plans)."""
    from lorawb.train.lora import add_lora

    model = model if model is not None else meta_model(cfg)
    family = model.spec
    t, ds, net = cfg.train, cfg.dataset, cfg.network
    wbytes = {"fp16": 2, "bf16": 2}.get(t.mixed_precision, 4)
    quant = cfg.model.quantize
    big = quant != "none" or t.offload_blocks > 0
    blocks = model.blocks()
    if big and not blocks:
        raise ConfigError(
            f"model.quantize / train.offload_blocks: {family.label} names no blocks for them",
            hint="set model.quantize = 'none' and train.offload_blocks = 0",
        )
    if t.offload_blocks > len(blocks):
        raise ConfigError(
            f"train.offload_blocks: {family.label} has {len(blocks)} blocks",
            hint=f"set it to at most {len(blocks)}",
        )
    quantized = {id(m) for b in blocks for m in b.modules() if type(m) is torch.nn.Linear} if quant != "none" else set()
    block_of = {id(p): i for i, b in enumerate(blocks) for p in b.parameters()}
    from lorawb.train.data import text_is_cached

    text_cached = text_is_cached(cfg)
    quantize_text = quant != "none" and not net.train_text_encoder  # as lorawb.families.load_base_model does

    # Weights, counted before the LoRA goes in (the trainer quantises before it too).
    base, per_block, by_kind = _weights(model.bare_denoiser, quantized, quant, wbytes, block_of, len(blocks))
    largest_layer = max(
        (m.in_features * m.out_features for b in blocks for m in b.modules() if isinstance(m, torch.nn.Linear)),
        default=0,
    )
    te_quant = {id(m) for te in model.text_encoders for m in te.modules() if type(m) is torch.nn.Linear}
    te_bytes = sum(
        _weights(te, te_quant if quantize_text else set(), quant, wbytes, {}, 0)[0] for te in model.text_encoders
    )
    vae_bytes = _weights(model.vae, set(), "none", 4 if wbytes == 2 and t.mixed_precision == "fp16" else wbytes, {}, 0)[
        0
    ]
    # The LoRA, injected on the meta device exactly as the trainer injects it.
    lora = add_lora(
        model.denoiser,
        model.text_encoders,
        net,
        model.unused_text_layers(),
        family=family,
        trainable=family.trainable_text_encoders,
        targets=model.lora_targets(net),
    )
    params = lora.unet_params + lora.te_params
    n_lora = sum(p.numel() for p in params)
    offloaded = sum(per_block[: t.offload_blocks])
    resident = max(per_block[: t.offload_blocks], default=0)

    weights = [
        Part(
            "base weights",
            base - offloaded + resident,
            _kinds(by_kind)
            + (
                f"; {t.offload_blocks} blocks ({offloaded / GB:.1f} GB) in CPU memory, one at a time here"
                if t.offload_blocks
                else ""
            ),
        )
    ]
    lora_parts = [Part("LoRA", 4 * n_lora, f"{n_lora / 1e6:.1f}M parameters, fp32")]
    train_parts = [
        Part("gradients", 4 * n_lora, "fp32"),
        Part("optimizer state", optimizer_bytes(t.optimizer, [p.numel() for p in params]), t.optimizer),
    ]
    encoders = Part(
        "text encoders", te_bytes, f"{len(model.text_encoders)}, " + (f"{quant}" if quantize_text else _dtype(wbytes))
    )
    vae = Part("VAE", vae_bytes, _dtype(wbytes))
    act_elems = t.batch_size * (model.image_tokens(ds.resolution) + model.text_tokens()) * model.width()
    abytes = 2 if t.mixed_precision in ("fp16", "bf16") else 4
    am = family.activation
    if t.gradient_checkpointing:
        factor, how = am.kept * len(blocks) + am.live, "gradient checkpointing"
    else:
        factor, how = am.full * len(blocks), "no checkpointing"
    estimate = not am.measured
    activations = Part(
        "activations",
        int(act_elems * abytes * factor),
        f"batch {t.batch_size}, {ds.resolution} px, {how}" + (" (estimate)" if estimate else ""),
        exact=False,
    )
    transient = (
        [Part("one dequantised layer", 2 * largest_layer * abytes, "in the forward and backward")]
        if quant != "none"
        else []
    )
    on_gpu_text = not (text_cached and t.offload_frozen)
    on_gpu_vae = not (ds.cache_latents and ds.crop == "center" and t.offload_frozen)
    vae_encode = Part(
        "VAE encoding", t.batch_size * ds.resolution**2 * VAE_ENCODE_PER_PIXEL * abytes, "estimate", exact=False
    )
    phases: dict[str, list[Part]] = {}
    phases["caching"] = [encoders, vae, vae_encode] + ([] if big else weights + lora_parts)
    phases["training"] = (
        weights
        + lora_parts
        + train_parts
        + [activations]
        + transient
        + ([encoders] if on_gpu_text else [])
        + ([vae, vae_encode] if on_gpu_vae and not ds.cache_latents else [vae] if on_gpu_vae else [])
    )
    if cfg.sample.every_n_steps and cfg.sample.prompts:
        inference = replace(
            activations, bytes=int(act_elems / t.batch_size * abytes * am.live), detail="one image, no grad"
        )
        phases["samples"] = weights + lora_parts + train_parts[1:] + [encoders, vae, inference] + transient
    source = f"measured {am.measured}" if am.measured else "estimate"
    return Plan(family.label, phases, source)


def _weights(
    module: torch.nn.Module, quantized: set[int], kind: str, wbytes: int, block_of: dict[int, int], n_blocks: int
) -> tuple[int, list[int], dict[str, int]]:
    """(bytes, bytes per block, bytes by storage kind) of a module's frozen weights as loaded."""
    total, per_block, by_kind = 0, [0] * n_blocks, {}
    done: set[int] = set()
    for m in module.modules():
        if id(m) in quantized:
            b = Q.weight_bytes(m.in_features, m.out_features, kind, wbytes)
            by_kind[kind] = by_kind.get(kind, 0) + b
            extra = m.bias.numel() * wbytes if m.bias is not None else 0
            by_kind[_dtype(wbytes)] = by_kind.get(_dtype(wbytes), 0) + extra
            total += b + extra
            if id(m.weight) in block_of:
                per_block[block_of[id(m.weight)]] += b + extra
            done.update(id(p) for p in m.parameters())
    for p in module.parameters():
        if id(p) in done or "lora_" in str(getattr(p, "_lorawb_name", "")):
            continue
        b = p.numel() * (wbytes if p.is_floating_point() else p.element_size())
        total += b
        by_kind[_dtype(wbytes)] = by_kind.get(_dtype(wbytes), 0) + b
        if id(p) in block_of:
            per_block[block_of[id(p)]] += b
    for buf in module.buffers():
        total += buf.numel() * (wbytes if buf.is_floating_point() else buf.element_size())
    return total, per_block, by_kind


def optimizer_bytes(optimizer: str, sizes: list[int]) -> int:
    """AdamW's two moments per parameter: fp32, or bitsandbytes' blockwise 8 bits (with a float32
    absmax per block of 256, and its two 256-entry maps) for tensors of 4096 elements or more."""
    if optimizer != "adamw8bit":
        return sum(8 * n for n in sizes)
    total = 0
    for n in sizes:
        if n >= ADAM_8BIT_MIN:
            total += 2 * n + 2 * 4 * math.ceil(n / ADAM_8BIT_BLOCK)
        else:
            total += 8 * n
    return total + (2 * 256 * 4 if any(n >= ADAM_8BIT_MIN for n in sizes) else 0)


def size(n: float) -> str:
    """Bytes as people read them: '21.3 GB', '840 MB' (tiny models: '1.2 MB')."""
    if n >= GB:
        return f"{n / GB:.1f} GB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MB"
    return f"{n / 2**20:.2f} MB"


def _dtype(wbytes: int) -> str:
    return {2: "bf16/fp16", 4: "fp32"}[wbytes]


def _kinds(by_kind: dict[str, int]) -> str:
    return ", ".join(f"{k} {size(v)}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v)


# --- levers -------------------------------------------------------------------------------------------

# Cheapest first: what each costs in speed (or in what the run learns).
LEVERS: tuple[Lever, ...] = (
    Lever("train.gradient_checkpointing", True, "about 20-30% slower steps"),
    Lever("train.offload_frozen", True, "none (the encoders come back for samples)"),
    Lever("train.optimizer", "adamw8bit", "none measurable (8-bit optimizer state)"),
    Lever("model.quantize", "fp8", "slightly slower steps; base weights rounded to fp8"),
    Lever("model.quantize", "nf4", "slower steps; base weights rounded to 4 bits"),
    Lever("train.offload_blocks", "half", "much slower steps (weights cross PCIe each step)"),
    Lever("train.batch_size", 1, "changes training: fewer images per step"),
)


def _applies(lever: Lever, cfg: TrainConfig, n_blocks: int) -> Any:
    """The value this lever would set for ``cfg``, or None when it is already set or cannot apply."""
    t = cfg.train
    if lever.key == "train.offload_blocks":
        if t.offload_blocks or not n_blocks or cfg.model.quantize in ("int8", "nf4"):
            return None
        return max(1, n_blocks // 2)
    if lever.key == "model.quantize":
        order = ["none", "fp8", "int8", "nf4"]
        if order.index(cfg.model.quantize) >= order.index(lever.value) or (t.offload_blocks and lever.value == "nf4"):
            return None
        return lever.value
    if lever.key == "train.batch_size" and t.batch_size <= 1:
        return None
    section, key = lever.key.split(".")
    return None if getattr(getattr(cfg, section), key) == lever.value else lever.value


def with_setting(cfg: TrainConfig, key: str, value: Any) -> TrainConfig:
    section, name = key.split(".")
    out = cfg.model_copy(deep=True)
    setattr(getattr(out, section), name, value)
    return out


def advise(cfg: TrainConfig, budget_gb: float, model: families.Model | None = None) -> Advice:
    """The plan of ``cfg`` and, if it does not fit ``budget_gb``, the levers that bring it under,
    cheapest first, each on top of the ones before (a lever that does not lower the peak is left out)."""
    model = model if model is not None else meta_model(cfg)
    base = plan(cfg, _fresh(model, cfg))
    advice = Advice(budget_gb, base)
    current, last = cfg, base
    n_blocks = len(model.blocks())
    while last.peak_gb > budget_gb:
        found = _cheapest(current, last, model, n_blocks)
        if found is None:
            break
        lever, current, last = found
        advice.steps.append((lever, last))
    return advice


def _cheapest(
    cfg: TrainConfig, base: Plan, model: families.Model, n_blocks: int
) -> tuple[Lever, TrainConfig, Plan] | None:
    """The cheapest lever not yet set on ``cfg`` that lowers ``base``'s peak: (lever, config, plan)."""
    for lever in LEVERS:
        value = _applies(lever, cfg, n_blocks)
        if value is None:
            continue
        candidate = with_setting(cfg, lever.key, value)
        if lever.key == "train.offload_blocks" and not candidate.train.gradient_checkpointing:
            continue
        p = plan(candidate, _fresh(model, candidate))
        if p.peak < base.peak:
            return replace(lever, value=value), candidate, p
    return None


def _fresh(model: families.Model, cfg: TrainConfig) -> families.Model:
    """A new meta model for each plan (the LoRA is injected into it)."""
    return meta_model(cfg) if _has_lora(model) else model


def _has_lora(model: families.Model) -> bool:
    return any("lora_" in n for n, _ in model.denoiser.named_parameters())


def next_lever(cfg: TrainConfig) -> tuple[Lever, Plan] | None:
    """The cheapest lever not yet set that lowers the plan's peak (for the out-of-memory message)."""
    try:
        model = meta_model(cfg)
        n_blocks = len(model.blocks())
        found = _cheapest(cfg, plan(cfg, model), model, n_blocks)
    except Exception:  # the advice is a courtesy: never hide the error it explains
        return None
    return None if found is None else (found[0], found[2])


# --- text ---------------------------------------------------------------------------------------------


def parse_gb(text: str) -> float:
    """'24GB', '24 GB', '24', '80G' -> 24.0 ..."""
    t = text.strip().upper().replace(" ", "").removesuffix("B").removesuffix("G").removesuffix("I")
    try:
        value = float(t)
    except ValueError:
        raise ConfigError(f"--gpu {text!r}: give the card's memory, e.g. 24GB") from None
    if value <= 0:
        raise ConfigError(f"--gpu {text!r}: must be above 0")
    return value


def headline(advice: Advice) -> str:
    """'fits 24 GB: 21.3 GB' / 'needs 31.2 GB, over 24 GB; model.quantize=nf4 → 14.1 GB'."""
    p = advice.plan
    if advice.fits:
        return f"fits {advice.budget_gb:g} GB: {size(p.peak)}"
    levers = " + ".join(lever.spec for lever, _ in advice.steps)
    after = size(advice.steps[-1][1].peak) if advice.steps else ""
    if advice.fitting is not None:
        return f"needs {size(p.peak)}, over {advice.budget_gb:g} GB; {levers} → {after}"
    tail = f"; even {levers} → {after}" if advice.steps else ""
    return f"needs {size(p.peak)}, over {advice.budget_gb:g} GB{tail}: lower dataset.resolution"


def card_gb() -> float | None:
    """The memory of this machine's first GPU in GB, or None without one."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / GB


def one_line(cfg: TrainConfig, budget_gb: float | None = None) -> str:
    """The plan in one line for the Train form: the peak, and what makes it fit the card (``budget_gb``,
    else this machine's GPU, else 24 GB), saying where the activation figure is an estimate."""
    budget = budget_gb or card_gb() or 24.0
    try:
        advice = advise(cfg, budget)
    except (ConfigError, ModelError) as exc:
        return f"memory plan: {exc.message}"
    p = advice.plan
    source = "activations estimated" if p.activation_source == "estimate" else f"activations {p.activation_source}"
    return f"memory plan ({p.label}, {p.peak_phase} peak, {source}): {headline(advice)}"


def as_dict(advice: Advice) -> dict[str, Any]:
    """The advice as plain data (``lorawb plan --json``): bytes throughout."""
    p = advice.plan
    return {
        "family": p.label,
        "gpu_gb": advice.budget_gb,
        "fits": advice.fits,
        "peak_bytes": p.peak,
        "peak_phase": p.peak_phase,
        "activations": p.activation_source,
        "phases": {
            name: {"bytes": p.total(name), "parts": [vars(part) for part in parts]} for name, parts in p.phases.items()
        },
        "levers": [{"set": lever.spec, "cost": lever.cost, "peak_bytes": after.peak} for lever, after in advice.steps],
        "headline": headline(advice),
    }


def render(advice: Advice) -> list[str]:
    """The plan as text lines: the headline, each phase's peak, the training step's parts, the levers."""
    p = advice.plan
    lines = [headline(advice), f"{p.label}; activations: {p.activation_source}"]
    for phase in p.phases:
        mark = "  ← peak" if phase == p.peak_phase else ""
        lines.append(f"  {phase:<9} {size(p.total(phase)):>9}{mark}")
    lines.append("training step:")
    for part in p.phases["training"]:
        approx = "~" if not part.exact else " "
        lines.append(f"  {part.name:<22}{approx}{size(part.bytes):>9}  {part.detail}")
    for lever, after in advice.steps:
        lines.append(f"  then {lever.spec:<34} → {size(after.peak):>9}  ({lever.cost})")
    return lines
