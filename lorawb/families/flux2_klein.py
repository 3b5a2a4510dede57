"""Flux.2 Klein (4B, 9B; base and distilled): Flux.2's transformer (double and single blocks, one
modulation shared by all blocks), the Qwen3 text encoder read at three hidden layers, the
32-channel Flux.2 VAE whose latents are patchified 2x2 and normalised by its BatchNorm's running
statistics, flow matching with true classifier-free guidance (base) or none (distilled).

Components come from diffusers (``Flux2Transformer2DModel``, ``AutoencoderKLFlux2``,
``Flux2KleinPipeline``) and transformers (Qwen3); nothing here is model code. What this module knows:

- **Files.** A diffusers folder (model_index.json names ``Flux2KleinPipeline``), or a single
  ``.safetensors`` transformer in the layout BFL and Comfy-Org ship (``double_blocks.0.img_attn.qkv``,
  ``double_stream_modulation_img.lin``; also with ComfyUI's ``model.diffusion_model.`` prefix) or in
  diffusers' names. Widths are read from the file; diffusers' own converter
  (``convert_flux2_transformer_checkpoint_to_diffusers``, no widths written in) renames the
  weights. The text encoder, VAE, tokenizer and scheduler come from ``model.config``'s folder.
- **Conditioning** as ``Flux2KleinPipeline`` builds it: the caption in Qwen3's chat template
  (no thinking), padded to ``max_sequence_length`` (512), Qwen3's hidden states 9, 18 and 27 side
  by side; the transformer gets no text mask (it attends to the padding too), so training and
  drawing use the same length. The encoder runs only up to layer 27 (the rest never reaches the
  transformer).
- **LoRA files** in musubi-tuner's and kohya's naming, BFL module paths: ``lora_unet_double_blocks_0_img_attn_qkv``
  with q/k/v fused exactly (as lorawb.families.flux does for Flux.1), ``lora_unet_single_blocks_0_linear1``.
  ComfyUI (its generic ``lora_unet_`` rule), diffusers' ``Flux2KleinPipeline.load_lora_weights``
  (``_convert_kohya_flux2_lora_to_diffusers``) and musubi-tuner load it as it is. Read back: that,
  ai-toolkit's and InvokeAI's ``diffusion_model.<BFL>`` peft form, diffusers' ``transformer.``
  names and OneTrainer's ``lora_transformer_``.
- **Training** (docs/training.md): σ by logit-normal, shifted by image size with Flux.1's constants
  (BFL's, as musubi-tuner's ``flux2_shift`` and OneTrainer use; diffusers' script leaves σ
  unshifted); target noise − x0; latents from the VAE's mode, as the pipeline and script take them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from lorawb.errors import ModelError
from lorawb.families.base import Helper, TextCond
from lorawb.families.flow import FlowSettings
from lorawb.families.flux import DOUBLE as FLUX_DOUBLE
from lorawb.families.flux import FluxFamily, FluxModel, bfl_key

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import ModelSection
    from lorawb.train.kohya import LoraFile

# The Qwen3 hidden states Flux2KleinPipeline conditions on (its text_encoder_out_layers default; the
# diffusers training script's own default [10, 20, 30] is Flux.2-dev's, diffusers issue #13445).
TEXT_LAYERS = (9, 18, 27)


class KleinSettings(FlowSettings):
    train_blocks: Literal["all", "double", "single"] = Field(
        "all", description="which transformer blocks get a LoRA (kohya's train_blocks)"
    )
    max_sequence_length: int = Field(
        512,
        ge=8,
        le=512,
        description="Qwen3 tokens per caption, padded (the pipeline's 512); the transformer sees the padding, "
        "so samples are drawn with the same length",
    )


# --- the BFL layout of Flux.2: diffusers module paths <-> the original names ----------------------------------------

DOUBLE = {
    **{k: v for k, v in FLUX_DOUBLE.items() if k.startswith("attn.")},  # Flux.1's attention, q/k/v fused
    "ff.linear_in": ("img_mlp.0", 0, 1),
    "ff.linear_out": ("img_mlp.2", 0, 1),
    "ff_context.linear_in": ("txt_mlp.0", 0, 1),
    "ff_context.linear_out": ("txt_mlp.2", 0, 1),
}
SINGLE = {"attn.to_qkv_mlp_proj": ("linear1", 0, 1), "attn.to_out": ("linear2", 0, 1)}
TOP = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
    "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
    "single_stream_modulation.linear": "single_stream_modulation.lin",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",  # halves swapped (flux.SWAPPED)
}
BLOCK_RE = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")
TOP_FLAT = {v.replace(".", "_"): v for v in TOP.values()}


def klein_module(name: str) -> tuple[str, int, int] | None:
    """A diffusers module's place in Flux.2's BFL layout: (BFL module, index in it, parts), or None."""
    m = BLOCK_RE.match(name)
    if m:
        kind, i, rest = m.groups()
        table, block = (DOUBLE, "double_blocks") if kind == "transformer_blocks" else (SINGLE, "single_blocks")
        hit = table.get(rest)
        return (f"{block}.{i}.{hit[0]}", hit[1], hit[2]) if hit else None
    return (TOP[name], 0, 1) if name in TOP else None


def klein_layer(key: str) -> str | None:
    """The BFL module a LoRA layer name means: Flux.1's block and top-level names (flux.bfl_key), and
    Flux.2's shared modulations (``lora_unet_double_stream_modulation_img_lin``)."""
    for prefix in ("lora_unet_", "diffusion_model.", "model.diffusion_model.", "transformer."):
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            if rest in TOP_FLAT:
                return TOP_FLAT[rest]
            if rest in TOP.values():
                return rest
    return bfl_key(key)


