"""Qwen-Image: a 20B MMDiT (dual-stream blocks, no single-stream ones), the Qwen2.5-VL text encoder's last
hidden layer behind a fixed prompt template, Qwen-Image's own VAE (a one-frame video VAE whose 16 latent
channels are normalised by per-channel means and deviations), 2x2-packed latents, flow matching with
true classifier-free guidance.

Components come from diffusers (``QwenImageTransformer2DModel``, ``AutoencoderKLQwenImage``,
``QwenImagePipeline``) and transformers (``Qwen2_5_VLForConditionalGeneration``); nothing here is model
code. What this module knows:

- **Files.** A diffusers folder, or a single ``.safetensors`` transformer as Comfy-Org ships it
  (``split_files/diffusion_models/qwen_image_bf16.safetensors``: diffusers' own module names, also with
  ComfyUI's ``model.diffusion_model.`` prefix). Widths are read from the file; the text encoder, VAE,
  tokenizer and scheduler come from ``model.config``'s folder. Loading is Flux.1's
  (lorawb.families.flux.load_parts).
- **Conditioning** as ``QwenImagePipeline._get_qwen_prompt_embeds`` builds it: the caption inside the
  pipeline's ``prompt_template_encode``, Qwen2.5-VL's last hidden layer, the template's first
  ``prompt_template_encode_start_idx`` tokens dropped, the padding masked (the transformer takes the mask).
- **LoRA files** in diffusers' module names under ComfyUI's ``diffusion_model.`` prefix, peft's
  ``lora_A``/``lora_B`` with alpha/rank folded into ``lora_B`` (``diffusion_model.transformer_blocks.0.attn.to_q.lora_A.weight``):
  ai-toolkit's format; ComfyUI (its ``QwenImage`` key map: ComfyUI's model has diffusers' names) and
  diffusers' ``QwenImagePipeline.load_lora_weights`` (``_convert_non_diffusers_qwen_lora_to_diffusers``)
  load it as it is. Read back: that, musubi-tuner's ``lora_unet_transformer_blocks_0_attn_to_q``,
  diffusers' ``transformer.``, SimpleTuner's ``lycoris_``, OneTrainer's ``lora_transformer_`` and the bare names.
- **Training** (docs/training.md): σ uniform with a static shift of 2.2 (musubi-tuner's documented
  recipe), target noise − x0, latents sampled from the VAE's posterior and normalised as diffusers' script does.
"""

from __future__ import annotations

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


class QwenImageSettings(FlowSettings):
    weighting_scheme: Literal["none", "logit_normal", "mode", "sigma_sqrt", "cosmap"] = Field(
        "none",
        description="how timesteps are drawn (none: uniform, as musubi-tuner's Qwen-Image recipe) or the loss weighted",
    )
    shift: float | Literal["auto"] = Field(
        2.2,
        description="timestep shift: a number = a static shift (2.2: musubi-tuner's recipe; about what the pipeline "
        "samples with at 1328 px); auto = by the image's size, as the pipeline; 1 = none",
    )
    max_sequence_length: int = Field(
        512, ge=8, le=1024, description="Qwen2.5-VL tokens per caption at most, after the template (the pipeline's 512)"
    )


# --- LoRA names: ComfyUI's Qwen-Image model has diffusers' module names -----------------------------------------------

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.", "base_model.model.")
FLAT_PREFIXES = ("lora_unet_", "lycoris_", "lora_transformer_")


def place_diffusers_name(key: str, modules: set[str], flat: dict[str, str]) -> tuple[str | None, str]:
    """A LoRA file's layer name as one of ``modules`` (diffusers' names, any prefix, or flattened with
    underscores after kohya's, SimpleTuner's or OneTrainer's prefix): (module or None, the naming)."""
    for prefix in PREFIXES:
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            return (rest if rest in modules else None), "diffusers"
    for prefix in FLAT_PREFIXES:
        if key.startswith(prefix):
            return flat.get(key[len(prefix) :]), "kohya"
    return (key if key in modules else None), "diffusers"


