"""LoRA adapters injected with peft into the UNet (and optionally the text encoders).

Targets are resolved to full module names first, so a typo in
``network.target_modules`` is an error naming it rather than a LoRA that
silently trains nothing, and so the saved names map one-to-one onto kohya's.
Adapters are injected with ``peft.inject_adapter_in_model`` directly (not the
transformers adapter API, which needs a newer peft than exists; DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from lorawb.errors import ConfigError
from lorawb.train.config import FF_TARGETS, NetworkSection

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


def unet_targets(unet: torch.nn.Module, cfg: NetworkSection) -> tuple[list[str], list[str]]:
    """(linear/attention module names, conv module names) that get a LoRA."""
    suffixes = list(cfg.target_modules) + (FF_TARGETS if cfg.ff else [])
    linear: list[str] = []
    for name, module in unet.named_modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        if any(name == s or name.endswith("." + s) for s in suffixes):
            linear.append(name)
    for s in cfg.target_modules:
        if not any(n == s or n.endswith("." + s) for n in linear):
            raise ConfigError(
                f"network.target_modules: {s!r} matches no layer of this UNet",
                hint="attention layers are named to_q, to_k, to_v, to_out.0; "
                "feed-forward ff.net.0.proj, ff.net.2; also proj_in, proj_out",
            )
    conv: list[str] = []
    if cfg.conv:
        for name, module in unet.named_modules():
            if type(module).__name__ in CONV_PARENTS:
                for child, sub in module.named_modules():
                    if isinstance(sub, torch.nn.Conv2d) and child:
                        conv.append(f"{name}.{child}")
    return linear, [c for c in conv if c not in linear]


def text_encoder_targets(te: torch.nn.Module, suffixes: list[str]) -> list[str]:
    names = [
        n
        for n, m in te.named_modules()
        if isinstance(m, torch.nn.Linear) and any(n.endswith("." + s) for s in suffixes) and ".layers." in n
    ]
    if not names:
        raise ConfigError(
            f"network.text_encoder_targets {suffixes} match no layer of the text encoder",
            hint="CLIP layers are named q_proj, k_proj, v_proj, out_proj, fc1, fc2",
        )
    return names


def add_lora(unet: torch.nn.Module, text_encoders: list[torch.nn.Module], cfg: NetworkSection) -> LoraSetup:
    """Inject LoRA layers; only they require grad afterwards."""
    from peft import LoraConfig, inject_adapter_in_model

    linear, conv = unet_targets(unet, cfg)
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
        for te in text_encoders:
            names = text_encoder_targets(te, cfg.text_encoder_targets)
            inject_adapter_in_model(LoraConfig(target_modules=names, **lora_kw), te)
            setup.te_modules.append(names)
            setup.te_params += [p for n, p in te.named_parameters() if "lora_" in n]
    for p in setup.unet_params + setup.te_params:
        p.requires_grad_(True)
        p.data = p.data.float()  # trainable weights stay fp32 under mixed precision
    return setup


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
