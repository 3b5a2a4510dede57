"""The real architectures' sizes, for the memory plan's tests and the GPU benches: nothing downloaded.

``write_config_folder(dest, family)`` writes a diffusers folder of a full-size model with its
configs only (no weights): the memory plan builds it on the meta device from them, exactly as it
would a downloaded model. ``build_random(dest, family)`` saves random weights into such a folder
(the GPU bench trains it). The tokenizers, scheduler and model_index.json are the tiny model's
(lorawb.toyworld.tiny / tiny_transformers); token ids stay below every real vocabulary.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

SD15_UNET: dict[str, Any] = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=768,
)
SDXL_UNET: dict[str, Any] = dict(
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
SD_VAE: dict[str, Any] = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
)
FLUX_VAE: dict[str, Any] = dict(
    SD_VAE,
    latent_channels=16,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
CLIP_L: dict[str, Any] = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768
)
CLIP_BIGG: dict[str, Any] = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    projection_dim=1280,
    hidden_act="gelu",
)
T5_XXL: dict[str, Any] = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    feed_forward_proj="gated-gelu",
)
# FLUX.1-dev's transformer (black-forest-labs/FLUX.1-dev transformer/config.json); Chroma's is the same
# without the modulation layers, plus its approximator.
FLUX_TRANSFORMER: dict[str, Any] = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
CHROMA_TRANSFORMER: dict[str, Any] = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    axes_dims_rope=(16, 56, 56),
    approximator_num_channels=64,
    approximator_hidden_dim=5120,
    approximator_layers=5,
)
# FLUX.2-klein-4B's transformer (ai-toolkit's Klein4BParams, ComfyUI's detect_unet_config) and its
# Qwen3-4B text encoder (Qwen/Qwen3-4B config.json); the Flux.2 VAE is AutoencoderKLFlux2's defaults.
KLEIN_4B_TRANSFORMER: dict[str, Any] = dict(
    in_channels=128,
    num_layers=5,
    num_single_layers=20,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=7680,
    axes_dims_rope=(32, 32, 32, 32),
    guidance_embeds=False,
)
QWEN3_4B: dict[str, Any] = dict(
    vocab_size=151936,
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
)
# Z-Image (Turbo and Base share it): diffusers' ZImageTransformer2DModel defaults are its config.
ZIMAGE_TRANSFORMER: dict[str, Any] = dict(axes_lens=[1536, 512, 512])
# Qwen-Image: diffusers' QwenImageTransformer2DModel and AutoencoderKLQwenImage defaults are its configs; its
# text encoder is Qwen2.5-VL-7B-Instruct (Qwen/Qwen-Image text_encoder/config.json).
QWENIMAGE_TRANSFORMER: dict[str, Any] = {}
QWEN25_VL_7B: dict[str, Any] = dict(
    text_config=dict(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=128000,
        rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "rope_type": "default", "mrope_section": [16, 24, 24]},
        tie_word_embeddings=False,
    ),
    vision_config=dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=3584,
        fullatt_block_indexes=[7, 15, 23, 31],
    ),
    tie_word_embeddings=False,
)
# SD3.5 Large and Medium (stabilityai/stable-diffusion-3.5-{large,medium} transformer/config.json).
SD35_LARGE_TRANSFORMER: dict[str, Any] = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=38,
    attention_head_dim=64,
    num_attention_heads=38,
    joint_attention_dim=4096,
    caption_projection_dim=2432,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=192,
    qk_norm="rms_norm",
)
SD35_MEDIUM_TRANSFORMER: dict[str, Any] = dict(
    SD35_LARGE_TRANSFORMER,
    num_layers=24,
    num_attention_heads=24,
    caption_projection_dim=1536,
    pos_embed_max_size=384,
    dual_attention_layers=tuple(range(13)),
)
FAMILIES = ("sd1", "sdxl", "flux", "chroma", "flux2_klein", "zimage", "qwenimage", "sd3")


def components(family: str, vocab: int = 49408) -> dict[str, tuple[str, str, Any]]:
    """subfolder -> (library, class, config) of the family's full-size networks."""
    clip = dict(vocab_size=vocab, max_position_embeddings=77, bos_token_id=vocab - 2, eos_token_id=vocab - 1)
    clip["pad_token_id"] = vocab - 1
    if family in ("sd1", "sdxl"):
        out = {
            "unet": ("diffusers", "UNet2DConditionModel", SDXL_UNET if family == "sdxl" else SD15_UNET),
            "vae": (
                "diffusers",
                "AutoencoderKL",
                dict(
                    SD_VAE,
                    sample_size=1024 if family == "sdxl" else 512,
                    scaling_factor=0.13025 if family == "sdxl" else 0.18215,
                ),
            ),
            "text_encoder": ("transformers", "CLIPTextModel", dict(CLIP_L, hidden_act="quick_gelu", **clip)),
        }
        if family == "sdxl":
            out["text_encoder_2"] = ("transformers", "CLIPTextModelWithProjection", dict(CLIP_BIGG, **clip))
        return out
    t5 = ("transformers", "T5EncoderModel", T5_XXL)
    vae = ("diffusers", "AutoencoderKL", dict(FLUX_VAE, sample_size=1024))
    if family == "flux":
        return {
            "transformer": ("diffusers", "FluxTransformer2DModel", FLUX_TRANSFORMER),
            "vae": vae,
            "text_encoder": ("transformers", "CLIPTextModel", dict(CLIP_L, hidden_act="quick_gelu", **clip)),
            "text_encoder_2": t5,
        }
    if family == "chroma":
        return {
            "transformer": ("diffusers", "ChromaTransformer2DModel", CHROMA_TRANSFORMER),
            "vae": vae,
            "text_encoder": t5,
        }
    qwen3 = ("transformers", "Qwen3Model", QWEN3_4B)
    if family == "flux2_klein":
        return {
            "transformer": ("diffusers", "Flux2Transformer2DModel", KLEIN_4B_TRANSFORMER),
            "vae": ("diffusers", "AutoencoderKLFlux2", {}),
            "text_encoder": qwen3,
        }
    if family == "zimage":
        return {
            "transformer": ("diffusers", "ZImageTransformer2DModel", ZIMAGE_TRANSFORMER),
            "vae": vae,
            "text_encoder": qwen3,
        }
    if family == "qwenimage":
        return {
            "transformer": ("diffusers", "QwenImageTransformer2DModel", QWENIMAGE_TRANSFORMER),
            "vae": ("diffusers", "AutoencoderKLQwenImage", {}),
            "text_encoder": ("transformers", "Qwen2_5_VLForConditionalGeneration", QWEN25_VL_7B),
        }
    if family == "sd3":  # SD3.5 Large
        return {
            "transformer": ("diffusers", "SD3Transformer2DModel", SD35_LARGE_TRANSFORMER),
            "vae": (
                "diffusers",
                "AutoencoderKL",
                dict(FLUX_VAE, sample_size=1024, scaling_factor=1.5305, shift_factor=0.0609),
            ),
            "text_encoder": ("transformers", "CLIPTextModelWithProjection", dict(CLIP_L, **clip)),
            "text_encoder_2": ("transformers", "CLIPTextModelWithProjection", dict(CLIP_BIGG, **clip)),
            "text_encoder_3": t5,
        }
    raise ValueError(f"no full-size architecture for {family!r} here: one of {', '.join(FAMILIES)}")