def read_diffusers_named(path: Path, denoiser: Any, text_encoders: int = 0) -> LoraFile:
    """A LoRA file whose layers are named by the transformer's diffusers modules (any of the spellings
    ``place_diffusers_name`` reads) onto that transformer."""
    from lorawb.train.kohya import LoraFile, layer_modules, parse_layers

    layers, metadata = parse_layers(path)
    modules = set(layer_modules(denoiser))
    flat = {m.replace(".", "_"): m for m in modules}
    out: dict[str, LoraWeights] = {}
    unmatched: list[str] = []
    naming: str | None = None
    for key, w in sorted(layers.items()):
        module, how = place_diffusers_name(key, modules, flat)
        if module is None:
            unmatched.append(key)
            continue
        out[module] = w
        naming = naming or how
    return LoraFile(Path(path), out, [{} for _ in range(text_encoders)], unmatched, naming, metadata)


def comfy_peft_tensors(denoiser: dict[str, LoraWeights], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``diffusion_model.<module>.lora_A/B.weight``, alpha/rank folded into B (no ``.alpha``)."""
    from lorawb.families.flux import peft_state_dict
    from lorawb.train.kohya import LoraFile

    peft = peft_state_dict(LoraFile(Path(), denoiser, [], [], None, {}))
    return {"diffusion_model." + k.removeprefix("transformer."): v.to(dtype).contiguous() for k, v in peft.items()}


# --- the family ------------------------------------------------------------------------------------------------------


class QwenImageFamily(FlowFamily):
    name = "qwenimage"
    label = "Qwen-Image"
    resolution = 1024  # QwenImagePipeline's default size (default_sample_size 128 x the VAE's 8)
    settings = QwenImageSettings
    # Every linear of the blocks but the modulations: musubi-tuner's choice (its lora_qwen_image.py excludes "_mod_").
    default_targets = (
        "attn.to_q",
        "attn.to_k",
        "attn.to_v",
        "attn.to_out.0",
        "attn.add_q_proj",
        "attn.add_k_proj",
        "attn.add_v_proj",
        "attn.to_add_out",
        "img_mlp.net.0.proj",
        "img_mlp.net.2",
        "txt_mlp.net.0.proj",
        "txt_mlp.net.2",
    )
    trainable_text_encoders = (False,)  # Qwen2.5-VL 7B stays frozen, as every Qwen-Image trainer keeps it
    default_cfg = 4.0  # QwenImagePipeline's true_cfg_scale
    base_model_version = "qwen_image"  # musubi-tuner's architecture name
    modelspec_architecture = "Qwen-Image"
    lora_versions = ("qwen_image", "qwen-image", "qwenimage")
    lora_architectures = ("Qwen-Image", "qwen-image", "qwen_image", "qwenimage")
    kohya_network = "networks.lora_qwen_image"  # musubi-tuner's Qwen-Image network
    transformer_class = "QwenImageTransformer2DModel"
    pipeline_class = "QwenImagePipeline"
    # Per block, per element of (batch x image+text tokens x width): Flux.1's double-block estimate (the same
    # dual-stream layout); estimates until bench/gpu_session.sh measures them.
    activation = ActivationModel(kept=1.0, live=24.0, full=22.0)
    # The form's presets (Family.presets): sizes the memory plan (lorawb.train.memplan) fits on each card, with
    # its activation estimate; the GPU bench has not measured these families.
    presets = (
        Preset(
            "Qwen-Image 24 GB",
            "1024 px, batch 1: NF4 base (20B, bitsandbytes), latent + text caches (Qwen2.5-VL off the GPU but for samples), gradient checkpointing, bf16, 8-bit AdamW",
            CACHED_1024
            + (
                ("model.quantize", "nf4"),
                ("train.batch_size", 1),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", True),
                ("train.optimizer", "adamw8bit"),
                ("train.offload_blocks", 0),
            ),
            gpu_gb=24,
        ),
        Preset(
            "Qwen-Image 16 GB",
            "1024 px, batch 1: fp8 base with 50 of its 60 blocks in CPU memory (slow), caches, gradient checkpointing, "
            "bf16, 8-bit AdamW",
            CACHED_1024
            + (
                ("model.quantize", "fp8"),
                ("train.batch_size", 1),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", True),
                ("train.optimizer", "adamw8bit"),
                ("train.offload_blocks", 50),
            ),
            gpu_gb=16,
        ),
    )
    model_class: type[QwenImageModel]

    def detect_keys(self, keys: list[str]) -> bool:
        bare = {k.split("diffusion_model.", 1)[-1] for k in keys}
        return "txt_norm.weight" in bare and "transformer_blocks.0.img_mod.1.weight" in bare

    def detect_lora_keys(self, keys: list[str]) -> bool:
        return any(("img_mlp" in k or "txt_mlp" in k) and "transformer_blocks" in k for k in keys)

    def latent_step(self, path: Path) -> int:
        return vae_scale_of_qwen(path) * 2  # whole 2x2 patches of latents

    def check_config(self, cfg: TrainConfig) -> None:
        super().check_config(cfg)
        if cfg.network.dora:
            raise ConfigError(
                f"network.dora: lorawb writes {self.label} LoRAs in peft's naming with alpha folded in, which has "
                "no place for DoRA's magnitudes that ComfyUI reads",
                hint="set network.dora = false",
            )

    def load(self, cfg: ModelSection, path: Path, device: torch.device, dtype: torch.dtype, settings: Any) -> Any:
        from lorawb.families.flux import FluxFamily

        model = FluxFamily.load(self, cfg, path, device, dtype, settings)  # type: ignore[arg-type]
        rebuild_rope(model.bare_denoiser)
        return model

    def meta_denoiser_from_file(self, path: Path, folder: Path) -> Any:
        from lorawb.families.flux import FluxFamily

        return FluxFamily.meta_denoiser_from_file(self, path, folder)  # type: ignore[arg-type]

    # --- single files (lorawb.families.flux.load_single_transformer asks these) ------------------------------------
    def original_layout(self, state: dict[str, Any]) -> bool:
        return True  # Comfy-Org's files have diffusers' names; the widths are read off them all the same

    def config_from_state(self, state: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        """QwenImageTransformer2DModel's config read off a single file's shapes (``known``: the folder's
        transformer config, for the rope axes and the patch size the shapes cannot tell apart)."""
        if "img_in.weight" not in state or "transformer_blocks.0.attn.norm_q.weight" not in state:
            raise ModelError(f"this file is not a {self.label} transformer (no img_in / q-norm weights)")
        width = int(state["img_in.weight"].shape[0])
        head = int(state["transformer_blocks.0.attn.norm_q.weight"].shape[0])
        patch = int(known.get("patch_size", 2))
        rope = known.get("axes_dims_rope") or ((16, 56, 56) if head == 128 else None)
        if rope is None or sum(rope) != head:
            raise ModelError(
                f"this {self.label} transformer has {head}-wide heads; the rope axes of model.config's folder do not "
                "add up to that",
                hint=f"set model.config to the diffusers {self.label} folder of this model",
            )
        count = len({k.split(".")[1] for k in state if k.startswith("transformer_blocks.")})
        config = {
            "patch_size": patch,
            "in_channels": int(state["img_in.weight"].shape[1]),
            "out_channels": int(state["proj_out.weight"].shape[0]) // (patch * patch),
            "num_layers": count,
            "attention_head_dim": head,
            "num_attention_heads": width // head,
            "joint_attention_dim": int(state["txt_in.weight"].shape[1]),
            "guidance_embeds": False,
            "axes_dims_rope": list(rope),
        }
        for key in ("zero_cond_t", "use_additional_t_cond", "use_layer3d_rope"):  # the Edit and Layered variants
            if key in known:
                config[key] = known[key]
        return config

    def from_original(self, state: dict[str, Any], parameters: list[str]) -> dict[str, Any]:
        return dict(state)

    def single_file_parts(self) -> tuple[str, ...]:
        return (*(sub for sub, _, _ in self.components()), "scheduler")

    def components(self) -> list[tuple[str, str, str]]:
        return [
            ("vae", "AutoencoderKLQwenImage", "diffusers"),
            ("text_encoder", "Qwen2_5_VLForConditionalGeneration", "transformers"),
            ("tokenizer", "Qwen2Tokenizer", "transformers"),
        ]


def vae_scale_of_qwen(path: Path) -> int:
    """Qwen-Image's VAE scale: 2 ** len(temperal_downsample), as QwenImagePipeline computes it (8 unknown)."""
    from lorawb.train.modelpath import read_json

    vae = read_json(Path(path) / "vae" / "config.json") if Path(path).is_dir() else {}
    down = vae.get("temperal_downsample")
    return 2 ** len(down) if isinstance(down, list) and down else 8


def rebuild_rope(transformer: Any) -> None:
    """The rotary tables of a transformer built on the meta device (a single file): QwenEmbedRope keeps them as
    plain tensors, which loading weights does not fill; built again on the CPU as the model's __init__ builds them."""
    import torch

    rope = transformer.pos_embed
    if not getattr(rope, "pos_freqs", torch.zeros(0)).is_meta:
        return
    with torch.device("cpu"):
        transformer.pos_embed = type(rope)(
            theta=10000, axes_dim=list(transformer.config.axes_dims_rope), scale_rope=True
        )


def prompt_template() -> tuple[str, int]:
    """(the template a caption is put in, how many of its leading tokens are dropped), read off the pipeline."""
    from diffusers import QwenImagePipeline

    pipe = QwenImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=None)
    return pipe.prompt_template_encode, int(pipe.prompt_template_encode_start_idx)


