"""LoRA adapters injected with peft into the UNet (and optionally the text encoders).

Targets are resolved to full module names first, so a typo in
``network.target_modules`` is an error naming it rather than a LoRA that
silently trains nothing, and so the saved names map one-to-one onto kohya's.
Adapters are injected with ``peft.inject_adapter_in_model`` directly (not the
transformers adapter API, which needs a newer peft than exists; docs/training.md,
"Pitfalls"). ``init_from_file`` starts them from an existing LoRA file instead of zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from lorawb.errors import ConfigError
from lorawb.families import Family
from lorawb.train.config import NetworkSection

CONV_PARENTS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
# One peft rank/alpha pattern matching the conv layers of ResNet blocks and samplers.
CONV_PATTERN = r"(conv1|conv2|conv_shortcut|downsamplers\.0\.conv|upsamplers\.0\.conv)"


@dataclass
class LoraSetup:
    unet_modules: list[str]
    te_modules: list[list[str]] = field(default_factory=list)
    unet_params: list[torch.nn.Parameter] = field(default_factory=list)
    te_params: list[torch.nn.Parameter] = field(default_factory=list)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.unet_params + self.te_params)


def denoiser_targets(denoiser: torch.nn.Module, family: Family, cfg: NetworkSection) -> tuple[list[str], list[str]]:
    """(linear/attention module names, conv module names) of the denoiser that get a LoRA.

    ``network.target_modules`` (empty: the family's default targets) name layers by the end of
    their module path; ``network.ff`` adds the family's feed-forward layers, ``network.conv``
    the ResNet/sampler convolutions of a UNet (LoCon).
    """
    suffixes = list(cfg.target_modules or family.default_targets) + (
        list(family.feed_forward_targets) if cfg.ff else []
    )
    linear: list[str] = []
    for name, module in denoiser.named_modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        if any(name == s or name.endswith("." + s) for s in suffixes):
            linear.append(name)
    for s in cfg.target_modules:
        if not any(n == s or n.endswith("." + s) for n in linear):
            raise ConfigError(
                f"network.target_modules: {s!r} matches no layer of this {family.label} model",
                hint=f"{family.label}'s default targets are "
                + ", ".join(family.default_targets)
                + (("; feed-forward " + ", ".join(family.feed_forward_targets)) if family.feed_forward_targets else ""),
            )
    conv: list[str] = []
    if cfg.conv and family.has_conv:
        for name, module in denoiser.named_modules():
            if type(module).__name__ in CONV_PARENTS:
                for child, sub in module.named_modules():
                    if isinstance(sub, torch.nn.Conv2d) and child:
                        conv.append(f"{name}.{child}")
    return linear, [c for c in conv if c not in linear]


def text_encoder_targets(
    te: torch.nn.Module, suffixes: list[str], skip_layers: set[int] | frozenset = frozenset()
) -> list[str]:
    """Linear layers of the encoder's transformer layers that get a LoRA (``skip_layers``: layer indices left out)."""
    names = [
        n
        for n, m in te.named_modules()
        if isinstance(m, torch.nn.Linear)
        and any(n.endswith("." + s) for s in suffixes)
        and ".layers." in n
        and _layer_index(n) not in skip_layers
    ]
    if not names:
        raise ConfigError(
            f"network.text_encoder_targets {suffixes} match no layer of the text encoder",
            hint="CLIP layers are named q_proj, k_proj, v_proj, out_proj, fc1, fc2",
        )
    return names


def _layer_index(name: str) -> int:
    parts = name.split(".")
    return int(parts[parts.index("layers") + 1])


def add_lora(
    unet: torch.nn.Module,
    text_encoders: list[torch.nn.Module],
    cfg: NetworkSection,
    unused_te_layers: list[set[int]] | None = None,
    family: Family | None = None,
    trainable: tuple[bool, ...] | None = None,
    targets: tuple[list[str], list[str]] | None = None,
) -> LoraSetup:
    """Inject LoRA layers into the denoiser (``unet``) and, when the network trains them, the text
    encoders the family lets a LoRA train (``trainable``, per encoder); only they require grad afterwards.

    ``unused_te_layers``: per text encoder, the layers whose output the model never uses (SDXL's
    first encoder conditions on its penultimate layer): a LoRA there would never train.
    ``family``: whose default targets apply (lorawb.families; an SD1 UNet when None); ``targets``:
    the (linear, conv) module names already chosen (``Model.lora_targets``), else found here.
    """
    from peft import LoraConfig, inject_adapter_in_model

    from lorawb import families

    family = family or families.get("sd1")
    linear, conv = targets or denoiser_targets(unet, family, cfg)
    lora_kw: dict[str, Any] = {
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "use_dora": cfg.dora,
        "init_lora_weights": True,  # kaiming A, zero B: training starts from the base model
    }
    unet_cfg = LoraConfig(
        target_modules=linear + conv,
        rank_pattern={CONV_PATTERN: cfg.conv_rank} if conv else {},
        alpha_pattern={CONV_PATTERN: cfg.conv_alpha} if conv else {},
        **lora_kw,
    )
    inject_adapter_in_model(unet_cfg, unet)
    setup = LoraSetup(unet_modules=linear + conv)
    setup.unet_params = [p for n, p in unet.named_parameters() if "lora_" in n]
    if cfg.train_text_encoder:
        for i, te in enumerate(text_encoders):
            if trainable is not None and not trainable[i]:
                setup.te_modules.append([])
                continue
            skip = unused_te_layers[i] if unused_te_layers else set()
            names = text_encoder_targets(te, cfg.text_encoder_targets, skip)
            inject_adapter_in_model(LoraConfig(target_modules=names, **lora_kw), te)
            setup.te_modules.append(names)
            setup.te_params += [p for n, p in te.named_parameters() if "lora_" in n]
    for p in setup.unet_params + setup.te_params:
        p.requires_grad_(True)
        p.data = p.data.float()  # trainable weights stay fp32 under mixed precision
    return setup


def adapter_layers(module: torch.nn.Module) -> list[Any]:
    """The peft LoRA layers in ``module`` (found once: walking the module tree costs milliseconds)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


@contextlib.contextmanager
def adapters_off(layers: list[Any]) -> Iterator[None]:
    """The base model's forward: these LoRA layers bypassed (DoRA's magnitude too), then back on.

    peft's own switch; the weights are untouched (only whether the layer adds its delta), and
    the layers are switched back on even when the forward fails.
    """
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def trainable_state(unet: torch.nn.Module, text_encoders: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """All LoRA weights by a stable name (for resume), detached on CPU."""
    out = {f"unet.{n}": p.detach().cpu().clone() for n, p in unet.named_parameters() if "lora_" in n}
    for i, te in enumerate(text_encoders):
        out.update({f"te{i}.{n}": p.detach().cpu().clone() for n, p in te.named_parameters() if "lora_" in n})
    return out


def load_trainable_state(
    unet: torch.nn.Module, text_encoders: list[torch.nn.Module], state: dict[str, torch.Tensor]
) -> None:
    named = {f"unet.{n}": p for n, p in unet.named_parameters() if "lora_" in n}
    for i, te in enumerate(text_encoders):
        named.update({f"te{i}.{n}": p for n, p in te.named_parameters() if "lora_" in n})
    missing = set(named) - set(state)
    if missing:
        raise ConfigError(
            f"the resume state does not match this network ({len(missing)} LoRA weights missing, "
            f"e.g. {sorted(missing)[0]})",
            hint="the run's config.toml was changed after it started; restore it or start a new run",
        )
    with torch.no_grad():
        for name, p in named.items():
            p.copy_(state[name].to(p.device, p.dtype))


@dataclass
class InitReport:
    """What ``init_from_file`` did: layers loaded, this network's layers the file lacks, the file's layers left out."""

    loaded: int
    missing: list[str]
    ignored: list[str]


def init_from_file(model: Any, path: Any, cfg: NetworkSection) -> InitReport:
    """Start the injected LoRA layers of ``model`` (a lorawb.families Model) from an existing LoRA
    file (kohya's ``--network_weights``).

    The file may be in any naming the family reads (``Model.read_lora``: lorawb's, kohya's, the
    family's other trainers', diffusers/peft's). Each layer's effect is kept exactly: when the
    file's alpha differs from ``network.alpha`` the up weight is rescaled. A rank that differs from
    the network's is an error naming both.
    """
    from peft.tuners.lora import LoraLayer

    unet, text_encoders = model.denoiser, model.text_encoders
    trained_tes = text_encoders if cfg.train_text_encoder else []
    lora_file = model.read_lora(path, trained_tes)
    ignored = list(lora_file.unmatched)
    missing: list[str] = []
    loaded = 0
    modules = [(unet, lora_file.denoiser, "denoiser")]
    for i, (te, layers) in enumerate(zip(trained_tes, lora_file.text_encoders, strict=True)):
        modules.append((te, layers, f"text encoder {i + 1}"))
    with torch.no_grad():
        for root, layers, what in modules:
            targets = {n: m for n, m in root.named_modules() if isinstance(m, LoraLayer) and "default" in m.lora_A}
            for name in sorted(set(layers) - set(targets)):
                ignored.append(f"{what}: {name}")
            for name, module in targets.items():
                w = layers.get(name)
                if w is None:
                    missing.append(f"{what}: {name}")
                    continue
                a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
                if tuple(w.down.shape) != tuple(a.shape) or tuple(w.up.shape) != tuple(b.shape):
                    raise ConfigError(
                        f"network.init_from: layer {name} has rank {w.down.shape[0]} in the file, "
                        f"{a.shape[0]} in this network",
                        path=lora_file.path,
                        hint="set network.rank (and network.conv_rank for conv layers) to the file's ranks",
                    )
                scale = w.alpha / (float(module.scaling["default"]) * a.shape[0])
                a.copy_(w.down.to(a.device, a.dtype))
                b.copy_((w.up * scale).to(b.device, b.dtype))
                mag = getattr(module, "lora_magnitude_vector", None)
                has_mag = mag is not None and "default" in mag
                if w.dora_scale is not None and not has_mag:
                    raise ConfigError(
                        "network.init_from: the file is a DoRA (it has dora_scale weights)",
                        path=lora_file.path,
                        hint="set network.dora = true to start from it",
                    )
                if has_mag:
                    if w.dora_scale is None:
                        raise ConfigError(
                            "network.init_from: the file is a plain LoRA but network.dora is on",
                            path=lora_file.path,
                            hint="set network.dora = false, or start from a DoRA file",
                        )
                    m = mag["default"].weight
                    m.copy_(w.dora_scale.reshape(m.shape).to(m.device, m.dtype))
                loaded += 1
    if not loaded:
        raise ConfigError(
            "network.init_from: no layer of the file matches this network",
            path=lora_file.path,
            hint=f"is it a LoRA for another model family (this is {model.spec.label})? "
            "check network.target_modules too",
        )
    return InitReport(loaded=loaded, missing=missing, ignored=ignored)
