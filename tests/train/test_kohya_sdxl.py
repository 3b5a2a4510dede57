"""SDXL LoRA names are kohya sd-scripts' own: checked on the full-size SDXL architecture (built on the
meta device, no weights) against the set of names sd-scripts' SDXL LoRA network creates.

That set is derived here, independently of lorawb's mapping, from the module tree sd-scripts'
``SdxlUNet2DConditionModel`` builds (library/sdxl_original_unet.py: input_blocks / middle_block /
output_blocks of ResnetBlock2D, Transformer2DModel, Downsample2D, Upsample2D) and the rule of its
networks/lora.py: for every module of a target class (Transformer2DModel; with conv_dim also
ResnetBlock2D, Downsample2D, Upsample2D), every Linear/Conv2d child is named
``lora_unet_<module path>_<child path>`` with dots as underscores."""

from __future__ import annotations

import pytest
import torch

from lorawb import families
from lorawb.families.ldm import UnetLayout
from lorawb.train.config import NetworkSection
from lorawb.train.kohya import convert_unet_naming, detect_unet_naming, unet_key
from lorawb.train.lora import denoiser_targets

SDXL_BASE_UNET = dict(  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the parts that shape it)
    sample_size=128,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2,
    attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True,
    cross_attention_dim=2048,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
C = 320  # sd-scripts' MODEL_CHANNELS


def resnet(name: str, cin: int, cout: int) -> dict[str, str]:
    out = {f"{name}.in_layers.2": "conv3", f"{name}.emb_layers.1": "linear", f"{name}.out_layers.3": "conv3"}
    if cin != cout:
        out[f"{name}.skip_connection"] = "conv1"
    return out


def transformer(name: str, depth: int) -> dict[str, str]:
    out = {f"{name}.proj_in": "linear", f"{name}.proj_out": "linear"}
    for k in range(depth):
        block = f"{name}.transformer_blocks.{k}"
        for attn in ("attn1", "attn2"):
            for part in ("to_q", "to_k", "to_v", "to_out.0"):
                out[f"{block}.{attn}.{part}"] = "linear"
        out[f"{block}.ff.net.0.proj"] = "linear"
        out[f"{block}.ff.net.2"] = "linear"
    return out


def sdxl_original_layers() -> dict[str, dict[str, str]]:
    """{target class: {child layer path: kind}} of sd-scripts' SDXL UNet, as its __init__ builds it."""
    res: dict[str, str] = {}
    attn: dict[str, str] = {}
    sampler: dict[str, str] = {}
    # input blocks: level 0 (2 resnets), downsample, level 1 (resnet + 2-deep transformer) x2, downsample, level 2
    res |= resnet("input_blocks.1.0", C, C) | resnet("input_blocks.2.0", C, C)
    sampler["input_blocks.3.0.op"] = "conv3"
    for i, cin in ((4, C), (5, 2 * C)):
        res |= resnet(f"input_blocks.{i}.0", cin, 2 * C)
        attn |= transformer(f"input_blocks.{i}.1", 2)
    sampler["input_blocks.6.0.op"] = "conv3"
    for i, cin in ((7, 2 * C), (8, 4 * C)):
        res |= resnet(f"input_blocks.{i}.0", cin, 4 * C)
        attn |= transformer(f"input_blocks.{i}.1", 10)
    res |= resnet("middle_block.0", 4 * C, 4 * C) | resnet("middle_block.2", 4 * C, 4 * C)
    attn |= transformer("middle_block.1", 10)
    skips = {2: (4, 4, 2), 1: (4, 2, 1), 0: (2, 1, 1)}  # channels concatenated from the input side
    for level, mult, depth, first in ((2, 4, 10, 0), (1, 2, 2, 3), (0, 1, 0, 6)):
        for i in range(3):
            index = first + i
            res |= resnet(f"output_blocks.{index}.0", mult * C + skips[level][i] * C, mult * C)
            if depth:
                attn |= transformer(f"output_blocks.{index}.1", depth)
        if level > 0:
            sampler[f"output_blocks.{first + 2}.2.conv"] = "conv3"
    return {"Transformer2DModel": attn, "ResnetBlock2D": res, "Samplers": sampler}


