"""Kohya key naming, checked against the rule kohya sd-scripts' networks/lora.py applies:
for every module of a target class (Transformer2DModel in the UNet; CLIPAttention/CLIPMLP in the
text encoder), every Linear/Conv2d child is named prefix + module path + child path, dots -> '_'.
Kohya's SD1 UNet has diffusers' module paths; its text encoders have the ``text_model.`` level."""

from __future__ import annotations

import pytest
import torch

from lorawb.train.config import NetworkSection
from lorawb.train.kohya import LoraWeights, extract_lora, kohya_state_dict, te_key, unet_key
from lorawb.train.lora import add_lora

KOHYA_UNET_TARGETS = ("Transformer2DModel",)
KOHYA_TE_TARGETS = ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP")


def kohya_names(root: torch.nn.Module, prefix: str, targets: tuple[str, ...], add_text_model: bool) -> set[str]:
    names = set()
    for name, module in root.named_modules():
        if type(module).__name__ not in targets:
            continue
        if add_text_model and not name.startswith("text_model."):
            name = "text_model." + name  # how the module tree looked in transformers 4, which kohya uses
        for child, sub in module.named_modules():
            if child and type(sub).__name__ in ("Linear", "Conv2d"):
                names.add(f"{prefix}.{name}.{child}".replace(".", "_"))
    return names


@pytest.fixture(scope="module")
def sd1_parts(tiny_sd1):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd1, subfolder="unet")
    te = CLIPTextModel.from_pretrained(tiny_sd1, subfolder="text_encoder")
    return unet, te


def test_sd1_names_follow_kohyas_rule(sd1_parts):
    unet, te = sd1_parts
    kohya_unet = kohya_names(unet, "lora_unet", KOHYA_UNET_TARGETS, add_text_model=False)
    kohya_te = kohya_names(te, "lora_te", KOHYA_TE_TARGETS, add_text_model=True)
    add_lora(unet, [te], NetworkSection(rank=2, alpha=1, ff=True, train_text_encoder=True))
    sd = kohya_state_dict(extract_lora(unet), [extract_lora(te)], te_count=1)
    layers = {k.split(".")[0] for k in sd}
    ours_unet = {n for n in layers if n.startswith("lora_unet_")}
    ours_te = {n for n in layers if n.startswith("lora_te_")}
    assert ours_unet and ours_unet <= kohya_unet
    assert ours_te == {n for n in kohya_te if n.endswith(("q_proj", "k_proj", "v_proj", "out_proj"))}
    assert "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj" in ours_unet
    assert "lora_te_text_model_encoder_layers_1_self_attn_out_proj" in ours_te


def test_conv_lora_has_its_own_rank_and_kohya_shapes(tiny_sd1):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd1, subfolder="unet")
    add_lora(unet, [], NetworkSection(rank=4, alpha=4, conv=True, conv_rank=2, conv_alpha=1))
    sd = kohya_state_dict(extract_lora(unet), None, dtype=torch.float32)
    down = sd["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"]
    up = sd["lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight"]
    assert down.shape[:2] == (2, 32) and down.shape[2:] == (3, 3) and up.shape[2:] == (1, 1)
    assert float(sd["lora_unet_down_blocks_0_resnets_0_conv1.alpha"]) == 1.0
    assert sd["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"].shape[0] == 4


def test_text_encoder_prefixes_per_family():
    assert te_key("encoder.layers.0.self_attn.q_proj", 0, 1) == "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    assert te_key("encoder.layers.0.mlp.fc1", 0, 2) == "lora_te1_text_model_encoder_layers_0_mlp_fc1"
    # CLIPTextModelWithProjection still has the text_model level: it is not doubled
    assert te_key("text_model.encoder.layers.3.self_attn.v_proj", 1, 2) == (
        "lora_te2_text_model_encoder_layers_3_self_attn_v_proj"
    )
    assert unet_key("mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0") == (
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0"
    )


def test_alpha_is_a_float32_scalar_and_weights_take_the_save_dtype():
    w = LoraWeights(down=torch.ones(2, 3), up=torch.ones(3, 2), alpha=8)
    sd = kohya_state_dict({"a.to_q": w}, dtype=torch.bfloat16)
    assert sd["lora_unet_a_to_q.alpha"].dtype == torch.float32 and sd["lora_unet_a_to_q.alpha"].dim() == 0
    assert sd["lora_unet_a_to_q.lora_down.weight"].dtype == torch.bfloat16


def test_dora_magnitude_is_written_as_dora_scale(tiny_sd1):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd1, subfolder="unet")
    add_lora(unet, [], NetworkSection(rank=2, alpha=2, dora=True))
    sd = kohya_state_dict(extract_lora(unet), None)
    scale = sd["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.dora_scale"]
    assert scale.shape == (32, 1)


def test_bad_target_module_is_an_error_naming_it(tiny_sd1):
    from diffusers import UNet2DConditionModel

    from lorawb.errors import ConfigError

    unet = UNet2DConditionModel.from_pretrained(tiny_sd1, subfolder="unet")
    with pytest.raises(ConfigError, match="'to_qq'"):
        add_lora(unet, [], NetworkSection(target_modules=["to_qq"]))
