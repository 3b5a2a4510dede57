"""Flux.1 (dev and schnell): an MMDiT transformer, CLIP-L (pooled) + T5-XXL, the 16-channel VAE,
packed 2x2 latents, flow matching; dev also takes a distilled guidance value.

Components come from diffusers (``FluxTransformer2DModel``, ``FluxPipeline``) and transformers;
nothing here is model code. What this module knows:

- **Files.** A diffusers folder, or a single ``.safetensors`` transformer in the layout users
  download: BFL's (``double_blocks.0.img_attn.qkv.weight``, q/k/v fused; also with ComfyUI's
  ``model.diffusion_model.`` prefix) or diffusers' own names. The width is read from the file
  (diffusers' converter has FLUX.1's 3072 written in); the text encoders, VAE, tokenizers and
  scheduler come from ``model.config`` (a diffusers Flux folder) when the file lacks them.
- **LoRA files** in kohya's/BFL's naming, which ComfyUI, Forge, kohya sd-scripts and diffusers'
  ``FluxPipeline.load_lora_weights`` all load as they are: ``lora_unet_double_blocks_0_img_attn_qkv``
  with q/k/v fused into one LoRA exactly (the trained rank-r LoRAs concatenated: rank n·r, a
  block-diagonal up, alpha n·α, so every loader's alpha/rank is α/r), ``lora_te1_…`` for CLIP-L.
  Read back: kohya/BFL (fused, split or dense), ComfyUI's ``diffusion_model.``, diffusers/peft
  ``transformer.…`` and OneTrainer's ``lora_transformer_…`` namings.
- **Training**: σ-shift by image size (FluxPipeline's ``calculate_shift``), the guidance value dev
  is trained with (``[flux] guidance``; 1.0 as kohya's docs, OneTrainer and ai-toolkit use), the
  blocks a LoRA trains (``[flux] train_blocks``, kohya's ``train_blocks``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from lorawb.errors import ConfigError, ModelError
from lorawb.families.base import CACHED_1024, ActivationModel, Helper, Preset, TextCond
from lorawb.families.flow import FlowFamily, FlowModel, FlowSettings

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import ModelSection, NetworkSection, TrainConfig
    from lorawb.train.kohya import LoraFile, LoraWeights


class FluxSettings(FlowSettings):
    guidance: float = Field(
        1.0, ge=0, le=100, description="the distilled guidance value Flux.1-dev is trained with (schnell has none)"
    )
    train_blocks: Literal["all", "double", "single"] = Field(
        "all", description="which transformer blocks get a LoRA (kohya's train_blocks)"
    )
    t5_max_length: int = Field(0, ge=0, le=512, description="T5 tokens per caption (0: 512 for dev, 256 for schnell)")


# --- the BFL layout: diffusers module paths <-> the original (kohya, ComfyUI, single files) --------------------------

# Per double block: diffusers sub-path -> (BFL sub-path, index in the fused module, parts of it).
DOUBLE = {
    "attn.to_q": ("img_attn.qkv", 0, 3),
    "attn.to_k": ("img_attn.qkv", 1, 3),
    "attn.to_v": ("img_attn.qkv", 2, 3),
    "attn.to_out.0": ("img_attn.proj", 0, 1),
    "attn.add_q_proj": ("txt_attn.qkv", 0, 3),
    "attn.add_k_proj": ("txt_attn.qkv", 1, 3),
    "attn.add_v_proj": ("txt_attn.qkv", 2, 3),
    "attn.to_add_out": ("txt_attn.proj", 0, 1),
    "ff.net.0.proj": ("img_mlp.0", 0, 1),
    "ff.net.2": ("img_mlp.2", 0, 1),
    "ff_context.net.0.proj": ("txt_mlp.0", 0, 1),
    "ff_context.net.2": ("txt_mlp.2", 0, 1),
    "norm1.linear": ("img_mod.lin", 0, 1),
    "norm1_context.linear": ("txt_mod.lin", 0, 1),
}
SINGLE = {
    "attn.to_q": ("linear1", 0, 4),
    "attn.to_k": ("linear1", 1, 4),
    "attn.to_v": ("linear1", 2, 4),
    "proj_mlp": ("linear1", 3, 4),
    "proj_out": ("linear2", 0, 1),
    "norm.linear": ("modulation.lin", 0, 1),
}
TOP = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",  # the two halves swapped (shift, scale <-> scale, shift)
    "distilled_guidance_layer.in_proj": "distilled_guidance_layer.in_proj",  # Chroma's approximator
    "distilled_guidance_layer.out_proj": "distilled_guidance_layer.out_proj",
}
SWAPPED = {"norm_out.linear"}
# RMSNorm scales (not Linear): diffusers parameter -> BFL parameter, per block.
DOUBLE_NORMS = {
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
}
SINGLE_NORMS = {"attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}
BLOCK_RE = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")
APPROX_RE = re.compile(r"^distilled_guidance_layer\.(layers|norms)\.(\d+)\.(linear_1|linear_2|weight)$")
FILE_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


def bfl_module(name: str) -> tuple[str, int, int] | None:
    """A diffusers module path's place in the BFL layout: (BFL module, index in it, parts), or None."""
    m = BLOCK_RE.match(name)
    if m:
        kind, i, rest = m.groups()
        table, block = (DOUBLE, "double_blocks") if kind == "transformer_blocks" else (SINGLE, "single_blocks")
        hit = table.get(rest)
        return (f"{block}.{i}.{hit[0]}", hit[1], hit[2]) if hit else None
    a = APPROX_RE.match(name)
    if a and a.group(1) == "layers":
        return (
            f"distilled_guidance_layer.layers.{a.group(2)}.{'in_layer' if a.group(3) == 'linear_1' else 'out_layer'}",
            0,
            1,
        )
    if name in TOP:
        return TOP[name], 0, 1
    return None


