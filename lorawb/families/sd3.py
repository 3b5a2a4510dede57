"""Stable Diffusion 3.5 (Medium and Large; SD3 Medium too): the MMDiT transformer (joint blocks; Medium's
MMDiT-X adds a second self-attention to its first blocks), CLIP-L + CLIP-G (penultimate layers and pooled
vectors) + T5-XXL, the 16-channel VAE, latents patchified by the transformer itself, flow matching with
classifier-free guidance.

Components come from diffusers (``SD3Transformer2DModel``, ``StableDiffusion3Pipeline``) and transformers;
nothing here is model code. What this module knows:

- **Files.** A diffusers folder, or a single ``.safetensors`` checkpoint as Stability AI and Comfy-Org ship it
  (``model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight``, SAI's MMDiT names, q/k/v fused; or
  diffusers' names). The transformer's widths and dual-attention layers are read from the file; diffusers' own
  converter (``convert_sd3_transformer_checkpoint_to_diffusers``) renames the weights. The text encoders,
  VAE, tokenizers and scheduler come from ``model.config``'s folder (a file's own VAE and text encoders are
  not read). Loading is Flux.1's (lorawb.families.flux.load_parts).
- **Conditioning** as ``StableDiffusion3Pipeline.encode_prompt`` builds it: CLIP-L's and CLIP-G's penultimate
  hidden states side by side, zero-padded to T5's width, followed by T5's tokens; the pooled vector is
  CLIP-L's and CLIP-G's projected ones side by side.
- **LoRA files** in diffusers' peft naming (``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``)
  with alpha/rank folded into ``lora_B``: what diffusers' own SD3 script writes, what
  ``StableDiffusion3Pipeline.load_lora_weights`` loads (its SD3 loader converts no other naming) and what
  ComfyUI maps (comfy/lora.py ``model_lora_keys_unet``, its ``SD3`` branch over ``mmdit_to_diffusers``).
  Read back: that, OneTrainer's ``lora_transformer_``, SimpleTuner's ``lycoris_``, ``base_model.model.``
  and kohya sd-scripts' ``lora_unet_joint_blocks_0_x_block_attn_qkv`` (SAI names, q/k/v fused; split exactly).
- **Training** (docs/training.md): σ by logit-normal with a static shift of 3 (SD3's scheduler, and the
  timesteps diffusers' SD3 script draws), target noise − x0, latents sampled from the VAE's posterior.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from lorawb.errors import ConfigError, ModelError
from lorawb.families.base import CACHED_1024, ActivationModel, Preset, TextCond
from lorawb.families.flow import FlowFamily, FlowModel, FlowSettings

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import ModelSection, NetworkSection, TrainConfig
    from lorawb.train.kohya import LoraFile, LoraWeights


class SD3Settings(FlowSettings):
    shift: float | Literal["auto"] = Field(
        3.0,
        description="timestep shift: a number = a static shift (3: SD3's scheduler, as diffusers' script trains); "
        "auto = by the image's size; 1 = none (kohya's training_shift default)",
    )
    max_sequence_length: int = Field(
        256, ge=8, le=512, description="T5 tokens per caption (the pipeline's and sd-scripts' 256)"
    )
    train_attn2: bool = Field(
        True,
        description="SD3.5 Medium (MMDiT-X): a LoRA on the second self-attention (attn2) wherever the first attention "
        "has one (diffusers' script leaves attn2 out)",
    )


# --- SAI's MMDiT layout (kohya sd-scripts, ComfyUI, single files) <-> diffusers' module names ------------------------

# Per joint block: diffusers sub-path -> (SAI sub-path, index in the fused module, parts of it).
JOINT = {
    "attn.to_q": ("x_block.attn.qkv", 0, 3),
    "attn.to_k": ("x_block.attn.qkv", 1, 3),
    "attn.to_v": ("x_block.attn.qkv", 2, 3),
    "attn.to_out.0": ("x_block.attn.proj", 0, 1),
    "attn2.to_q": ("x_block.attn2.qkv", 0, 3),
    "attn2.to_k": ("x_block.attn2.qkv", 1, 3),
    "attn2.to_v": ("x_block.attn2.qkv", 2, 3),
    "attn2.to_out.0": ("x_block.attn2.proj", 0, 1),
    "attn.add_q_proj": ("context_block.attn.qkv", 0, 3),
    "attn.add_k_proj": ("context_block.attn.qkv", 1, 3),
    "attn.add_v_proj": ("context_block.attn.qkv", 2, 3),
    "attn.to_add_out": ("context_block.attn.proj", 0, 1),
    "ff.net.0.proj": ("x_block.mlp.fc1", 0, 1),
    "ff.net.2": ("x_block.mlp.fc2", 0, 1),
    "ff_context.net.0.proj": ("context_block.mlp.fc1", 0, 1),
    "ff_context.net.2": ("context_block.mlp.fc2", 0, 1),
    "norm1.linear": ("x_block.adaLN_modulation.1", 0, 1),
    "norm1_context.linear": ("context_block.adaLN_modulation.1", 0, 1),
}
TOP = {
    "context_embedder": "context_embedder",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",  # halves swapped (flux.SWAPPED has its name)
}
BLOCK_RE = re.compile(r"^transformer_blocks\.(\d+)\.(.+)$")
SAI_FLAT = re.compile(
    r"^joint_blocks_(\d+)_(x_block|context_block)_(attn_qkv|attn_proj|attn2_qkv|attn2_proj|mlp_fc1|mlp_fc2|"
    r"adaLN_modulation_1)$"
)
SAI_PARTS = {
    "attn_qkv": "attn.qkv",
    "attn_proj": "attn.proj",
    "attn2_qkv": "attn2.qkv",
    "attn2_proj": "attn2.proj",
    "mlp_fc1": "mlp.fc1",
    "mlp_fc2": "mlp.fc2",
    "adaLN_modulation_1": "adaLN_modulation.1",
}
TOP_FLAT = {v.replace(".", "_"): v for v in TOP.values()}


def sai_module(name: str) -> tuple[str, int, int] | None:
    """A diffusers module's place in SAI's MMDiT layout: (SAI module, index in it, parts), or None."""
    m = BLOCK_RE.match(name)
    if m:
        hit = JOINT.get(m.group(2))
        return (f"joint_blocks.{m.group(1)}.{hit[0]}", hit[1], hit[2]) if hit else None
    return (TOP[name], 0, 1) if name in TOP else None


def sai_layer(key: str) -> str | None:
    """The SAI module a LoRA layer name means (kohya's ``lora_unet_joint_blocks_0_x_block_attn_qkv``,
    ComfyUI's ``diffusion_model.joint_blocks.0.x_block.attn.qkv``), or None."""
    for prefix in ("model.diffusion_model.", "diffusion_model."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    if key.startswith("lora_unet_"):
        rest = key[len("lora_unet_") :]
        m = SAI_FLAT.match(rest)
        if m:
            return f"joint_blocks.{m.group(1)}.{m.group(2)}.{SAI_PARTS[m.group(3)]}"
        return TOP_FLAT.get(rest)
    if key.startswith("joint_blocks.") or key in TOP.values():
        return key
    return None


# --- the family ------------------------------------------------------------------------------------------------------


class SD3Family(FlowFamily):
    name = "sd3"
    label = "SD3.5"
    resolution = 1024
    settings = SD3Settings
    # Attention of both streams and the feed-forwards: between diffusers' script (the attention only) and
    # sd-scripts (every linear of the joint blocks, the modulations too). An attention target takes MMDiT-X's second
    # attention (3.5 Medium's attn2) with it (SD3Model.lora_targets), so one list fits Large and Medium.
    default_targets = (
        "attn.to_q",
        "attn.to_k",
        "attn.to_v",
        "attn.to_out.0",
        "attn.add_q_proj",
        "attn.add_k_proj",
        "attn.add_v_proj",
        "attn.to_add_out",
        "ff.net.0.proj",
        "ff.net.2",
        "ff_context.net.0.proj",
        "ff_context.net.2",
    )
    trainable_text_encoders = (False, False, False)  # CLIP-L, CLIP-G, T5 stay frozen (and cached)
    default_cfg = 4.5  # SD3.5 Medium's model card example (Large's uses 3.5; the pipeline's 7.0 is SD3's)
    # sd-scripts writes the size: ss_base_model_version "5-large", "5-medium" or "medium" (its MMDiT's model_type)
    # and modelspec.architecture "stable-diffusion-3-" + that; lorawb's values leave the size out.
    base_model_version = "sd3"
    modelspec_architecture = "stable-diffusion-3-5"
    lora_versions = ("sd3", "sd_3", "sd35", "sd3.5", "5-large", "5-medium")
    lora_architectures = ("stable-diffusion-v3", "stable-diffusion-3", "sd3")
    kohya_network = "networks.lora_sd3"  # sd-scripts' SD3 network
    transformer_class = "SD3Transformer2DModel"
    pipeline_class = "StableDiffusion3Pipeline"
    activation = ActivationModel(kept=1.0, live=24.0, full=22.0)  # Flux.1's joint-block estimate; not measured
    # The form's presets (Family.presets): sizes the memory plan (lorawb.train.memplan) fits on each card, with
    # its activation estimate; the GPU bench has not measured these families.
    presets = (
        Preset(
            "SD3.5 Large 16 GB",
            "1024 px, batch 2: fp8 base, latent + text caches (CLIP-L/G and T5 off the GPU), gradient checkpointing, bf16",
            CACHED_1024
            + (
                ("model.quantize", "fp8"),
                ("train.batch_size", 2),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", True),
                ("train.optimizer", "adamw"),
                ("train.offload_blocks", 0),
            ),
            gpu_gb=16,
        ),
        Preset(
            "SD3.5 Large 12 GB",
            "1024 px, batch 1: NF4 base (bitsandbytes), caches, gradient checkpointing, bf16, 8-bit AdamW",
            CACHED_1024
            + (
                ("model.quantize", "nf4"),
                ("train.batch_size", 1),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", True),
                ("train.optimizer", "adamw8bit"),
                ("train.offload_blocks", 0),
            ),
            gpu_gb=12,
        ),
    )
    model_class: type[SD3Model]

    def detect_keys(self, keys: list[str]) -> bool:
        bare = {k.split("diffusion_model.", 1)[-1] for k in keys}
        sai = "joint_blocks.0.x_block.attn.qkv.weight" in bare
        return sai or ("pos_embed.pos_embed" in bare and "transformer_blocks.0.attn.add_q_proj.weight" in bare)

    def detect_lora_keys(self, keys: list[str]) -> bool:
        return any("joint_blocks" in k for k in keys)

    def check_config(self, cfg: TrainConfig) -> None:
        super().check_config(cfg)
        if cfg.network.dora:
            raise ConfigError(
                f"network.dora: lorawb writes {self.label} LoRAs in peft's naming with alpha folded in, which has "
                "no place for DoRA's magnitudes",
                hint="set network.dora = false",
            )

    def load(self, cfg: ModelSection, path: Path, device: torch.device, dtype: torch.dtype, settings: Any) -> Any:
        from lorawb.families.flux import FluxFamily

        return FluxFamily.load(self, cfg, path, device, dtype, settings)  # type: ignore[arg-type]

    def meta_denoiser_from_file(self, path: Path, folder: Path) -> Any:
        from lorawb.families.flux import FluxFamily

        return FluxFamily.meta_denoiser_from_file(self, path, folder)  # type: ignore[arg-type]

    # --- single files (lorawb.families.flux.load_single_transformer asks these) ------------------------------------
    def original_layout(self, state: dict[str, Any]) -> bool:
        return "joint_blocks.0.x_block.attn.qkv.weight" in state

    def config_from_state(self, state: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        """SD3Transformer2DModel's config read off an SAI-layout state dict (``known``: the folder's transformer
        config, for the head width when the file has no q/k norms, and the sample size)."""
        import math

        from diffusers.loaders.single_file_utils import get_attn2_layers

        proj = state["x_embedder.proj.weight"]
        width, patch = int(proj.shape[0]), int(proj.shape[-1])
        norm = state.get("joint_blocks.0.x_block.attn.ln_q.weight")
        head = int(norm.shape[0]) if norm is not None else int(known.get("attention_head_dim", 64))
        if width % head:
            raise ModelError(
                f"this {self.label} transformer is {width} wide; heads of {head} do not divide it",
                hint=f"set model.config to the diffusers {self.label} folder of this model",
            )
        layers = len({k.split(".")[1] for k in state if k.startswith("joint_blocks.")})
        return {
            "sample_size": int(known.get("sample_size", 128)),
            "patch_size": patch,
            "in_channels": int(proj.shape[1]),
            "num_layers": layers,
            "attention_head_dim": head,
            "num_attention_heads": width // head,
            "joint_attention_dim": int(state["context_embedder.weight"].shape[1]),
            "caption_projection_dim": int(state["context_embedder.weight"].shape[0]),
            "pooled_projection_dim": int(state["y_embedder.mlp.0.weight"].shape[1]),
            "out_channels": int(state["final_layer.linear.weight"].shape[0]) // (patch * patch),
            "pos_embed_max_size": math.isqrt(int(state["pos_embed"].shape[1])),
            "dual_attention_layers": list(get_attn2_layers(state)),
            "qk_norm": "rms_norm" if norm is not None else None,
        }

    def from_original(self, state: dict[str, Any], parameters: list[str]) -> dict[str, Any]:
        from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

        return convert_sd3_transformer_checkpoint_to_diffusers(dict(state))

    def single_file_parts(self) -> tuple[str, ...]:
        return (*(sub for sub, _, _ in self.components()), "scheduler")

    def components(self) -> list[tuple[str, str, str]]:
        return [
            ("vae", "AutoencoderKL", "diffusers"),
            ("text_encoder", "CLIPTextModelWithProjection", "transformers"),
            ("tokenizer", "CLIPTokenizer", "transformers"),
            ("text_encoder_2", "CLIPTextModelWithProjection", "transformers"),
            ("tokenizer_2", "CLIPTokenizer", "transformers"),
            ("text_encoder_3", "T5EncoderModel", "transformers"),
            ("tokenizer_3", "T5TokenizerFast", "transformers"),
        ]


# --- the loaded model ------------------------------------------------------------------------------------------------


@dataclass
class SD3Model(FlowModel):
    """SD3.5: latents as the VAE gives them (the transformer patchifies), CLIP-L/G + T5 tokens, a pooled vector."""

    @property
    def size_step(self) -> int:
        return self.vae_scale * int(self.bare_denoiser.config.patch_size)

    @property
    def max_length(self) -> int:
        return int(getattr(self.settings, "max_sequence_length", 256))

    def image_seq_len(self, latents: torch.Tensor) -> int:
        return int((latents.shape[-2] // 2) * (latents.shape[-1] // 2))

    # --- memory ------------------------------------------------------------------------------------------------------
    def blocks(self) -> list[Any]:
        return list(self.bare_denoiser.transformer_blocks)

    def image_tokens(self, side: int) -> int:
        return (side // self.vae_scale // 2) ** 2

    def text_tokens(self) -> int:
        clip = int(self.tokenizers[0].model_max_length) if self.tokenizers else 77  # CLIP's 77 positions
        return clip + self.max_length

    # --- text ------------------------------------------------------------------------------------------------------
    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        clip_l, clip_g, t5 = self.tokenizers
        ids = [
            tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
            for tok in (clip_l, clip_g)
        ]
        long = t5(captions, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt")
        return [ids[0].input_ids, ids[1].input_ids, long.input_ids]

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        import torch

        from lorawb.families.sd import module_device

        clip_l, clip_g, t5 = self.text_encoders
        hidden, pooled = [], []
        for te, tokens in ((clip_l, ids[0]), (clip_g, ids[1])):
            out = te(tokens.to(module_device(te)), output_hidden_states=True)
            pooled.append(out[0])
            hidden.append(out.hidden_states[-2])
        long = t5(ids[2].to(module_device(t5)))[0]
        clip = torch.cat([h.to(long.device) for h in hidden], dim=-1)
        clip = torch.nn.functional.pad(clip, (0, long.shape[-1] - clip.shape[-1]))
        return TextCond(torch.cat([clip, long], dim=-2), torch.cat([p.to(long.device) for p in pooled], dim=-1))

    # --- the denoiser ------------------------------------------------------------------------------------------------
    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextCond, geometry: torch.Tensor) -> Any:
        dtype = self.dtype
        assert text.pooled is not None
        return self.denoiser(
            hidden_states=noisy.to(dtype),
            encoder_hidden_states=text.hidden.to(noisy.device, dtype),
            pooled_projections=text.pooled.to(noisy.device, dtype),
            timestep=(timesteps.float() * 1000).to(dtype),  # the pipeline passes the scheduler's σ·1000
            return_dict=False,
        )[0]

    # --- LoRA --------------------------------------------------------------------------------------------------------
    def lora_targets(self, net: NetworkSection) -> tuple[list[str], list[str]]:
        """The targets, with MMDiT-X's second attention where the first is a target, less the text queries of the
        blocks that are pre-only for the text (the last): the text tokens they would update are dropped, so those
        queries never reach the prediction."""
        linear, conv = super().lora_targets(net)
        blocks = self.bare_denoiser.transformer_blocks
        dead = {f"transformer_blocks.{i}.attn.add_q_proj" for i, b in enumerate(blocks) if b.context_pre_only}
        modules = dict(self.bare_denoiser.named_modules())
        both = getattr(self.settings, "train_attn2", True)
        second = [n.replace(".attn.", ".attn2.") for n in linear if ".attn." in n and both]
        extra = [n for n in second if n in modules and n not in linear]
        return [n for n in linear if n not in dead] + extra, conv

    def lora_tensors(
        self,
        denoiser: dict[str, LoraWeights],
        text_encoders: list[dict[str, LoraWeights]] | None,
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor]:
        """``transformer.<module>.lora_A/B.weight``, alpha/rank folded into B (diffusers' SD3 format, no ``.alpha``)."""
        from lorawb.families.flux import peft_state_dict
        from lorawb.train.kohya import LoraFile

        peft = peft_state_dict(LoraFile(Path(), denoiser, [], [], None, {}))
        return {k: v.to(dtype).contiguous() for k, v in peft.items()}

    def read_lora(self, path: Path, text_encoders: list[Any] | tuple = ()) -> LoraFile:
        """Any naming users bring (see the module's docstring) onto this transformer's modules."""
        from lorawb.families.flux import split_layers, swap_halves
        from lorawb.train.kohya import LoraFile, LoraWeights, parse_layers

        layers, metadata = parse_layers(path)
        renamed: dict[str, LoraWeights] = {}
        source: dict[str, str] = {}
        for key, w in layers.items():
            name = key
            for prefix in ("base_model.model.", "lycoris_"):
                if key.startswith(prefix):
                    rest = key[len(prefix) :]
                    name = "transformer." + rest if prefix.endswith(".") else "lora_transformer_" + rest
            renamed[name] = w
            source[name] = key
        denoiser, naming, used = split_layers(renamed, self.bare_denoiser, sai_module, sai_layer)
        if naming == "bfl":  # SAI's names: a pre-only block's context modulation has its halves swapped too
            naming = "sai"
            # a part of a fused q/k/v with no effect (lorawb leaves the pre-only block's text queries out)
            denoiser = {n: w for n, w in denoiser.items() if bool(w.up.any())}
            for i, block in enumerate(self.bare_denoiser.transformer_blocks):
                name = f"transformer_blocks.{i}.norm1_context.linear"
                if getattr(block, "context_pre_only", False) and name in denoiser:
                    w = denoiser[name]
                    denoiser[name] = LoraWeights(w.down, swap_halves(w.up), w.alpha, w.dora_scale)
        unmatched = sorted(set(layers) - {source[k] for k in used})
        return LoraFile(Path(path), denoiser, [{} for _ in text_encoders], unmatched, naming, metadata)

    # --- drawing -----------------------------------------------------------------------------------------------------
    def draw(self, pipe: Any, **kw: Any) -> list[Any]:
        kw.setdefault("max_sequence_length", self.max_length)
        return list(pipe(**kw).images)


SD3Family.model_class = SD3Model