def write_config_folder(dest: str | Path, family: str, *, seed: int = 0) -> Path:
    """A full-size ``family`` model as a diffusers folder of configs only (no weights)."""
    import importlib

    import torch

    dest = Path(dest)
    _tiny(dest, family, seed)
    for sub, (library, cls_name, config) in components(family, _vocab(dest)).items():
        for f in (dest / sub).glob("*.safetensors"):
            f.unlink()
        cls = getattr(importlib.import_module(library), cls_name)
        if library == "transformers":
            _transformers_config(cls_name, config).save_pretrained(dest / sub)
        else:
            with torch.device("meta"):
                cls.from_config(config).save_config(dest / sub)
    return dest


def build_random(dest: str | Path, family: str, *, seed: int = 0, dtype: Any = None, device: str = "cpu") -> Path:
    """A full-size ``family`` model with random weights, saved as a diffusers folder (``dtype``, bf16 by default)."""
    import importlib

    import torch

    dest = write_config_folder(dest, family, seed=seed)
    dtype = dtype or torch.bfloat16
    torch.manual_seed(seed)
    for sub, (library, cls_name, config) in components(family, _vocab(dest)).items():
        cls = getattr(importlib.import_module(library), cls_name)
        with torch.device(device):
            model = cls(_transformers_config(cls_name, config)) if library == "transformers" else cls(**config)
        model.to(dtype).save_pretrained(dest / sub, safe_serialization=True)
        del model
    return dest


def _transformers_config(cls_name: str, config: dict[str, Any]) -> Any:
    import transformers

    if cls_name.startswith("Qwen3"):
        return transformers.Qwen3Config(**config)
    if cls_name.startswith("Qwen2_5_VL"):
        return transformers.Qwen2_5_VLConfig(**config)
    cls = transformers.T5Config if cls_name.startswith("T5") else transformers.CLIPTextConfig
    return cls(**config)


def _tiny(dest: Path, family: str, seed: int) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    if family in ("sd1", "sdxl"):
        from lorawb.toyworld.tiny import build_tiny_model

        build_tiny_model(dest, family=family, seed=seed)
    else:
        from lorawb.toyworld.tiny_transformers import build_tiny_transformer

        build_tiny_transformer(dest, family, seed=seed)
    (dest / "lorawb_model.json").unlink(missing_ok=True)


def _vocab(dest: Path) -> int:
    vocab = dest / "tokenizer" / "vocab.json"
    return max(49408, len(json.loads(vocab.read_text()))) if vocab.is_file() else 49408