# --- the family ------------------------------------------------------------------------------------------------------


class KleinFamily(FluxFamily):
    name = "flux2_klein"
    label = "Flux.2 Klein"
    resolution = 1024
    settings = KleinSettings
    # Every linear of the double and single blocks, as musubi-tuner and ai-toolkit train; not the shared
    # modulations (no trainer adapts them; diffusers' converter has no names for them).
    default_targets = (*DOUBLE, *SINGLE)  # the single blocks' attn.to_out is a Linear; the double blocks' a list
    trainable_text_encoders = (False,)  # Qwen3 stays frozen (as every Klein trainer keeps it)
    default_cfg = 4.0  # Flux2KleinPipeline's default for the base model (distilled models ignore it)
    base_model_version = "flux_2_klein"  # musubi-tuner's flux_2_klein_4b / _9b start with it
    modelspec_architecture = "Flux.2-klein"
    lora_versions = ("flux_2_klein", "flux2_klein", "flux.2-klein", "flux-2-klein")
    lora_architectures = ("Flux.2-klein", "flux.2-klein", "flux-2-klein", "flux2-klein", "flux2_klein")
    kohya_network = "networks.lora_flux_2"  # musubi-tuner's Flux.2 network
    transformer_class = "Flux2Transformer2DModel"
    pipeline_class = "Flux2KleinPipeline"
    presets = ()  # Flux.1's name its cards and its 19 double blocks; Klein's await a GPU measurement
    helpers = ("edit",)  # Flux2KleinPipeline draws from reference images; no IP-Adapter or ControlNet for it

    def detect_folder(self, path: Path, index: dict[str, Any]) -> bool:
        from lorawb.train.modelpath import read_json

        if index.get("_class_name") == self.pipeline_class:
            return True
        transformer = read_json(path / "transformer" / "config.json").get("_class_name")
        encoder = read_json(path / "text_encoder" / "config.json").get("model_type")
        return transformer == self.transformer_class and encoder == "qwen3"  # Flux.2 dev has Mistral

    def detect_keys(self, keys: list[str]) -> bool:
        bare = {k.split("diffusion_model.", 1)[-1] for k in keys}
        return bool({"double_stream_modulation_img.lin.weight", "double_stream_modulation_img.linear.weight"} & bare)

    def config_from_state(self, state: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        """Flux2Transformer2DModel's config read off a BFL-layout state dict (``known``: the folder's
        transformer config, for the rope axes and theta the shapes cannot tell)."""
        width = int(state["img_in.weight"].shape[0])
        head = int(state["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0])
        count = lambda kind: len({k.split(".")[1] for k in state if k.startswith(kind + ".")})  # noqa: E731
        rope = known.get("axes_dims_rope") or ((32, 32, 32, 32) if head == 128 else None)
        if rope is None or sum(rope) != head:
            raise ModelError(
                f"this {self.label} transformer has {head}-wide heads; the rope axes of model.config's folder do not "
                "add up to that",
                hint=f"set model.config to the diffusers {self.label} folder of this model",
            )
        out_rows = int(state["final_layer.linear.weight"].shape[0])
        in_channels = int(state["img_in.weight"].shape[1])
        return {
            "patch_size": 1,
            "in_channels": in_channels,
            "out_channels": None if out_rows == in_channels else out_rows,
            "num_layers": count("double_blocks"),
            "num_single_layers": count("single_blocks"),
            "attention_head_dim": head,
            "num_attention_heads": width // head,
            "joint_attention_dim": int(state["txt_in.weight"].shape[1]),
            "timestep_guidance_channels": int(state["time_in.in_layer.weight"].shape[1]),
            "mlp_ratio": int(state["double_blocks.0.img_mlp.0.weight"].shape[0]) / 2 / width,  # SwiGLU: 2 halves
            "axes_dims_rope": list(rope),
            "rope_theta": known.get("rope_theta", 2000),
            "eps": known.get("eps", 1e-6),
            "guidance_embeds": "guidance_in.in_layer.weight" in state,
        }

    def from_original(self, state: dict[str, Any], parameters: list[str]) -> dict[str, Any]:
        from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers

        return convert_flux2_transformer_checkpoint_to_diffusers(dict(state))

    def components(self) -> list[tuple[str, str, str]]:
        # Qwen3Model: the hidden states without the language-model head (Qwen3-8B's is 1.2 GB unused).
        return [
            ("vae", "AutoencoderKLFlux2", "diffusers"),
            ("text_encoder", "Qwen3Model", "transformers"),
            ("tokenizer", "AutoTokenizer", "transformers"),
        ]

    def load(self, cfg: ModelSection, path: Path, device: torch.device, dtype: torch.dtype, settings: Any) -> Any:
        from lorawb.train.modelpath import read_json

        model = super().load(cfg, path, device, dtype, settings)
        (te,) = model.text_encoders
        width = 3 * int(te.config.hidden_size)
        wanted = int(model.bare_denoiser.config.joint_attention_dim)
        if width != wanted:
            raise ModelError(
                f"the text encoder gives {width} features per token (3 layers of {te.config.hidden_size}); this "
                f"transformer takes {wanted}",
                path=path,
                hint="model.config must be the diffusers folder of the same Klein (4B: Qwen3-4B, 9B: Qwen3-8B); "
                "Flux.2 dev is not supported",
            )
        # Layers after the last one read never reach the transformer: run none of them.
        keep = max(TEXT_LAYERS) + 1
        if te.config.num_hidden_layers > keep:
            te.config.num_hidden_layers = keep
            te.layers = te.layers[:keep]
        folder = path if path.is_dir() else Path(cfg.config).expanduser()
        model.distilled = bool(read_json(folder / "model_index.json").get("is_distilled", False))
        return model


# --- the loaded model ------------------------------------------------------------------------------------------------


@dataclass
class KleinModel(FluxModel):
    """Flux.2 Klein: latents in the VAE's layout (B, 32, h, w) in the loop, patchified and packed for the
    transformer; Qwen3's three layers as tokens; no pooled vector, no guidance embedding."""

    distilled: bool = False  # model_index.json's is_distilled: the pipeline then ignores the guidance scale

    @property
    def guidance_embeds(self) -> bool:
        return False

    @property
    def default_cfg(self) -> float:
        return 1.0 if self.distilled and "cfg" not in self.recommended else super().default_cfg  # no CFG, as BFL's

    @property
    def max_length(self) -> int:
        return int(getattr(self.settings, "max_sequence_length", 512))

    def text_tokens(self) -> int:
        return self.max_length  # the padded caption: the blocks attend over all of it

    # --- latents: the VAE's mode, normalised by its BatchNorm statistics in the patchified layout --------------------
    @property
    def samples_posterior(self) -> bool:
        return False  # latent_dist.mode(), as the pipeline and diffusers' script encode

    def bn_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        bn, eps = self.vae.bn, float(self.vae.config.batch_norm_eps)
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, torch.float32)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1).to(like.device, torch.float32) + eps)
        return mean, std

    def scale_latents(self, sample: torch.Tensor) -> torch.Tensor:
        from diffusers import Flux2KleinPipeline as P

        x = P._patchify_latents(sample.float())
        mean, std = self.bn_stats(x)
        return P._unpatchify_latents((x - mean) / std)

    # --- text ------------------------------------------------------------------------------------------------------
    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        """Each caption in Qwen3's chat template without thinking, padded (Flux2KleinPipeline._get_qwen3_prompt_embeds)."""
        (tok,) = self.tokenizers
        texts = [
            tok.apply_chat_template(
                [{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True, enable_thinking=False
            )
            for c in captions
        ]
        out = tok(texts, return_tensors="pt", padding="max_length", truncation=True, max_length=self.max_length)
        return [out.input_ids, out.attention_mask]

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        import torch

        from lorawb.families.sd import module_device

        (te,) = self.text_encoders
        device = module_device(te)
        out = te(
            input_ids=ids[0].to(device), attention_mask=ids[1].to(device), output_hidden_states=True, use_cache=False
        )
        stacked = torch.stack([out.hidden_states[k] for k in TEXT_LAYERS], dim=1)  # (B, 3, L, D)
        b, n, length, d = stacked.shape
        return TextCond(stacked.permute(0, 2, 1, 3).reshape(b, length, n * d))

    # --- the denoiser ------------------------------------------------------------------------------------------------
    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextCond, geometry: torch.Tensor) -> Any:
        from diffusers import Flux2KleinPipeline as P

        dtype, b = self.dtype, noisy.shape[0]
        x = P._patchify_latents(noisy.to(dtype))  # (B, 4C, h/2, w/2)
        c, h, w = x.shape[1:]
        hidden = text.hidden.to(noisy.device, dtype)
        out = self.denoiser(
            hidden_states=P._pack_latents(x),
            encoder_hidden_states=hidden,
            timestep=timesteps.to(dtype),
            img_ids=P._prepare_latent_ids(x).to(noisy.device),
            txt_ids=P._prepare_text_ids(hidden).to(noisy.device),
            guidance=None,
            return_dict=False,
        )[0]
        # _pack_latents' inverse (the image ids are in raster order, as _unpack_latents_with_ids scatters them)
        return P._unpatchify_latents(out.transpose(1, 2).reshape(b, c, h, w))

    def initial_noise(self, seed: int, width: int, height: int) -> torch.Tensor:
        """The VAE-layout noise of one image, patchified: the (B, 4C, h/2, w/2) the pipeline's ``latents=`` takes."""
        from diffusers import Flux2KleinPipeline as P

        from lorawb.families.base import Model

        return P._patchify_latents(Model.initial_noise(self, seed, width, height))

    # --- LoRA --------------------------------------------------------------------------------------------------------
    def bfl_place(self, name: str) -> tuple[str, int, int] | None:
        return klein_module(name)

    def bfl_layer(self, key: str) -> str | None:
        return klein_layer(key)

    def read_lora(self, path: Path, text_encoders: list[Any] | tuple = ()) -> LoraFile:
        return super().read_lora(path, ())  # Qwen3 gets no LoRA: every layer is the transformer's

    # --- drawing -----------------------------------------------------------------------------------------------------
    def pipeline_extra(self) -> dict[str, Any]:
        return {"is_distilled": self.distilled}

    def draw(self, pipe: Any, **kw: Any) -> list[Any]:
        """Flux2KleinPipeline with lorawb's embeddings of the prompts and negative prompts (the pipeline itself
        takes no negative prompt text: it guides against "")."""
        import torch

        prompts = kw.pop("prompt")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        negatives = kw.pop("negative_prompt", None)
        negatives = [negatives] * len(prompts) if isinstance(negatives, str) else list(negatives or [""] * len(prompts))
        device = next(pipe.transformer.parameters()).device
        with torch.no_grad():
            cond = self.encode_text(self.tokenize(prompts)).hidden.to(device)
            uncond = self.encode_text(self.tokenize([n or "" for n in negatives])).hidden.to(device)
        kw.setdefault("max_sequence_length", self.max_length)
        return list(pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, **kw).images)

    # --- variation helpers: Flux.2's multi-reference editing (the pipeline's own ``image``) -------------------
    def edit_pipeline(self, pipe: Any, helper: Helper) -> Any:
        return pipe  # the same pipeline: reference images are one of its inputs

    def helper_inputs(self, pipe: Any, helper: Helper, image: Any, width: int, height: int) -> dict[str, Any]:
        if helper.kind != "edit":
            return super().helper_inputs(pipe, helper, image, width, height)
        if min(image.size) < 64:  # the pipeline refuses smaller references
            raise ModelError(
                f"a {image.size[0]}x{image.size[1]} reference is too small for {self.spec.label}",
                hint="reference images for Flux.2 editing need at least 64 px on each side",
            )
        return {"image": [image]}


KleinFamily.model_class = KleinModel