def kohya_names(conv: bool) -> set[str]:
    """The layer names sd-scripts' networks/lora.py creates for the SDXL UNet (conv: with conv_dim)."""
    layers = sdxl_original_layers()
    targets = ["Transformer2DModel"] + (["ResnetBlock2D", "Samplers"] if conv else [])
    names = set()
    for target in targets:
        for path, kind in layers[target].items():
            if kind in ("linear", "conv1") or conv:  # 3x3 convs only with conv_dim
                names.add("lora_unet_" + path.replace(".", "_"))
    return names


@pytest.fixture(scope="module")
def full_sdxl_unet():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**SDXL_BASE_UNET)


def lorawb_names(unet, net: NetworkSection) -> set[str]:
    """Every UNet layer name lorawb writes for this network (save_checkpoint's naming)."""
    linear, conv = denoiser_targets(unet, families.get("sdxl"), net)
    layout = UnetLayout(unet.config)
    return {unet_key(name, layout) for name in linear + conv}


def test_every_sdxl_name_is_one_kohya_creates(full_sdxl_unet):
    attention = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"]
    ours = lorawb_names(full_sdxl_unet, NetworkSection(target_modules=attention, ff=True))
    theirs = kohya_names(conv=False)
    assert ours == theirs  # attention, projections and feed-forward: kohya's set exactly
    assert len(ours) == 70 * 10 + 11 * 2  # 70 transformer blocks of 10 layers, 11 transformers' proj_in/out
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in ours
    assert "lora_unet_output_blocks_0_1_transformer_blocks_9_ff_net_2" in ours
    assert "lora_unet_middle_block_1_transformer_blocks_3_attn2_to_out_0" in ours

    locon = lorawb_names(full_sdxl_unet, NetworkSection(conv=True))
    conv_names = locon - kohya_names(conv=False)
    assert conv_names and locon <= kohya_names(conv=True)
    assert {"lora_unet_input_blocks_1_0_in_layers_2", "lora_unet_output_blocks_8_0_skip_connection"} <= conv_names
    assert {"lora_unet_input_blocks_3_0_op", "lora_unet_output_blocks_5_2_conv"} <= conv_names
    assert not any("down_blocks" in n or "up_blocks" in n or "mid_block" in n for n in locon)


def test_the_layout_maps_back_and_forth(full_sdxl_unet):
    layout = UnetLayout(full_sdxl_unet.config)
    names = [n for n, m in full_sdxl_unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    ldm = [layout.to_ldm(n) for n in names]
    assert len(set(ldm)) == len(names)  # one-to-one
    assert [layout.to_diffusers(n) for n in ldm] == names
    assert layout.to_ldm("down_blocks.1.resnets.0.conv_shortcut") == "input_blocks.4.0.skip_connection"
    assert layout.to_ldm("up_blocks.1.upsamplers.0.conv.weight") == "output_blocks.5.2.conv.weight"
    assert layout.to_ldm("add_embedding.linear_2") == "label_emb.0.2"
    flat = "input_blocks_7_1_transformer_blocks_9_attn1_to_q"
    assert layout.to_diffusers(flat, sep="_") == "down_blocks_2_attentions_0_transformer_blocks_9_attn1_to_q"


def test_convert_between_the_two_sdxl_namings(full_sdxl_unet):
    ldm = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight": 1,
        "lora_unet_output_blocks_2_2_conv.alpha": 2,
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": 3,
    }
    diffusers = convert_unet_naming(ldm, full_sdxl_unet.config, to="diffusers")
    assert diffusers == {
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": 1,
        "lora_unet_up_blocks_0_upsamplers_0_conv.alpha": 2,
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": 3,
    }
    assert convert_unet_naming(diffusers, full_sdxl_unet.config, to="ldm") == ldm
    assert (detect_unet_naming(ldm), detect_unet_naming(diffusers), detect_unet_naming({"lora_te_x.alpha": 0})) == (
        "ldm",
        "diffusers",
        None,
    )
