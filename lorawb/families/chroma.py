"""Chroma: Flux.1's blocks without their modulation linears (a "distilled guidance layer" makes every
modulation), T5-XXL only (with its attention mask), true classifier-free guidance when drawing.

It shares Flux.1's BFL layout, LoRA naming (kohya's ``lora_unet_double_blocks_0_img_attn_qkv``,
fused q/k/v; ComfyUI treats Chroma as a Flux) and loading (lorawb.families.flux). Differences
that matter to a trainer (kohya sd-scripts' ``--model_type chroma``, lodestone's reference code):

- T5 runs with its attention mask, and the transformer attends to the caption's tokens plus
  one padding token. The mask is built as booleans here: diffusers 0.42's ChromaPipeline builds
  it in the embeddings' dtype, which SDPA adds to the scores instead of masking (diffusers issue
  #13619), so samples and the matrix pass lorawb's own embeddings and mask to the pipeline.
- diffusers 0.42's own gradient checkpointing drops that mask in the single blocks: lorawb
  checkpoints the blocks itself (lorawb.families.flow.checkpoint_blocks).
- No CLIP, no guidance embedding; the default timestep sampling is kohya's for Chroma (sigmoid,
  no shift).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from lorawb.families.base import CACHED_1024, Preset, TextCond
from lorawb.families.flow import FlowSettings, checkpoint_blocks
from lorawb.families.flux import FluxFamily, FluxModel

if TYPE_CHECKING:
    import torch


class ChromaSettings(FlowSettings):
    shift: float | Literal["auto"] = Field(
        1.0,
        description="timestep shift: 1 = none (kohya's recommendation for Chroma); auto = by the image's size; "
        "a number = a static shift",
    )
    train_blocks: Literal["all", "double", "single"] = Field(
        "all", description="which transformer blocks get a LoRA (kohya's train_blocks)"
    )
    t5_max_length: int = Field(0, ge=0, le=512, description="T5 tokens per caption (0: 512)")


class ChromaFamily(FluxFamily):
    name = "chroma"
    label = "Chroma"
    settings = ChromaSettings
    # Flux.1's block linears without the modulation ones Chroma does not have.
    default_targets = tuple(t for t in FluxFamily.default_targets if not t.endswith("norm.linear") and "norm1" not in t)
    trainable_text_encoders = (False,)
    default_cfg = 4.0  # true CFG with a negative prompt (kohya's docs sample Chroma at 4)
    base_model_version = "chroma"
    modelspec_architecture = "chroma"
    lora_versions = ("chroma",)
    lora_architectures = ("chroma",)
    transformer_class = "ChromaTransformer2DModel"
    pipeline_class = "ChromaPipeline"
    helpers = ()  # diffusers 0.42 has no Chroma ControlNet, IP-Adapter or editing pipeline
    presets = tuple(
        Preset(
            f"Chroma {gb} GB",
            f"1024 px, batch {batch}: {quant} base, latent + text caches (encoders off the GPU), gradient "
            f"checkpointing, bf16, {optim}",
            CACHED_1024
            + (
                ("model.quantize", quant),
                ("train.batch_size", batch),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", True),
                ("train.optimizer", optim),
                ("train.offload_blocks", 0),
            ),
            gpu_gb=gb,
        )
        for gb, quant, batch, optim in (
            (24, "fp8", 2, "adamw"),
            (16, "fp8", 1, "adamw8bit"),
            (12, "nf4", 1, "adamw8bit"),
        )
    )

    def detect_keys(self, keys: list[str]) -> bool:
        bare = {k.split("diffusion_model.", 1)[-1] for k in keys}
        return "distilled_guidance_layer.in_proj.weight" in bare

    def components(self) -> list[tuple[str, str, str]]:
        return [
            ("vae", "AutoencoderKL", "diffusers"),
            ("text_encoder", "T5EncoderModel", "transformers"),
            ("tokenizer", "T5TokenizerFast", "transformers"),
        ]

    def config_from_state(self, state: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        config = self.shared_config(state, known)
        layers = {k.split(".")[2] for k in state if k.startswith("distilled_guidance_layer.layers.")}
        config["approximator_num_channels"] = int(state["distilled_guidance_layer.in_proj.weight"].shape[1])
        config["approximator_hidden_dim"] = int(state["distilled_guidance_layer.in_proj.weight"].shape[0])
        config["approximator_layers"] = len(layers)
        return config


@dataclass
class ChromaModel(FluxModel):
    """Chroma: T5 tokens with their mask (plus one padding token), no pooled vector, no guidance."""

    @property
    def guidance_embeds(self) -> bool:
        return False

    @property
    def t5_length(self) -> int:
        return int(getattr(self.settings, "t5_max_length", 0) or 0) or 512

    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        (t5,) = self.tokenizers
        out = t5(captions, padding="max_length", max_length=self.t5_length, truncation=True, return_tensors="pt")
        return [out.input_ids, out.attention_mask]

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        import torch

        from lorawb.families.sd import module_device

        (t5,) = self.text_encoders
        device = module_device(t5)
        tokens, mask = ids[0].to(device), ids[1].to(device)
        hidden = t5(tokens, attention_mask=mask, output_hidden_states=False)[0]
        # The transformer attends to the caption's tokens and the first padding token (Chroma's rule).
        lengths = mask.sum(dim=1, keepdim=True)
        keep = torch.arange(mask.shape[1], device=device)[None, :] <= lengths
        return TextCond(hidden, None, keep)

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextCond, geometry: torch.Tensor) -> Any:
        import torch

        dtype = self.dtype
        h, w = noisy.shape[-2:]
        packed, img_ids = self.pack(noisy.to(dtype))
        hidden = text.hidden.to(noisy.device, dtype)
        txt_ids = torch.zeros(hidden.shape[1], 3, device=noisy.device, dtype=dtype)
        out = self.denoiser(
            hidden_states=packed,
            timestep=timesteps.to(dtype),
            encoder_hidden_states=hidden,
            txt_ids=txt_ids,
            img_ids=img_ids,
            attention_mask=self.joint_mask(text, packed.shape[1], noisy.device),
            return_dict=False,
        )[0]
        return self.unpack(out, h, w)

    @staticmethod
    def joint_mask(text: TextCond, image_tokens: int, device: Any) -> torch.Tensor:
        """The transformer's boolean mask: the caption's mask, then every image token."""
        import torch

        assert text.mask is not None
        mask = text.mask.to(device, torch.bool)
        return torch.cat([mask, torch.ones(mask.shape[0], image_tokens, device=device, dtype=torch.bool)], dim=1)

    def enable_gradient_checkpointing(self) -> None:
        checkpoint_blocks([*self.bare_denoiser.transformer_blocks, *self.bare_denoiser.single_transformer_blocks])

    def draw(self, pipe: Any, **kw: Any) -> list[Any]:
        """ChromaPipeline with lorawb's own embeddings and boolean masks (see the module's docstring)."""
        import torch

        prompts = kw.pop("prompt")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        negatives = kw.pop("negative_prompt", None)
        negatives = [negatives] * len(prompts) if isinstance(negatives, str) else list(negatives or [""] * len(prompts))
        device = next(pipe.text_encoder.parameters()).device
        with torch.no_grad():
            cond = self.encode_text([t.to(device) for t in self.tokenize(prompts)])
            uncond = self.encode_text([t.to(device) for t in self.tokenize([n or "" for n in negatives])])
        kw.setdefault("max_sequence_length", self.t5_length)
        return list(
            pipe(
                prompt_embeds=cond.hidden,
                prompt_attention_mask=cond.mask,
                negative_prompt_embeds=uncond.hidden,
                negative_prompt_attention_mask=uncond.mask,
                **kw,
            ).images
        )


ChromaFamily.model_class = ChromaModel
