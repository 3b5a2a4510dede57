"""LoRA files in kohya's format, the one ComfyUI, AUTOMATIC1111/Forge, InvokeAI and diffusers all load.

Keys, per adapted layer (kohya sd-scripts networks/lora.py naming):

    lora_unet_<module path, dots as underscores>.lora_down.weight   (rank, in[, kh, kw])
    lora_unet_<...>.lora_up.weight                                  (out, rank[, 1, 1])
    lora_unet_<...>.alpha                                           float scalar
    lora_te_text_model_encoder_layers_0_self_attn_q_proj.*          SD1/SD2 text encoder
    lora_te1_text_model_... / lora_te2_text_model_...               SDXL's two text encoders
    <...>.dora_scale                                                DoRA magnitude, (out, 1[, 1, 1])

The UNet module path is diffusers' for SD1/SD2 (``lora_unet_down_blocks_0_attentions_0_...``,
which is what kohya's SD1 network walks) and the original LDM layout for SDXL
(``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``: kohya trains SDXL on its own
``sdxl_original_unet``, and nearly every shared SDXL LoRA uses its names); lorawb.families.ldm maps
one layout to the other. ``read_lora`` reads either naming back onto a diffusers UNet. Which
naming a family writes is the family module's choice (lorawb.families); this module is the
format: layers in and out, whatever they are called.

Text-encoder names always carry the ``text_model_`` level that kohya's loader
expects, even though transformers 5's CLIPTextModel no longer has it in its
module tree. Alpha is a float32 scalar (not int64, which kohya rejects for SD1).

Metadata: kohya's ``ss_*`` keys (strings) plus ``modelspec.*`` and ``lorawb_*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lorawb.core.fsutil import atomic_write_bytes
from lorawb.families.ldm import UnetLayout

UNET_PREFIX = "lora_unet_"
TE_PREFIXES = {1: ("lora_te_",), 2: ("lora_te1_", "lora_te2_")}


@dataclass
class LoraWeights:
    """One adapted layer: kohya's down (= peft lora_A) and up (= peft lora_B), alpha, DoRA magnitude."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float
    dora_scale: torch.Tensor | None = None


def extract_lora(model: torch.nn.Module, adapter: str = "default") -> dict[str, LoraWeights]:
    """The LoRA layers peft injected into ``model``, by module name (detached, on CPU)."""
    from peft.tuners.lora import LoraLayer

    out: dict[str, LoraWeights] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
            continue
        rank = module.r[adapter]
        alpha = float(module.scaling[adapter]) * rank
        down = module.lora_A[adapter].weight.detach().float().cpu()
        up = module.lora_B[adapter].weight.detach().float().cpu()
        dora = None
        mag = getattr(module, "lora_magnitude_vector", None)
        if mag is not None and adapter in mag:
            dora = mag[adapter].weight.detach().float().cpu().reshape(up.shape[0], *([1] * (up.dim() - 1)))
        out[name] = LoraWeights(down=down, up=up, alpha=alpha, dora_scale=dora)
    return out


def unet_key(module_name: str, layout: UnetLayout | None = None) -> str:
    """Kohya name of a UNet module (a diffusers path); with ``layout``, in the LDM naming (SDXL)."""
    if layout is not None:
        module_name = layout.to_ldm(module_name)
    return UNET_PREFIX + module_name.replace(".", "_")


def te_key(module_name: str, index: int, count: int) -> str:
    """Kohya name of a text-encoder module; ``index`` is 0-based, ``count`` the number of encoders."""
    prefix = TE_PREFIXES[count][index]
    if not module_name.startswith("text_model."):
        module_name = "text_model." + module_name
    return prefix + module_name.replace(".", "_")