# --- the loaded model ------------------------------------------------------------------------------------------------


@dataclass
class QwenImageModel(FlowModel):
    """Qwen-Image: latents in the VAE's layout (B, 16, h, w) in the loop, packed 2x2 for the transformer;
    Qwen2.5-VL's last layer as tokens with their mask; no pooled vector."""

    @property
    def vae_scale(self) -> int:
        return 2 ** len(self.vae.temperal_downsample)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def size_step(self) -> int:
        return self.vae_scale * 2

    @property
    def max_length(self) -> int:
        return int(getattr(self.settings, "max_sequence_length", 512))

    def image_seq_len(self, latents: torch.Tensor) -> int:
        return int((latents.shape[-2] // 2) * (latents.shape[-1] // 2))

    # --- memory ------------------------------------------------------------------------------------------------------
    def blocks(self) -> list[Any]:
        return list(self.bare_denoiser.transformer_blocks)

    def image_tokens(self, side: int) -> int:
        return (side // self.vae_scale // 2) ** 2

    def text_tokens(self) -> int:
        return self.max_length  # at most: the batch's longest caption

    # --- latents: one frame of the video VAE, normalised per channel ---------------------------------------------------
    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vae = self.vae
        dist = vae.encode(pixels.to(vae.device, vae.dtype).unsqueeze(2)).latent_dist  # (B, 3, 1, H, W)
        return dist.mean[:, :, 0], dist.std[:, :, 0]

    def latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        c = self.vae.config
        mean = torch.tensor(c.latents_mean, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(c.latents_std, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def scale_latents(self, sample: torch.Tensor) -> torch.Tensor:
        mean, std = self.latent_stats(sample)
        return (sample.float() - mean) / std

    # --- text ------------------------------------------------------------------------------------------------------
    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        """Each caption in the pipeline's template, padded to the template's dropped prefix + max_sequence_length."""
        (tok,) = self.tokenizers
        template, drop = prompt_template()
        out = tok(
            [template.format(c) for c in captions],
            padding="max_length",
            max_length=self.max_length + drop,
            truncation=True,
            return_tensors="pt",
        )
        return [out.input_ids, out.attention_mask]

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        from lorawb.families.sd import module_device

        (te,) = self.text_encoders
        _, drop = prompt_template()
        device = module_device(te)
        mask = ids[1].to(device)
        # The language model without its head: the same hidden states, without logits over 152k tokens per position
        body = getattr(te, "model", te)
        hidden = body(input_ids=ids[0].to(device), attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        mask = mask[:, drop:].bool()
        hidden = hidden[:, drop:] * mask.unsqueeze(-1).to(hidden.dtype)  # the padding as zeros, as the pipeline pads
        return TextCond(hidden, None, mask)

    @staticmethod
    def trimmed(text: TextCond, device: Any, dtype: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's text up to its longest caption, and its mask (None when every token counts, as the pipeline)."""
        assert text.mask is not None
        mask = text.mask.to(device)
        n = max(int(mask.sum(dim=1).max()), 1)
        hidden, mask = text.hidden[:, :n].to(device, dtype), mask[:, :n]
        return hidden, (None if bool(mask.all()) else mask)

    # --- the denoiser ------------------------------------------------------------------------------------------------
    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        from diffusers import QwenImagePipeline

        b, c, h, w = latents.shape
        return QwenImagePipeline._pack_latents(latents, b, c, h, w)

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextCond, geometry: torch.Tensor) -> Any:
        from diffusers import QwenImagePipeline

        dtype, (b, _, h, w) = self.dtype, noisy.shape
        hidden, mask = self.trimmed(text, noisy.device, dtype)
        out = self.denoiser(
            hidden_states=self.pack(noisy.to(dtype)),
            timestep=timesteps.to(dtype),  # the pipeline passes t / 1000 = σ
            encoder_hidden_states=hidden,
            encoder_hidden_states_mask=mask,
            img_shapes=[[(1, h // 2, w // 2)]] * b,
            return_dict=False,
        )[0]
        s = self.vae_scale
        return QwenImagePipeline._unpack_latents(out, h * s, w * s, s)[:, :, 0]

    def initial_noise(self, seed: int, width: int, height: int) -> torch.Tensor:
        """The VAE-layout noise of one image, packed: the (1, h/2·w/2, 4C) the pipeline's ``latents=`` takes."""
        return self.pack(super().initial_noise(seed, width, height))

    # --- LoRA --------------------------------------------------------------------------------------------------------
    def lora_targets(self, net: NetworkSection) -> tuple[list[str], list[str]]:
        """The default targets less the last block's text-only layers: the transformer returns the image tokens
        only, so the last block's text queries, text output and text MLP never reach the prediction."""
        linear, conv = super().lora_targets(net)
        last = f"transformer_blocks.{len(self.bare_denoiser.transformer_blocks) - 1}."
        dead = tuple(last + m for m in ("attn.add_q_proj", "attn.to_add_out", "txt_mlp.", "txt_mod."))
        return [n for n in linear if not n.startswith(dead)], conv

    def lora_tensors(
        self,
        denoiser: dict[str, LoraWeights],
        text_encoders: list[dict[str, LoraWeights]] | None,
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor]:
        return comfy_peft_tensors(denoiser, dtype)

    def read_lora(self, path: Path, text_encoders: list[Any] | tuple = ()) -> LoraFile:
        return read_diffusers_named(path, self.bare_denoiser, len(text_encoders))

    # --- drawing -----------------------------------------------------------------------------------------------------
    def draw(self, pipe: Any, **kw: Any) -> list[Any]:
        """The guidance is QwenImagePipeline's ``true_cfg_scale`` (its ``guidance_scale`` is for guidance-distilled
        models); above 1 it guides against the negative prompt, " " when there is none (its docstring: even " " turns
        the guidance on)."""
        cfg = float(kw.pop("guidance_scale", self.default_cfg))
        prompts = kw["prompt"]
        n = 1 if isinstance(prompts, str) else len(prompts)
        negatives = kw.pop("negative_prompt", None)
        negatives = [negatives] * n if isinstance(negatives, str) or negatives is None else list(negatives)
        if cfg > 1:
            kw["negative_prompt"] = [neg or " " for neg in negatives]
        kw.setdefault("max_sequence_length", self.max_length)
        return list(pipe(true_cfg_scale=cfg, **kw).images)


QwenImageFamily.model_class = QwenImageModel
