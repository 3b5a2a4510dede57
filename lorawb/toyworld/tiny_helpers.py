"""Tiny variation-helper models for a tiny base model, built from configs, in their real file formats.

- an IP-Adapter: a CLIP image encoder folder (``image_encoder/``: transformers'
  ``CLIPVisionModelWithProjection``, config.json + model.safetensors) and the adapter file
  (``ip-adapter_tiny.safetensors``) with the keys real IP-Adapters have: ``image_proj.proj`` /
  ``image_proj.norm`` (the image embedding → 4 extra text tokens) and, per cross-attention layer,
  ``ip_adapter.<n>.to_k_ip`` / ``to_v_ip`` (SD1/SDXL; n = 1, 3, 5 … as the original files number
  them). For Flux, XLabs' naming: ``ip_adapter_proj_model.*`` and
  ``double_blocks.<n>.processor.ip_adapter_double_stream_{k,v}_proj``, with biases;
- a ControlNet: ``ControlNetModel.from_unet`` (or ``FluxControlNetModel.from_transformer``) of
  the base model's own denoiser, saved with ``save_pretrained`` (config.json +
  diffusion_pytorch_model.safetensors), as OpenPose ControlNets ship.

Their weights are random (seeded): they exercise loading and drawing, not quality. The zero
convolutions a fresh ControlNet starts with are filled too, so the pose visibly changes the image.
"""

from __future__ import annotations

from pathlib import Path

from lorawb.errors import LorawbError

ENCODER_DIM = 32  # the tiny image encoder's projection (the IP-Adapter's image embedding)


def _family(model_dir: Path) -> str:
    from lorawb.families import detect

    return detect(model_dir).name


def _encoder(dest: Path, seed: int) -> None:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=ENCODER_DIM,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(dest, safe_serialization=True)


def build_tiny_ip_adapter(dest: str | Path, model_dir: str | Path, seed: int = 0) -> Path:
    """An IP-Adapter for the tiny base model at ``model_dir``: ``dest/ip-adapter_tiny.safetensors``
    and ``dest/image_encoder/``. Returns the adapter file."""
    import torch
    from safetensors.torch import save_file

    dest, model_dir = Path(dest), Path(model_dir)
    dest.mkdir(parents=True, exist_ok=True)
    _encoder(dest / "image_encoder", seed)
    g = torch.Generator().manual_seed(seed + 1)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).contiguous()

    family = _family(model_dir)
    tensors: dict[str, torch.Tensor] = {}
    if family in ("sd1", "sd2", "sdxl"):
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", local_files_only=True)
        cross = int(unet.config.cross_attention_dim)
        tensors |= {
            "image_proj.proj.weight": rand(cross * 4, ENCODER_DIM),
            "image_proj.proj.bias": rand(cross * 4),
            "image_proj.norm.weight": torch.ones(cross),
            "image_proj.norm.bias": torch.zeros(cross),
        }
        key_id = 1
        for name, module in unet.named_modules():
            if name.endswith("attn2") and hasattr(module, "to_k"):
                hidden = int(module.to_q.out_features)
                tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hidden, cross)
                tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(hidden, cross)
                key_id += 2
    elif family == "flux":
        from diffusers import FluxTransformer2DModel

        tr = FluxTransformer2DModel.from_pretrained(model_dir, subfolder="transformer", local_files_only=True)
        joint, inner = int(tr.config.joint_attention_dim), int(tr.inner_dim)
        tensors |= {
            "ip_adapter_proj_model.proj.weight": rand(joint * 4, ENCODER_DIM),
            "ip_adapter_proj_model.proj.bias": rand(joint * 4),
            "ip_adapter_proj_model.norm.weight": torch.ones(joint),
            "ip_adapter_proj_model.norm.bias": torch.zeros(joint),
        }
        for n in range(len(tr.transformer_blocks)):
            for kv in ("k", "v"):
                stem = f"double_blocks.{n}.processor.ip_adapter_double_stream_{kv}_proj"
                tensors[f"{stem}.weight"] = rand(inner, joint)
                tensors[f"{stem}.bias"] = rand(inner)
    else:
        raise LorawbError(f"no tiny IP-Adapter for {family} models")
    out = dest / "ip-adapter_tiny.safetensors"
    save_file(tensors, str(out))
    return out


def build_tiny_controlnet(dest: str | Path, model_dir: str | Path, seed: int = 0) -> Path:
    """A ControlNet made from the tiny base model's own denoiser, saved as a diffusers folder at ``dest``."""
    import torch

    dest, model_dir = Path(dest), Path(model_dir)
    family = _family(model_dir)
    torch.manual_seed(seed)
    if family in ("sd1", "sd2", "sdxl"):
        from diffusers import ControlNetModel, UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", local_files_only=True)
        channels = tuple(min(16, c) for c in unet.config.block_out_channels[:1]) * 2
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
    elif family == "flux":
        from diffusers import FluxControlNetModel, FluxTransformer2DModel

        tr = FluxTransformer2DModel.from_pretrained(model_dir, subfolder="transformer", local_files_only=True)
        # from_transformer's head sizes default to FLUX.1's own: pass the tiny model's
        c = tr.config
        net = FluxControlNetModel.from_transformer(
            tr,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=c.attention_head_dim,
            num_attention_heads=c.num_attention_heads,
        )
    else:
        raise LorawbError(f"no tiny ControlNet for {family} models")
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "zero" in name or "controlnet_" in name or "cond_embedding" in name or "x_embedder" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    net.save_pretrained(dest, safe_serialization=True)
    return dest