def flat_tensors(layers: dict[str, LoraWeights], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """kohya's tensors for layers already named (``lora_unet_x`` -> weights): down, up, a float32
    scalar alpha (kohya rejects int64 for SD1), and DoRA's magnitude where there is one."""
    tensors: dict[str, torch.Tensor] = {}
    for key, w in layers.items():
        tensors[f"{key}.lora_down.weight"] = w.down.to(dtype).contiguous()
        tensors[f"{key}.lora_up.weight"] = w.up.to(dtype).contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(w.alpha, dtype=torch.float32)
        if w.dora_scale is not None:
            tensors[f"{key}.dora_scale"] = w.dora_scale.to(dtype).contiguous()
    return tensors


def kohya_state_dict(
    unet: dict[str, LoraWeights],
    text_encoders: list[dict[str, LoraWeights]] | None = None,
    te_count: int = 1,
    dtype: torch.dtype = torch.float16,
    layout: UnetLayout | None = None,
) -> dict[str, torch.Tensor]:
    """Flat kohya tensors from extracted UNet and CLIP text-encoder LoRA layers (``te_count``: 1 for
    SD1/SD2, 2 for SDXL); ``layout``: the UNet's LDM layout, for kohya's SDXL names."""
    named = {unet_key(name, layout): w for name, w in unet.items()}
    for i, layers in enumerate(text_encoders or []):
        named.update({te_key(name, i, te_count): w for name, w in layers.items()})
    return flat_tensors(named, dtype)


# --- reading LoRA files of either naming ----------------------------------------------------------

LAYER_PARTS = ("lora_down.weight", "lora_up.weight", "alpha", "dora_scale")
# diffusers/peft naming (``transformer.x.to_q.lora_A.weight``): suffix -> kohya's part.
PEFT_PARTS = (
    (".lora_A.weight", "lora_down.weight"),
    (".lora_B.weight", "lora_up.weight"),
    (".lora_magnitude_vector", "dora_scale"),
    (".alpha", "alpha"),
)


def layer_name(key: str) -> str:
    """``lora_unet_x_to_q.lora_down.weight`` -> ``lora_unet_x_to_q``."""
    return key.split(".", 1)[0]


def detect_unet_naming(keys: Any) -> str | None:
    """``"ldm"`` (input_blocks/middle_block/output_blocks), ``"diffusers"`` (down_blocks/...), or None (no UNet layers)."""
    unet = [k for k in keys if k.startswith(UNET_PREFIX)]
    if any(k.startswith(UNET_PREFIX + p) for k in unet for p in ("input_blocks_", "middle_block_", "output_blocks_")):
        return "ldm"
    return "diffusers" if unet else None


def convert_unet_naming(tensors: dict[str, Any], unet_config: Any, to: str) -> dict[str, Any]:
    """The same kohya tensors with SDXL UNet layer names in the ``to`` naming ("ldm" or "diffusers").

    Only names change (text-encoder keys pass through); the config says where the blocks are.
    """
    layout = UnetLayout(unet_config)
    convert = layout.to_ldm if to == "ldm" else layout.to_diffusers
    out: dict[str, Any] = {}
    for key, value in tensors.items():
        if key.startswith(UNET_PREFIX):
            layer, _, part = key.partition(".")
            layer = UNET_PREFIX + convert(layer[len(UNET_PREFIX) :], sep="_")
            key = f"{layer}.{part}" if part else layer
        out[key] = value
    return out


def layer_modules(root: torch.nn.Module) -> list[str]:
    """Names of the Linear/Conv2d layers of ``root`` (a layer peft wrapped keeps its own name)."""
    out = []
    for name, module in root.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and ".lora_" not in name:
            out.append(name.removesuffix(".base_layer"))
    return out


@dataclass
class LoraFile:
    """A LoRA file read onto a model: its layers by the model's own module names."""

    path: Path
    denoiser: dict[str, LoraWeights]
    text_encoders: list[dict[str, LoraWeights]]
    unmatched: list[str]  # layers of the file that name no module of this model
    naming: str | None  # the file's denoiser naming (e.g. "ldm", "diffusers", "bfl"), or None
    metadata: dict[str, str]

    @property
    def unet(self) -> dict[str, LoraWeights]:
        return self.denoiser

    @property
    def num_layers(self) -> int:
        return len(self.denoiser) + sum(len(t) for t in self.text_encoders)


def parse_layers(path: Path) -> tuple[dict[str, LoraWeights], dict[str, str]]:
    """Every LoRA layer of a file by the file's own layer name, and its metadata.

    Reads kohya's parts (``lora_down``/``lora_up``/``alpha``/``dora_scale``) and diffusers/peft's
    (``lora_A``/``lora_B``; no alpha means alpha = rank, as diffusers loads them). Raises
    ConfigError for a file that is not a LoRA of either kind (LoHa, LoKr, a full model...).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from lorawb.errors import ConfigError

    path = Path(path)
    try:
        tensors = load_file(str(path))
        metadata = read_metadata(path)
    except (OSError, SafetensorError) as exc:
        raise ConfigError(f"cannot read this LoRA file: {exc}", path=path) from exc
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        layer, _, part = key.partition(".")
        if part not in LAYER_PARTS:
            found = next(((key[: -len(sfx)], p) for sfx, p in PEFT_PARTS if key.endswith(sfx)), None)
            if found is None:
                raise ConfigError(
                    f"not a LoRA file lorawb can read: key {key!r}",
                    path=path,
                    hint="LoRA files in kohya's naming (lora_down/lora_up/alpha, optionally dora_scale) and in "
                    "diffusers/peft naming (lora_A/lora_B) are supported; LoHa/LoKr files are not",
                )
            layer, part = found
        parts.setdefault(layer, {})[part] = value
    layers: dict[str, LoraWeights] = {}
    for layer, got in parts.items():
        if "lora_down.weight" not in got or "lora_up.weight" not in got:
            raise ConfigError(f"layer {layer} lacks its lora_down or lora_up weight", path=path)
        down, up = got["lora_down.weight"].float(), got["lora_up.weight"].float()
        alpha = float(got["alpha"]) if "alpha" in got else float(down.shape[0])
        dora = got["dora_scale"].float() if "dora_scale" in got else None
        layers[layer] = LoraWeights(down=down, up=up, alpha=alpha, dora_scale=dora)
    return layers, metadata


def text_encoder_names(
    text_encoders: list[torch.nn.Module] | tuple,
    peft: tuple[str, ...] = (),
    prefixes: list[tuple[str, ...]] | None = None,
) -> dict[str, tuple[int, str]]:
    """Every name kohya, lorawb and diffusers have used for the CLIP text encoders' layers:
    ``lora_te_``/``lora_te1_``/``lora_te2_`` (``prefixes``: per encoder, when the family's
    numbering is not kohya's count rule), with or without the ``text_model`` level, and the
    diffusers prefixes in ``peft`` (``text_encoder``, ``text_encoder_2``), one per encoder."""
    where: dict[str, tuple[int, str]] = {}
    count = len(text_encoders)
    for i, te in enumerate(text_encoders):
        if prefixes is not None:
            names = set(prefixes[i])
        else:
            names = {TE_PREFIXES.get(count, ("lora_te1_", "lora_te2_", "lora_te3_"))[i]} | (
                {"lora_te_"} if i == 0 else set()
            )
        for name in layer_modules(te):
            bare = name.removeprefix("text_model.")
            for prefix in names:
                where.setdefault(prefix + ("text_model." + bare).replace(".", "_"), (i, name))
                where.setdefault(prefix + bare.replace(".", "_"), (i, name))
            if i < len(peft):
                where.setdefault(f"{peft[i]}.{name}", (i, name))
                where.setdefault(f"{peft[i]}.text_model.{bare}", (i, name))
    return where


def match_layers(
    path: Path,
    layers: dict[str, LoraWeights],
    metadata: dict[str, str],
    where: dict[str, tuple[int, str]],
    text_encoders: int,
    naming: str | None,
) -> LoraFile:
    """The file's layers placed by ``where`` (file layer name -> (-1 for the denoiser or an encoder
    index, module name)); layers it does not name are ``unmatched``."""
    out = LoraFile(Path(path), {}, [{} for _ in range(text_encoders)], [], naming, metadata)
    for layer, weights in sorted(layers.items()):
        found = where.get(layer)
        if found is None:
            out.unmatched.append(layer)
        elif found[0] < 0:
            out.denoiser[found[1]] = weights
        else:
            out.text_encoders[found[0]][found[1]] = weights
    return out


def read_lora(path: Path, unet: torch.nn.Module, text_encoders: list[torch.nn.Module] | tuple = ()) -> LoraFile:
    """Read an SD1/SD2/SDXL LoRA (lorawb's, kohya's in either SDXL naming, or diffusers/peft's) onto
    these modules.

    Each layer is matched to a Linear/Conv2d of ``unet`` or of a text encoder by every name kohya,
    lorawb and diffusers have used for it (diffusers and LDM UNet paths, ``unet.`` peft paths;
    ``lora_te_``/``lora_te1_``/``lora_te2_`` with or without the ``text_model`` level).
    """
    layers, metadata = parse_layers(path)
    where: dict[str, tuple[int, str]] = {}  # file layer name -> (-1 for the UNet or encoder index, module name)
    layout = UnetLayout(unet.config) if hasattr(unet, "config") else None
    for name in layer_modules(unet):
        where[unet_key(name)] = (-1, name)
        if layout is not None:
            where.setdefault(unet_key(name, layout), (-1, name))
        where.setdefault(f"unet.{name}", (-1, name))
    where.update(text_encoder_names(text_encoders, ("text_encoder", "text_encoder_2")))
    return match_layers(path, layers, metadata, where, len(text_encoders), detect_unet_naming(layers))


def save_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Write a .safetensors LoRA atomically; metadata values become strings (JSON for containers)."""
    from safetensors.torch import save

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items() if v is not None}
    atomic_write_bytes(Path(path), save(tensors, metadata=meta))
    return Path(path)


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def training_metadata(
    *,
    family_metadata: dict[str, str],
    output_name: str,
    base_model: str,
    trigger: str,
    tag_frequency: dict[str, dict[str, int]],
    dataset_dirs: dict[str, dict[str, int]],
    num_train_images: int,
    rank: int,
    alpha: float,
    resolution: int,
    step: int,
    max_steps: int,
    epoch: int,
    epochs: int,
    learning_rate: float,
    text_encoder_lr: float | None,
    train_text_encoder: bool,
    batch_size: int,
    optimizer: str,
    lr_scheduler: str,
    noise_offset: float,
    min_snr_gamma: float,
    seed: int,
    mixed_precision: str,
    started_at: float,
    finished_at: float,
    network_module: str = "networks.lora",
    extra_network_args: dict[str, Any] | None = None,
    network_dropout: float = 0.0,
    prediction_type: str = "epsilon",
    characters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """kohya-style ``ss_*`` metadata (the keys A1111/Forge/ComfyUI show), modelspec and lorawb keys.

    ``family_metadata``: the family's own keys (``Family.lora_metadata``: ss_base_model_version,
    modelspec.architecture, and what else its tools read).

    Values say what happened: ``epochs`` is the number of epochs the steps cover (kohya's
    ``ss_num_epochs``), ``mixed_precision`` the one used, ``network_module`` the network's kind.
    ``characters`` (name -> trigger) of a joint LoRA: every trigger is listed (``ss_trigger``, the
    training comment, modelspec's trigger phrase, ``lorawb_triggers``, ``lorawb_characters``).
    """
    import datetime as _dt

    import lorawb

    meta: dict[str, Any] = {
        "ss_output_name": output_name,
        "ss_sd_model_name": Path(base_model).name,
        "ss_base_model_version": family_metadata["ss_base_model_version"],
        "ss_v2": family_metadata.get("ss_v2", "False"),
        "ss_network_module": network_module,
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_network_args": extra_network_args or {},
        "ss_network_dropout": str(network_dropout),
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_num_train_images": str(num_train_images),
        "ss_tag_frequency": tag_frequency,
        "ss_dataset_dirs": dataset_dirs,
        "ss_steps": str(step),
        "ss_max_train_steps": str(max_steps),
        "ss_epoch": str(epoch),
        "ss_num_epochs": str(epochs),
        "ss_learning_rate": str(learning_rate),
        "ss_unet_lr": str(learning_rate),
        "ss_text_encoder_lr": str(text_encoder_lr if text_encoder_lr else learning_rate),
        "ss_network_train_unet_only": str(not train_text_encoder),
        "ss_batch_size_per_device": str(batch_size),
        "ss_optimizer": optimizer,
        "ss_lr_scheduler": lr_scheduler,
        "ss_noise_offset": str(noise_offset),
        "ss_min_snr_gamma": str(min_snr_gamma),
        "ss_seed": str(seed),
        "ss_mixed_precision": mixed_precision,
        "ss_v_parameterization": str(prediction_type == "v_prediction"),
        "ss_training_started_at": str(started_at),
        "ss_training_finished_at": str(finished_at),
        "ss_trigger": trigger,
        "ss_training_comment": f"trigger: {trigger}" if trigger else "",
        "lorawb_trigger": trigger,
        "lorawb_version": lorawb.__version__,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": family_metadata["modelspec.architecture"],
        "modelspec.implementation": "diffusers",
        "modelspec.title": output_name,
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.trigger_phrase": trigger,
        "modelspec.date": _dt.datetime.fromtimestamp(started_at).isoformat(timespec="seconds"),
    }
    if characters:
        listed = ", ".join(characters.values())
        meta["ss_trigger"] = listed
        meta["ss_training_comment"] = f"triggers: {listed}"
        meta["modelspec.trigger_phrase"] = listed
        meta["lorawb_triggers"] = list(characters.values())
        meta["lorawb_characters"] = dict(characters)
        if not trigger:
            meta["lorawb_trigger"] = next(iter(characters.values()))
    meta.update({k: v for k, v in family_metadata.items() if k not in meta})
    return meta
