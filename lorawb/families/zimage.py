"""Z-Image (Turbo and Base): a single-stream DiT with noise and context refiner blocks, the Qwen3 text
encoder's second-to-last hidden layer (each caption cut to its own tokens), Flux.1's 16-channel VAE,
flow matching with the timestep given as 1 − σ and the prediction negated.

Components come from diffusers (``ZImageTransformer2DModel``, ``ZImagePipeline``) and transformers
(Qwen3); nothing here is model code. What this module knows:

- **Files.** A diffusers folder, or a single ``.safetensors`` transformer in the layout Comfy-Org
  ships (``layers.0.attention.qkv``, ``final_layer``, ``x_embedder``; also with
  ``model.diffusion_model.``) or in diffusers' names. Widths are read from the file; diffusers' own
  converter (``convert_z_image_transformer_checkpoint_to_diffusers``) renames the weights. The text
  encoder, VAE, tokenizer and scheduler come from ``model.config``'s folder. Loading is Flux.1's
  (lorawb.families.flux.load_parts), so what that loader learns (quantised bases) applies here.
- **Conditioning** as ``ZImagePipeline._encode_prompt`` builds it: the caption in Qwen3's chat
  template (thinking on: no think block), ``hidden_states[-2]``, the caption's own tokens only
  (padding is cut off before the transformer, which pads with its learned token).
- **LoRA files** in diffusers' module names under ComfyUI's ``diffusion_model.`` prefix, peft's
  ``lora_A``/``lora_B`` with alpha/rank folded into ``lora_B`` and no ``.alpha`` tensors
  (``diffusion_model.layers.0.attention.to_q.lora_A.weight``): ai-toolkit's own format; ComfyUI (its
  Z-Image key map), diffusers' ``ZImagePipeline.load_lora_weights`` and InvokeAI load it as it is.
  Read back: that, musubi-tuner's ``lora_unet_layers_0_attention_to_q``, ComfyUI's fused
  ``attention.qkv`` (split exactly), diffusers' ``transformer.``, SimpleTuner's ``lycoris_`` and
  OneTrainer's ``lora_transformer_`` names.
- **Training** (docs/training.md): σ by logit-normal with a static shift of 2 (musubi-tuner's
  recommendation; Tongyi has published no training recipe), target noise − x0 against the negated
  prediction (as the pipeline and diffusers' script negate it), latents from the VAE's mode.
  Train on Z-Image Base: Turbo is step-distilled and a LoRA trained on it undoes the distillation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from lorawb.errors import ConfigError, ModelError
from lorawb.families.base import TextCond
from lorawb.families.flow import FlowFamily, FlowModel, FlowSettings

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import ModelSection, NetworkSection, TrainConfig
    from lorawb.train.kohya import LoraFile, LoraWeights


class ZImageSettings(FlowSettings):
    shift: float | Literal["auto"] = Field(
        2.0,
        description="timestep shift: a number = a static shift (2: musubi-tuner's recommendation; the pipeline samples "
        "at 3); auto = by the image's size; 1 = none",
    )
    train_refiners: bool = Field(
        False,
        description="also give the noise and context refiner blocks a LoRA (diffusers' script does; musubi-tuner and "
        "ai-toolkit train the main layers only)",
    )
    max_sequence_length: int = Field(
        512, ge=8, le=1024, description="Qwen3 tokens per caption at most (the pipeline's 512)"
    )


# --- ComfyUI's layout of Z-Image: q/k/v fused, its own names for the output and the patch layers ----------------------

COMFY_QKV = re.compile(r"^((?:layers|noise_refiner|context_refiner)\.\d+)\.attention\.to_([qkv])$")
COMFY_RENAMES = (
    (re.compile(r"^((?:layers|noise_refiner|context_refiner)\.\d+\.attention)\.to_out\.0$"), r"\1.out"),
    (re.compile(r"^all_final_layer\.2-1\.(.+)$"), r"final_layer.\1"),
    (re.compile(r"^all_x_embedder\.2-1$"), "x_embedder"),
)
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.", "base_model.model.")
FLAT_PREFIXES = ("lora_unet_", "lycoris_", "lora_transformer_")


def comfy_module(name: str) -> tuple[str, int, int]:
    """A diffusers module's place in ComfyUI's Z-Image layout (its z_image_to_diffusers map, read in
    comfy/utils.py): (ComfyUI module, index in it, parts)."""
    m = COMFY_QKV.match(name)
    if m:
        return f"{m.group(1)}.attention.qkv", "qkv".index(m.group(2)), 3
    for pattern, to in COMFY_RENAMES:
        if pattern.match(name):
            return pattern.sub(to, name), 0, 1
    return name, 0, 1


# --- the family ------------------------------------------------------------------------------------------------------


class ZImageFamily(FlowFamily):
    name = "zimage"
    label = "Z-Image"
    resolution = 1024
    settings = ZImageSettings
    # The main layers' attention and feed-forward, as musubi-tuner trains them (lora_targets keeps
    # the refiner blocks out unless [zimage] train_refiners).
    default_targets = (
        "attention.to_q",
        "attention.to_k",
        "attention.to_v",
        "attention.to_out.0",
        "feed_forward.w1",
        "feed_forward.w2",
        "feed_forward.w3",
    )
    trainable_text_encoders = (False,)
    default_cfg = 4.0  # ZImagePipeline's guidance_scale (its CFG is pos + s·(pos − neg)): Base; Turbo wants 0
    base_model_version = "z_image"  # musubi-tuner's architecture name
    modelspec_architecture = "Z-Image"
    lora_versions = ("z_image", "zimage", "z-image")
    lora_architectures = ("Z-Image", "z-image", "z_image", "zimage")
    kohya_network = "networks.lora_zimage"  # musubi-tuner's Z-Image network
    transformer_class = "ZImageTransformer2DModel"
    pipeline_class = "ZImagePipeline"
    model_class: type[ZImageModel]

    def detect_keys(self, keys: list[str]) -> bool:
        bare = {k.split("diffusion_model.", 1)[-1] for k in keys}
        refiner = (
            "context_refiner.0.attention.norm_q.weight" in bare or "context_refiner.0.attention.q_norm.weight" in bare
        )
        return refiner and "cap_pad_token" in bare

    def detect_lora_keys(self, keys: list[str]) -> bool:
        return any(
            re.search(r"(^|[._])(noise_refiner|context_refiner|layers)[._]\d+[._](attention|feed_forward)", k)
            for k in keys
        )

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

        return FluxFamily.load(self, cfg, path, device, dtype, settings)  # type: ignore[arg-type]

    def meta_denoiser_from_file(self, path: Path, folder: Path) -> Any:
        from lorawb.families.flux import FluxFamily

        return FluxFamily.meta_denoiser_from_file(self, path, folder)  # type: ignore[arg-type]

    # --- single files (lorawb.families.flux.load_single_transformer asks these) ------------------------------------
    def original_layout(self, state: dict[str, Any]) -> bool:
        return "x_embedder.weight" in state or "layers.0.attention.qkv.weight" in state

    def config_from_state(self, state: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        """ZImageTransformer2DModel's config read off a ComfyUI-layout state dict (``known``: the folder's
        transformer config, for the rope axes the shapes cannot tell)."""
        dim = int(state["x_embedder.weight"].shape[0])
        head = int(state["layers.0.attention.q_norm.weight"].shape[0])
        qkv = int(state["layers.0.attention.qkv.weight"].shape[0])
        count = lambda kind: len({k.split(".")[1] for k in state if k.startswith(kind + ".")})  # noqa: E731
        axes = known.get("axes_dims") or ([32, 48, 48] if head == 128 else None)
        if axes is None or sum(axes) != head:
            raise ModelError(
                f"this {self.label} transformer has {head}-wide heads; the rope axes of model.config's folder do not "
                "add up to that",
                hint=f"set model.config to the diffusers {self.label} folder of this model",
            )
        if qkv != 3 * dim:
            raise ModelError(f"this {self.label} transformer's attention has fewer key/value heads than queries")
        return {
            "all_patch_size": [2],  # ComfyUI's x_embedder / final_layer are diffusers' "2-1" patch layers
            "all_f_patch_size": [1],
            "in_channels": int(state["x_embedder.weight"].shape[1]) // 4,
            "dim": dim,
            "n_layers": count("layers"),
            "n_refiner_layers": count("noise_refiner"),
            "n_heads": dim // head,
            "n_kv_heads": dim // head,
            "norm_eps": known.get("norm_eps", 1e-5),
            "qk_norm": True,
            "cap_feat_dim": int(state["cap_embedder.1.weight"].shape[1]),
            "rope_theta": known.get("rope_theta", 256.0),
            "t_scale": known.get("t_scale", 1000.0),
            "axes_dims": list(axes),
            "axes_lens": known.get("axes_lens") or [1536, 512, 512],  # ComfyUI's and musubi-tuner's
        }

    def from_original(self, state: dict[str, Any], parameters: list[str]) -> dict[str, Any]:
        from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

        return convert_z_image_transformer_checkpoint_to_diffusers(dict(state))

    def single_file_parts(self) -> tuple[str, ...]:
        return (*(sub for sub, _, _ in self.components()), "scheduler")

    def components(self) -> list[tuple[str, str, str]]:
        return [
            ("vae", "AutoencoderKL", "diffusers"),
            ("text_encoder", "Qwen3Model", "transformers"),
            ("tokenizer", "AutoTokenizer", "transformers"),
        ]


# --- the loaded model ------------------------------------------------------------------------------------------------


@dataclass
class ZImageModel(FlowModel):
    """Z-Image: latents as the VAE gives them (the transformer patchifies), a list of per-caption token
    features, the timestep as 1 − σ, the prediction negated."""

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
        d = self.bare_denoiser
        return [*d.noise_refiner, *d.context_refiner, *d.layers]  # in the order a forward runs them

    def image_tokens(self, side: int) -> int:
        return (side // self.vae_scale // 2) ** 2  # 2x2 patches

    def text_tokens(self) -> int:
        return self.max_length  # at most: each caption keeps its own tokens

    @property
    def samples_posterior(self) -> bool:
        return False  # latent_dist.mode(), as diffusers' script encodes

    # --- text ------------------------------------------------------------------------------------------------------
    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        """Each caption in Qwen3's chat template (ZImagePipeline._encode_prompt: enable_thinking=True), padded."""
        (tok,) = self.tokenizers
        texts = [
            tok.apply_chat_template(
                [{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True, enable_thinking=True
            )
            for c in captions
        ]
        out = tok(texts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt")
        return [out.input_ids, out.attention_mask]

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        from lorawb.families.sd import module_device

        (te,) = self.text_encoders
        device = module_device(te)
        mask = ids[1].to(device).bool()
        hidden = te(input_ids=ids[0].to(device), attention_mask=mask, output_hidden_states=True).hidden_states[-2]
        return TextCond(hidden, None, mask)

    @staticmethod
    def caption_features(text: TextCond, device: Any, dtype: Any) -> list[torch.Tensor]:
        """Each caption's own tokens (the pipeline's ``prompt_embeds[i][mask[i]]``)."""
        assert text.mask is not None
        hidden, mask = text.hidden.to(device, dtype), text.mask.to(device)
        return [h[m] for h, m in zip(hidden, mask, strict=True)]

    # --- the denoiser ------------------------------------------------------------------------------------------------
    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextCond, geometry: torch.Tensor) -> Any:
        import torch

        dtype = self.dtype
        frames = list(noisy.to(dtype).unsqueeze(2).unbind(dim=0))  # (C, 1, h, w) each
        out = self.denoiser(
            frames,
            (1.0 - timesteps.float()).to(dtype),  # Z-Image is told 1 − σ
            self.caption_features(text, noisy.device, dtype),
            return_dict=False,
        )[0]
        return -torch.stack(out, dim=0).squeeze(2)  # it predicts x0 − noise: negated, as the pipeline does

    # --- LoRA --------------------------------------------------------------------------------------------------------
    def lora_targets(self, net: NetworkSection) -> tuple[list[str], list[str]]:
        linear, conv = super().lora_targets(net)
        if not getattr(self.settings, "train_refiners", False):
            linear = [n for n in linear if n.startswith("layers.")]
        return linear, conv

    def lora_tensors(
        self,
        denoiser: dict[str, LoraWeights],
        text_encoders: list[dict[str, LoraWeights]] | None,
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor]:
        """``diffusion_model.<module>.lora_A/B.weight``, alpha/rank folded into B (no ``.alpha``: several readers
        of this form reject it)."""
        from lorawb.families.flux import peft_state_dict
        from lorawb.train.kohya import LoraFile

        peft = peft_state_dict(LoraFile(Path(), denoiser, [], [], None, {}))  # transformer.<module>, alpha folded in
        return {"diffusion_model." + k.removeprefix("transformer."): v.to(dtype).contiguous() for k, v in peft.items()}

    def read_lora(self, path: Path, text_encoders: list[Any] | tuple = ()) -> LoraFile:
        """Any naming users bring (see the module's docstring) onto this transformer's modules."""
        from lorawb.families.flux import split_layers
        from lorawb.train.kohya import LoraFile, layer_modules, parse_layers

        layers, metadata = parse_layers(path)
        modules = set(layer_modules(self.bare_denoiser))
        comfy = {comfy_module(m)[0] for m in modules}
        flat = {m.replace(".", "_"): ("transformer.", m) for m in modules}
        flat.update({c.replace(".", "_"): ("comfy.", c) for c in comfy if c not in modules})
        named: dict[str, LoraWeights] = {}  # "transformer.<module>" or "comfy.<ComfyUI module>" -> weights
        source: dict[str, str] = {}
        for key, w in layers.items():
            found = self.place_name(key, modules, comfy, flat)
            if found is not None:
                named[found] = w
                source[found] = key
        denoiser, naming, used = split_layers(
            named, self.bare_denoiser, comfy_module, lambda k: k[len("comfy.") :] if k.startswith("comfy.") else None
        )
        unmatched = sorted(set(layers) - {source[k] for k in used})
        if naming == "bfl":
            naming = "comfyui"
        return LoraFile(Path(path), denoiser, [{} for _ in text_encoders], unmatched, naming, metadata)

    @staticmethod
    def place_name(key: str, modules: set[str], comfy: set[str], flat: dict[str, tuple[str, str]]) -> str | None:
        """A file's layer name as ``transformer.<diffusers module>`` or ``comfy.<ComfyUI module>``, or None."""
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        else:
            for prefix in FLAT_PREFIXES:
                if key.startswith(prefix):
                    hit = flat.get(key[len(prefix) :])
                    return hit[0] + hit[1] if hit else None
        if key in modules:
            return "transformer." + key
        return "comfy." + key if key in comfy else None

    # --- drawing -----------------------------------------------------------------------------------------------------
    def draw(self, pipe: Any, **kw: Any) -> list[Any]:
        kw.setdefault("max_sequence_length", self.max_length)
        return list(pipe(**kw).images)


ZImageFamily.model_class = ZImageModel
