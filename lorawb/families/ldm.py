"""UNet module names in the original (LDM / sgm) layout, and back.

diffusers' ``UNet2DConditionModel`` names its modules ``down_blocks.1.attentions.0...``; the
original layout that single-file checkpoints, kohya sd-scripts' SDXL UNet (and so its SDXL LoRA
names) and most shared SDXL LoRAs use says ``input_blocks.4.1...``. The mapping is a list of
block prefixes worked out from the UNet config (so it holds for the tiny test models as well as
for SD1.5 and SDXL), plus the renamed sub-layers of ResNet blocks (``conv1`` is ``in_layers.2``).

``UnetLayout(config).to_ldm(name)`` / ``.to_diffusers(name)`` convert module names or parameter
keys; ``sep="_"`` converts names whose dots are already underscores (kohya LoRA layer names).
No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ResNet sub-layers: diffusers name -> the original layout's.
RESNET_PARTS = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)


@dataclass(frozen=True)
class Block:
    diffusers: str  # prefix with a trailing dot, e.g. "down_blocks.1.resnets.0."
    ldm: str  # e.g. "input_blocks.4.0."
    resnet: bool = False


def unet_blocks(config: Mapping[str, Any]) -> list[Block]:
    """Every block prefix of a UNet with this config, in both layouts."""
    n = len(config["block_out_channels"])
    per = config["layers_per_block"]
    blocks = [
        Block("time_embedding.linear_1.", "time_embed.0."),
        Block("time_embedding.linear_2.", "time_embed.2."),
        Block("conv_in.", "input_blocks.0.0."),
        Block("conv_norm_out.", "out.0."),
        Block("conv_out.", "out.2."),
        Block("mid_block.resnets.0.", "middle_block.0.", resnet=True),
        Block("mid_block.attentions.0.", "middle_block.1."),
        Block("mid_block.resnets.1.", "middle_block.2.", resnet=True),
    ]
    if config.get("addition_embed_type") == "text_time":  # SDXL's pooled-text + size conditioning
        blocks += [
            Block("add_embedding.linear_1.", "label_emb.0.0."),
            Block("add_embedding.linear_2.", "label_emb.0.2."),
        ]
    for i, kind in enumerate(config["down_block_types"]):
        for j in range(per):
            index = (per + 1) * i + j + 1
            blocks.append(Block(f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{index}.0.", resnet=True))
            if kind.startswith("CrossAttn"):
                blocks.append(Block(f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{index}.1."))
        if i < n - 1:
            blocks.append(Block(f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(per + 1) * (i + 1)}.0.op."))
    for i, kind in enumerate(config["up_block_types"]):
        attn = kind.startswith("CrossAttn")
        for j in range(per + 1):
            index = (per + 1) * i + j
            blocks.append(Block(f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{index}.0.", resnet=True))
            if attn:
                blocks.append(Block(f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{index}.1."))
        if i < n - 1:
            # The upsampler joins the block's last layer: after its resnet (and attention, if any).
            last = (per + 1) * i + per
            blocks.append(Block(f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{last}.{2 if attn else 1}."))
    return blocks


class UnetLayout:
    """Converts UNet module names between diffusers' layout and the original one."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        blocks = unet_blocks(config)
        # Longest prefix first, so "output_blocks.1.0." never shadows "output_blocks.1.1.".
        self._to_ldm = sorted(((b.diffusers, b.ldm, b.resnet) for b in blocks), key=lambda t: -len(t[0]))
        self._to_diffusers = sorted(((b.ldm, b.diffusers, b.resnet) for b in blocks), key=lambda t: -len(t[0]))

    def to_ldm(self, name: str, sep: str = ".") -> str:
        return _convert(name, self._to_ldm, RESNET_PARTS, sep)

    def to_diffusers(self, name: str, sep: str = ".") -> str:
        return _convert(name, self._to_diffusers, tuple((b, a) for a, b in RESNET_PARTS), sep)


def _convert(name: str, table: list[tuple[str, str, bool]], parts: tuple[tuple[str, str], ...], sep: str) -> str:
    probe = name + sep
    for old, new, resnet in table:
        old, new = old.replace(".", sep), new.replace(".", sep)
        if not probe.startswith(old):
            continue
        rest = probe[len(old) :]
        if resnet:
            for a, b in parts:
                a, b = a.replace(".", sep) + sep, b.replace(".", sep) + sep
                if rest.startswith(a):
                    rest = b + rest[len(a) :]
                    break
        return (new + rest)[: -len(sep)]
    return name