def bfl_parameter(name: str) -> str | None:
    """The BFL name of a diffusers norm parameter (RMSNorm scales), or None."""
    m = BLOCK_RE.match(name)
    if m:
        kind, i, rest = m.groups()
        if kind == "transformer_blocks" and rest in DOUBLE_NORMS:
            return f"double_blocks.{i}.{DOUBLE_NORMS[rest]}"
        if kind == "single_transformer_blocks" and rest in SINGLE_NORMS:
            return f"single_blocks.{i}.{SINGLE_NORMS[rest]}"
    a = APPROX_RE.match(name)
    if a and a.group(1) == "norms":
        return f"distilled_guidance_layer.norms.{a.group(2)}.scale"
    return None


def swap_halves(t: torch.Tensor) -> torch.Tensor:
    import torch

    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_bfl(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers Flux/Chroma transformer state dict in the BFL layout (q/k/v fused, final half swap)."""
    import torch

    fused: dict[str, dict[int, torch.Tensor]] = {}
    parts: dict[str, int] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        place = bfl_module(module)
        if place is not None and leaf in ("weight", "bias"):
            bfl, index, n = place
            if module in SWAPPED:
                value = swap_halves(value)
            fused.setdefault(f"{bfl}.{leaf}", {})[index] = value
            parts[f"{bfl}.{leaf}"] = n
            continue
        norm = bfl_parameter(key)
        if norm is None:
            raise ModelError(f"no BFL name for transformer parameter {key!r}")
        out[norm] = value
    for key, members in fused.items():
        if len(members) != parts[key]:
            raise ModelError(f"{key}: {len(members)} of {parts[key]} fused parts present")
        out[key] = torch.cat([members[i] for i in range(parts[key])], dim=0)
    return out


def from_bfl(state: dict[str, torch.Tensor], parameters: list[str]) -> dict[str, torch.Tensor]:
    """A BFL-layout transformer state dict in diffusers' names, for a model with these parameters.

    Fused modules are split by the sizes of the diffusers modules they feed: q, k and v take the
    hidden width each (``img_in``'s rows), ``linear1``'s rest is the MLP; the width is read from
    the weights, never assumed.
    """
    width = int(state["img_in.weight"].shape[0])
    members: dict[str, list[tuple[int, str]]] = {}
    norms: dict[str, str] = {}
    for name in parameters:
        bfl = bfl_parameter(name)
        if bfl is not None:
            norms[bfl] = name
            continue
        module = name.rpartition(".")[0]
        place = bfl_module(module)
        if place is not None and (place[1], module) not in members.get(place[0], []):
            members.setdefault(place[0], []).append((place[1], module))
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in norms:
            out[norms[key]] = value
            continue
        module, _, leaf = key.rpartition(".")
        group = sorted(members.get(module, []))
        if not group or leaf not in ("weight", "bias"):
            raise ModelError(f"unexpected tensor {key!r} in this checkpoint")
        if len(group) == 1:
            target = group[0][1]
            out[f"{target}.{leaf}"] = swap_halves(value) if target in SWAPPED else value
            continue
        sizes = [width] * 3 if len(group) == 3 else [width, width, width, value.shape[0] - 3 * width]
        for (_, target), piece in zip(group, value.split(sizes, dim=0), strict=True):
            out[f"{target}.{leaf}"] = piece.contiguous()
    return out


def strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """The transformer's own keys of a single file (ComfyUI prefixes them with ``model.diffusion_model.``)."""
    for prefix in FILE_PREFIXES:
        if sum(k.startswith(prefix) for k in state) > 5:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


# --- the family ------------------------------------------------------------------------------------------------------


class FluxFamily(FlowFamily):
    name = "flux"
    label = "Flux.1"
    resolution = 1024
    settings = FluxSettings
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
        "norm1.linear",
        "norm1_context.linear",
        "proj_mlp",
        "proj_out",
        "norm.linear",
    )  # kohya's Flux network: every Linear of the double and single blocks
    trainable_text_encoders = (True, False)  # CLIP-L; T5-XXL stays frozen (as kohya and OneTrainer default)
    default_cfg = 3.5  # dev's distilled guidance (FluxPipeline's default)
    base_model_version = "flux1"
    modelspec_architecture = "flux-1-dev"
    lora_versions = ("flux1", "flux.1", "flux_1", "flux-1")
    lora_architectures = ("flux-1", "flux.1")
    kohya_network = "networks.lora_flux"
    transformer_class = "FluxTransformer2DModel"
    pipeline_class = "FluxPipeline"
    helpers = ("ip-adapter", "controlnet", "edit")  # XLabs IP-Adapter, FluxControlNet, Kontext
    # Per block, per element of (batch x image+text tokens x width), bf16: checkpointed, a block keeps
    # its input; recomputed, one block holds its attention projections, MLP and the LoRAs' inputs.
    # Estimates until bench/gpu_session.sh measures them on a GPU (flash/memory-efficient attention).
    activation = ActivationModel(kept=1.0, live=24.0, full=22.0)
    presets = (
        Preset(
            "Flux 24 GB",
            "1024 px, batch 2: fp8 base, latent + text caches (encoders off the GPU), gradient checkpointing, bf16",
            CACHED_1024
            + (
                ("model.quantize", "fp8"),
                ("train.batch_size", 2),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", True),
                ("train.optimizer", "adamw"),
                ("train.offload_blocks", 0),
            ),
            gpu_gb=24,
        ),
        Preset(
            "Flux 16 GB",
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
            gpu_gb=16,
        ),
        Preset(
            "Flux 12 GB",
            "1024 px, batch 1: fp8 base with its 19 double blocks in CPU memory (slower), caches, gradient checkpointing, "
            "bf16, 8-bit AdamW",
            CACHED_1024
            + (
                ("model.quantize", "fp8"),
                ("train.batch_size", 1),
                ("train.mixed_precision", "bf16"),
                ("train.gradient_checkpointing", True),
                ("train.optimizer", "adamw8bit"),
                ("train.offload_blocks", 19),
            ),
            gpu_gb=12,
        ),
    )
    model_class: type[FluxModel]

    def detect_folder(self, path: Path, index: dict[str, Any]) -> bool:
        from lorawb.train.modelpath import read_json

        cls = str(read_json(path / "transformer" / "config.json").get("_class_name", ""))
        return cls == self.transformer_class

    def detect_keys(self, keys: list[str]) -> bool:
        bare = {k.split("diffusion_model.", 1)[-1] for k in keys}
        if "distilled_guidance_layer.in_proj.weight" in bare or any("double_stream_modulation" in k for k in bare):
            return False  # Chroma; Flux.2
        bfl = "double_blocks.0.img_attn.norm.key_norm.scale" in bare and "img_in.weight" in bare
        return bfl or ("x_embedder.weight" in bare and "single_transformer_blocks.0.proj_mlp.weight" in bare)

    def check_config(self, cfg: TrainConfig) -> None:
        super().check_config(cfg)
        if cfg.network.dora:
            raise ConfigError(
                f"network.dora: lorawb writes {self.label} LoRAs with fused q/k/v, which DoRA's magnitudes "
                "do not survive in every loader",
                hint="set network.dora = false",
            )

    def load(self, cfg: ModelSection, path: Path, device: torch.device, dtype: torch.dtype, settings: Any) -> FluxModel:
        parts = load_parts(self, cfg, path)
        model = self.model_class(
            spec=self,
            source=path,
            denoiser=parts.pop("transformer"),
            vae=parts.pop("vae"),
            text_encoders=parts.pop("text_encoders"),
            tokenizers=parts.pop("tokenizers"),
            scheduler_config=parts.pop("scheduler_config"),
            recommended=parts.pop("recommended"),
            settings=settings,
            dtype=dtype,
        )
        import torch

        for m in (model.denoiser, model.vae, *model.text_encoders):
            m.requires_grad_(False)
            m.eval()
        model.denoiser.to(device, dtype)
        model.vae.to(device, torch.float32 if dtype == torch.float16 else dtype)
        for te in model.text_encoders:
            te.to(device, dtype)
        return model

    def meta_denoiser_from_file(self, path: Path, folder: Path) -> Any:
        import diffusers
        import torch
        from safetensors import safe_open

        from lorawb.train.modelpath import read_json

        with safe_open(str(path), framework="pt") as fh:
            shapes = {k: torch.empty(fh.get_slice(k).get_shape(), device="meta") for k in fh.keys()}  # noqa: SIM118
        state = strip_prefix(shapes)
        known = read_json(folder / "transformer" / "config.json")
        if not self.original_layout(state):
            return None  # diffusers' names: the folder's config says the shapes
        config = {k: v for k, v in self.config_from_state(state, known).items() if not k.startswith("_")}
        return getattr(diffusers, self.transformer_class).from_config(config)

    def config_from_state(self, state: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        """FluxTransformer2DModel's config read off a BFL-layout state dict (``known``: a folder's
        transformer config, for what the shapes cannot tell)."""
        config = self.shared_config(state, known)
        config["pooled_projection_dim"] = int(state["vector_in.in_layer.weight"].shape[1])
        config["guidance_embeds"] = "guidance_in.in_layer.weight" in state
        return config

    def shared_config(self, state: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        width = int(state["img_in.weight"].shape[0])
        head = int(state["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0])
        count = lambda kind: len({k.split(".")[1] for k in state if k.startswith(kind + ".")})  # noqa: E731
        rope = known.get("axes_dims_rope") or ((16, 56, 56) if head == 128 else None)
        if rope is None:
            raise ModelError(
                f"this {self.label} transformer has {head}-wide heads: its rope axes are not FLUX.1's",
                hint=f"set model.config to a diffusers {self.label} folder whose transformer/config.json says them",
            )
        return {
            "patch_size": 1,
            "in_channels": int(state["img_in.weight"].shape[1]),
            "out_channels": int(state["final_layer.linear.weight"].shape[0]),
            "num_layers": count("double_blocks"),
            "num_single_layers": count("single_blocks"),
            "attention_head_dim": head,
            "num_attention_heads": width // head,
            "joint_attention_dim": int(state["txt_in.weight"].shape[1]),
            "axes_dims_rope": list(rope),
        }

    def original_layout(self, state: dict[str, Any]) -> bool:
        """Is a single file's transformer in the model's original layout (BFL's), not diffusers'?"""
        return "img_in.weight" in state

    def from_original(self, state: dict[str, Any], parameters: list[str]) -> dict[str, Any]:
        """A single file's original-layout weights in diffusers' names, for a model with these parameters."""
        return from_bfl(state, parameters)

    def single_file_parts(self) -> tuple[str, ...]:
        return (*(sub for sub, _, _ in self.components()), "scheduler")

    # What the family's components are, folder by folder: (subfolder, loader class, module).
    def components(self) -> list[tuple[str, str, str]]:
        return [
            ("vae", "AutoencoderKL", "diffusers"),
            ("text_encoder", "CLIPTextModel", "transformers"),
            ("tokenizer", "CLIPTokenizer", "transformers"),
            ("text_encoder_2", "T5EncoderModel", "transformers"),
            ("tokenizer_2", "T5TokenizerFast", "transformers"),
        ]


# --- loading ---------------------------------------------------------------------------------------------------------


def load_parts(family: FluxFamily, cfg: ModelSection, path: Path) -> dict[str, Any]:
    """The components of a Flux-like model: from a diffusers folder, or a single transformer file plus
    ``model.config``'s folder for the rest (the error names every file or folder that is missing)."""
    import importlib

    import diffusers

    from lorawb.train.modelpath import read_json

    kw: dict[str, Any] = {"local_files_only": True}
    folder = path if path.is_dir() else (Path(cfg.config).expanduser() if cfg.config else None)
    needed = list(family.single_file_parts())
    if folder is None or not folder.is_dir():
        raise ModelError(
            f"a single-file {family.label} checkpoint holds the transformer only",
            path=path,
            hint="set model.config to a diffusers folder of the same model (with " + ", ".join(needed) + "/): "
            "its text encoders, VAE, tokenizers and scheduler are used",
        )
    missing = [sub for sub in needed if not (folder / sub).is_dir()]
    if path.is_dir() and not (path / "transformer").is_dir():
        missing.insert(0, "transformer")
    if missing:
        raise ModelError(
            f"this {family.label} folder lacks " + ", ".join(f"{m}/" for m in missing),
            path=folder,
            hint="point model.path (or model.config, for a single file) at a complete diffusers folder",
        )
    safe = None if cfg.allow_pickle else True
    transformer_cls = getattr(diffusers, family.transformer_class)
    try:
        if path.is_dir():
            transformer = transformer_cls.from_pretrained(path, subfolder="transformer", use_safetensors=safe, **kw)
        else:
            transformer = load_single_transformer(family, transformer_cls, path, folder)
        loaded: dict[str, Any] = {}
        for sub, cls_name, module in family.components():
            cls = getattr(importlib.import_module(module), cls_name)
            extra = {"use_safetensors": safe} if "Tokenizer" not in cls_name else {}
            loaded[sub] = cls.from_pretrained(folder, subfolder=sub, **kw, **extra)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load the base model: {exc}", path=path) from exc
    sched = read_json(folder / "scheduler" / "scheduler_config.json")
    if not sched:
        raise ModelError("scheduler/scheduler_config.json is missing or unreadable", path=folder)
    encoders = [loaded[s] for s, c, _ in family.components() if "Tokenizer" not in c and s != "vae"]
    tokenizers = [loaded[s] for s, c, _ in family.components() if "Tokenizer" in c]
    recommended = read_json(folder / "lorawb_model.json").get("recommended", {})
    return {
        "transformer": transformer,
        "vae": loaded["vae"],
        "text_encoders": encoders,
        "tokenizers": tokenizers,
        "scheduler_config": sched,
        "recommended": recommended,
    }


def load_single_file_state(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return strip_prefix(load_file(str(path)))


def load_single_transformer(family: FluxFamily, cls: Any, path: Path, folder: Path) -> Any:
    """The transformer of a single file (BFL or diffusers names), its config from the file's shapes
    and ``folder``'s transformer/config.json where the shapes cannot tell (the rope axes)."""
    import torch

    from lorawb.train.modelpath import read_json

    state = load_single_file_state(path)
    bfl = family.original_layout(state)
    known = read_json(folder / "transformer" / "config.json")
    config = family.config_from_state(state, known) if bfl else dict(known)
    if not config:
        raise ModelError(
            "cannot tell this transformer's configuration from the file",
            path=path,
            hint=f"set model.config to a diffusers {family.label} folder with transformer/config.json",
        )
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        model = cls.from_config(config)
    weights = family.from_original(state, list(model.state_dict())) if bfl else state
    expected = set(model.state_dict())
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ModelError(
            f"the file's transformer does not match its configuration ({len(missing)} tensors missing, "
            f"{len(extra)} unexpected, e.g. {(missing or extra)[0]})",
            path=path,
        )
    model.load_state_dict(weights, assign=True)
    return model


# --- the loaded model ------------------------------------------------------------------------------------------------


@dataclass
class FluxModel(FlowModel):
    """Flux.1: packed latents with image/text position ids, CLIP's pooled vector, T5's tokens."""

    @property
    def size_step(self) -> int:
        return self.vae_scale * 2

    @property
    def guidance_embeds(self) -> bool:
        return bool(getattr(self.bare_denoiser.config, "guidance_embeds", False))

    @property
    def t5_length(self) -> int:
        n = int(getattr(self.settings, "t5_max_length", 0) or 0)
        return n or (512 if self.guidance_embeds else 256)

    def image_seq_len(self, latents: torch.Tensor) -> int:
        return int((latents.shape[-2] // 2) * (latents.shape[-1] // 2))

    # --- memory -----------------------------------------------------------------------------------------------------
    def blocks(self) -> list[Any]:
        d = self.bare_denoiser
        return [*d.transformer_blocks, *d.single_transformer_blocks]

    def image_tokens(self, side: int) -> int:
        return (side // self.vae_scale // 2) ** 2  # 2x2 patches

    def text_tokens(self) -> int:
        return self.t5_length

    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        clip, t5 = self.tokenizers
        ids = clip(
            captions, padding="max_length", max_length=clip.model_max_length, truncation=True, return_tensors="pt"
        )
        long = t5(captions, padding="max_length", max_length=self.t5_length, truncation=True, return_tensors="pt")
        return [ids.input_ids, long.input_ids]

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        from lorawb.families.sd import module_device

        clip, t5 = self.text_encoders
        pooled = clip(ids[0].to(module_device(clip)), output_hidden_states=False).pooler_output
        hidden = t5(ids[1].to(module_device(t5)), output_hidden_states=False)[0]
        return TextCond(hidden, pooled)

    def pack(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(packed latents (B, h/2·w/2, 4C), their position ids) as the pipeline prepares them."""
        from diffusers import FluxPipeline

        b, c, h, w = latents.shape
        packed = FluxPipeline._pack_latents(latents, b, c, h, w)
        ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, latents.device, latents.dtype)
        return packed, ids

    def unpack(self, packed: torch.Tensor, h: int, w: int) -> torch.Tensor:
        from diffusers import FluxPipeline

        return FluxPipeline._unpack_latents(packed, h * self.vae_scale, w * self.vae_scale, self.vae_scale)

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextCond, geometry: torch.Tensor) -> Any:
        import torch

        dtype, b = self.dtype, noisy.shape[0]
        h, w = noisy.shape[-2:]
        packed, img_ids = self.pack(noisy.to(dtype))
        hidden = text.hidden.to(noisy.device, dtype)
        txt_ids = torch.zeros(hidden.shape[1], 3, device=noisy.device, dtype=dtype)
        guidance = None
        if self.guidance_embeds:
            guidance = torch.full((b,), float(self.settings.guidance), device=noisy.device, dtype=torch.float32)
        assert text.pooled is not None
        out = self.denoiser(
            hidden_states=packed,
            timestep=timesteps.to(dtype),
            guidance=guidance,
            pooled_projections=text.pooled.to(noisy.device, dtype),
            encoder_hidden_states=hidden,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        return self.unpack(out, h, w)

    def initial_noise(self, seed: int, width: int, height: int) -> torch.Tensor:
        latents = super().initial_noise(seed, width, height)
        return self.pack(latents)[0]

    # --- LoRA ---------------------------------------------------------------------------------------------------
    def bfl_place(self, name: str) -> tuple[str, int, int] | None:
        """A diffusers module's place in the original layout the LoRA file names (bfl_module)."""
        return bfl_module(name)

    def bfl_layer(self, key: str) -> str | None:
        """The original-layout module a LoRA file's layer name means (bfl_key)."""
        return bfl_key(key)

    def lora_targets(self, net: NetworkSection) -> tuple[list[str], list[str]]:
        linear, conv = super().lora_targets(net)
        blocks = getattr(self.settings, "train_blocks", "all")
        keep = {"all": ("transformer_blocks.", "single_transformer_blocks."), "double": ("transformer_blocks.",)}
        prefixes = keep.get(blocks, ("single_transformer_blocks.",))
        return [n for n in linear if n.startswith(prefixes)], conv

    def lora_tensors(
        self,
        denoiser: dict[str, LoraWeights],
        text_encoders: list[dict[str, LoraWeights]] | None,
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor]:
        from lorawb.train.kohya import UNET_PREFIX, flat_tensors, te_key

        fused = fuse_layers(denoiser, self.bare_denoiser, self.bfl_place)
        named = {UNET_PREFIX + bfl.replace(".", "_"): w for bfl, w in fused.items()}
        for i, layers in enumerate(text_encoders or []):
            named.update({te_key(name, i, len(self.text_encoders)): w for name, w in layers.items()})
        return flat_tensors(named, dtype)

    def read_lora(self, path: Path, text_encoders: list[Any] | tuple = ()) -> LoraFile:
        from lorawb.train.kohya import LoraFile, parse_layers, text_encoder_names

        layers, metadata = parse_layers(path)
        denoiser, naming, used = split_layers(layers, self.bare_denoiser, self.bfl_place, self.bfl_layer)
        clip = list(text_encoders[:1])  # CLIP-L: kohya writes lora_te1_ (the first of two encoders)
        where = text_encoder_names(clip, ("text_encoder",), prefixes=[("lora_te1_", "lora_te_")])
        out = LoraFile(Path(path), denoiser, [{} for _ in clip], [], naming, metadata)
        for key, w in sorted(layers.items()):
            if key in used:
                continue
            hit = where.get(key)
            if hit is None:
                out.unmatched.append(key)
            else:
                out.text_encoders[hit[0]][hit[1]] = w
        return out

    def load_lora(self, pipe: Any, path: Path, adapter_name: str) -> None:
        """Every naming read by lorawb's own reader, handed to diffusers in its peft naming (its kohya
        converter has FLUX.1's widths written in), alpha folded into the up weights."""
        state = peft_state_dict(self.read_lora(path, self.text_encoders))
        pipe.load_lora_weights(state, adapter_name=adapter_name)

    # --- drawing ----------------------------------------------------------------------------------------------------
    def draw(self, pipe: Any, **kw: Any) -> list[Any]:
        kw.setdefault("max_sequence_length", self.t5_length)
        return list(pipe(**kw).images)

    # --- variation helpers: XLabs-style IP-Adapter, FluxControlNet, Kontext reference editing ----------------
    def ip_adapter_pipeline(self, pipe: Any, helper: Helper) -> Any:
        from lorawb.families.sd import load_image_encoder

        load_image_encoder(pipe, Path(helper.encoder), self.vae.device, self.dtype)
        adapter = Path(helper.path)
        try:
            pipe.load_ip_adapter(
                str(adapter.parent),
                weight_name=adapter.name,
                image_encoder_pretrained_model_name_or_path=None,  # loaded above, from the user's folder
                local_files_only=True,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(
                f"cannot load this IP-Adapter: {exc}",
                path=adapter,
                hint="a Flux IP-Adapter .safetensors (XLabs' double_blocks.* / ip_adapter_proj_model.* keys)",
            ) from exc
        pipe.set_ip_adapter_scale(helper.scale)
        return pipe

    def controlnet_pipeline(self, pipe: Any, helper: Helper) -> Any:
        from diffusers import FluxControlNetModel, FluxControlNetPipeline

        from lorawb.families.sd import load_helper_model

        net = load_helper_model(FluxControlNetModel, Path(helper.path), "ControlNet", self.vae.device, self.dtype)
        return FluxControlNetPipeline(**pipe.components, controlnet=net)

    def edit_pipeline(self, pipe: Any, helper: Helper) -> Any:
        from diffusers import FluxKontextPipeline

        return FluxKontextPipeline(**pipe.components)

    def helper_inputs(self, pipe: Any, helper: Helper, image: Any, width: int, height: int) -> dict[str, Any]:
        if helper.kind == "controlnet":
            return {"control_image": image, "controlnet_conditioning_scale": float(helper.scale)}
        if helper.kind == "ip-adapter":
            return {"ip_adapter_image": image}
        if helper.kind == "edit":
            # The reference and the result at the size asked for (Kontext would otherwise pick one of its
            # preferred sizes for the reference, and scale the result to a megapixel).
            return {"image": image.resize((width, height)), "_auto_resize": False, "max_area": width * height}
        return super().helper_inputs(pipe, helper, image, width, height)


FluxFamily.model_class = FluxModel


# --- LoRA layers: fused <-> split ------------------------------------------------------------------------------------


def bfl_groups(denoiser: Any, place: Callable[[str], Any] = bfl_module) -> dict[str, list[tuple[int, str]]]:
    """BFL module -> its parts on this transformer, (index, diffusers module), in order (``place``: the
    family's map of diffusers modules into its original layout)."""
    import torch

    groups: dict[str, list[tuple[int, str]]] = {}
    for name, module in denoiser.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".lora_" in name:
            continue
        name = name.removesuffix(".base_layer")
        where = place(name)
        if where is not None:
            groups.setdefault(where[0], []).append((where[1], name))
    return {k: sorted(set(v)) for k, v in groups.items()}


def fuse_layers(
    layers: dict[str, LoraWeights], denoiser: Any, place: Callable[[str], Any] = bfl_module
) -> dict[str, LoraWeights]:
    """Split LoRA layers (diffusers module names) as BFL modules: q/k/v (and linear1's MLP) fused into
    one LoRA exactly — downs stacked, ups block-diagonal, alpha n·α, so alpha/rank stays α/r; a part
    without a LoRA is a zero block. ``norm_out.linear``'s up rows swap halves."""
    import torch

    from lorawb.train.kohya import LoraWeights

    groups: dict[str, dict[int, LoraWeights]] = {}
    sizes: dict[str, int] = {}
    out: dict[str, LoraWeights] = {}
    for name, w in layers.items():
        where = place(name)
        if where is None:
            raise ConfigError(f"no BFL name for the LoRA layer {name!r}")
        bfl, index, n = where
        if n == 1:
            up = swap_halves(w.up) if name in SWAPPED else w.up
            out[bfl] = LoraWeights(down=w.down, up=up, alpha=w.alpha, dora_scale=w.dora_scale)
            continue
        groups.setdefault(bfl, {})[index] = w
        sizes[bfl] = n
    parts_of = bfl_groups(denoiser, place)
    for bfl, members in groups.items():
        first = next(iter(members.values()))
        rank, alpha = first.down.shape[0], first.alpha
        names = dict(parts_of[bfl])
        downs, ups = [], []
        for i in range(sizes[bfl]):
            w = members.get(i)
            if w is None:  # a part without a LoRA: a zero block of the same rank
                downs.append(torch.zeros_like(first.down))
                ups.append(torch.zeros(module_rows(denoiser, names[i]), rank))
                continue
            if w.down.shape[0] != rank:
                raise ConfigError(f"{bfl}: its q/k/v LoRAs have different ranks; fused LoRAs need one rank")
            downs.append(w.down)
            ups.append(w.up * (w.alpha / alpha))  # one alpha for the fused layer; each part's effect kept
        out[bfl] = LoraWeights(down=torch.cat(downs), up=torch.block_diag(*ups), alpha=alpha * len(ups))
    return out


def split_layers(
    layers: dict[str, LoraWeights],
    denoiser: Any,
    place: Callable[[str], Any] = bfl_module,
    layer_of: Callable[[str], str | None] | None = None,
) -> tuple[dict[str, LoraWeights], str | None, set[str]]:
    """A LoRA file's layers (any naming users bring) as LoRAs on this transformer's diffusers modules.

    Fused BFL layers are split exactly: a block-diagonal one (lorawb's, kohya's split_qkv) into its
    rank-r parts, a dense one (trained fused) as the same down with each part's rows of up.
    ``place`` and ``layer_of`` (default: Flux.1's BFL layout) say where the family's diffusers
    modules sit in its original layout and which original module a file's layer name means.
    Returns (diffusers module -> weights, the file's naming: "bfl", "diffusers" or None, the
    file's layer names used).
    """
    import torch

    from lorawb.train.kohya import LoraWeights

    groups = bfl_groups(denoiser, place)
    flat: dict[str, str] = {}  # the 1:1 spellings of diffusers modules -> the module
    for members in groups.values():
        for _, name in members:
            flat[f"transformer.{name}"] = name
            flat[f"lora_transformer_{name.replace('.', '_')}"] = name  # OneTrainer's legacy naming
    out: dict[str, LoraWeights] = {}
    used: set[str] = set()
    naming: str | None = None
    for key, w in sorted(layers.items()):
        if key in flat:
            out[flat[key]] = w
            used.add(key)
            naming = naming or "diffusers"
            continue
        bfl = (layer_of or bfl_key)(key)
        members = groups.get(bfl, []) if bfl else []
        if not members:
            continue
        used.add(key)
        naming = "bfl"
        if len(members) == 1:
            target = members[0][1]
            up = swap_halves(w.up) if target in SWAPPED else w.up
            out[target] = LoraWeights(down=w.down, up=up, alpha=w.alpha, dora_scale=w.dora_scale)
            continue
        sizes = [module_rows(denoiser, m) for _, m in members]
        n, rank = len(members), w.down.shape[0]
        ups = w.up.split(sizes, dim=0)
        chunk = rank // n if rank % n == 0 else 0
        sparse = chunk > 0 and all(
            not torch.any(ups[j][:, k * chunk : (k + 1) * chunk]) for j in range(n) for k in range(n) if k != j
        )
        for j, (_, target) in enumerate(members):
            if sparse:
                piece = slice(j * chunk, (j + 1) * chunk)
                down, up, alpha = w.down[piece], ups[j][:, piece], w.alpha / n
            else:
                down, up, alpha = w.down, ups[j], w.alpha
            out[target] = LoraWeights(down=down.contiguous(), up=up.contiguous(), alpha=alpha)
    return out, naming, used


def bfl_key(key: str) -> str | None:
    """The BFL module a LoRA layer name means (``lora_unet_double_blocks_0_img_attn_qkv``,
    ``diffusion_model.double_blocks.0.img_attn.qkv``), or None."""
    for prefix in ("diffusion_model.", "model.diffusion_model.", "transformer."):
        if key.startswith(prefix) and ("double_blocks." in key or "single_blocks." in key or "final_layer" in key):
            return key[len(prefix) :]
    if key.startswith("lora_unet_"):
        return unflatten_bfl(key[len("lora_unet_") :])
    return None


BFL_FLAT = re.compile(
    r"^(double_blocks|single_blocks)_(\d+)_(img_attn_qkv|img_attn_proj|txt_attn_qkv|txt_attn_proj|img_mlp_0|img_mlp_2|"
    r"txt_mlp_0|txt_mlp_2|img_mod_lin|txt_mod_lin|linear1|linear2|modulation_lin)$"
)
BFL_TOP_FLAT = {v.replace(".", "_"): v for v in TOP.values()}


def unflatten_bfl(flat: str) -> str | None:
    """kohya's underscore name back to the dotted BFL module (the names are fixed, so it is unambiguous)."""
    m = BFL_FLAT.match(flat)
    if m:
        block, i, rest = m.groups()
        dotted = {
            "img_attn_qkv": "img_attn.qkv",
            "img_attn_proj": "img_attn.proj",
            "txt_attn_qkv": "txt_attn.qkv",
            "txt_attn_proj": "txt_attn.proj",
            "img_mlp_0": "img_mlp.0",
            "img_mlp_2": "img_mlp.2",
            "txt_mlp_0": "txt_mlp.0",
            "txt_mlp_2": "txt_mlp.2",
            "img_mod_lin": "img_mod.lin",
            "txt_mod_lin": "txt_mod.lin",
            "modulation_lin": "modulation.lin",
        }.get(rest, rest)
        return f"{block}.{i}.{dotted}"
    return BFL_TOP_FLAT.get(flat)


def module_rows(root: Any, name: str) -> int:
    module = root.get_submodule(name)
    base = getattr(module, "base_layer", module)
    return int(base.out_features)  # a quantised layer's weight may be packed (nf4)


def peft_state_dict(lora: LoraFile) -> dict[str, torch.Tensor]:
    """A LoRA read onto a Flux-like model, in diffusers' peft naming with alpha folded into the up
    weights (scale 1: the loader needs no alphas, and no width is assumed)."""
    out: dict[str, torch.Tensor] = {}
    for name, w in lora.denoiser.items():
        rank = w.down.shape[0]
        out[f"transformer.{name}.lora_A.weight"] = w.down.contiguous()
        out[f"transformer.{name}.lora_B.weight"] = (w.up * (w.alpha / rank)).contiguous()
    for layers in lora.text_encoders[:1]:
        for name, w in layers.items():
            rank = w.down.shape[0]
            bare = name.removeprefix("text_model.")
            out[f"text_encoder.text_model.{bare}.lora_A.weight"] = w.down.contiguous()
            out[f"text_encoder.text_model.{bare}.lora_B.weight"] = (w.up * (w.alpha / rank)).contiguous()
    return out
