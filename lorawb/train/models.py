"""Base models: find, check and load them; the per-family differences behind one small interface.

``BaseModel`` holds the components (unet, vae, text encoders, tokenizers, the
training noise scheduler) and knows how its family turns captions into the
UNet's conditioning. SD1.x/2.x (one CLIP text encoder, last hidden state) and
SDXL (two encoders, penultimate hidden states concatenated, pooled embedding
and size/crop "time ids" as added conditioning) are its two subclasses; the
training loop never asks which one it has.

Nothing is downloaded. A single-file checkpoint needs the family's configs and
tokenizer: from ``model.config`` (a local diffusers folder) or the Hugging Face
cache if the user has one; otherwise the error says which folder to point at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lorawb.errors import ModelError
from lorawb.train.config import ModelSection
from lorawb.train.modelpath import check_model_path, detect_family, read_json

PIPELINE_FOR = {"sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}


@dataclass
class TextCond:
    """What a batch of captions becomes: the cross-attention states, and SDXL's pooled embedding."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TextCond:
        return TextCond(
            self.hidden.to(device, dtype),
            None if self.pooled is None else self.pooled.to(device, dtype),
        )

    def index(self, i: int) -> TextCond:
        return TextCond(self.hidden[i : i + 1], None if self.pooled is None else self.pooled[i : i + 1])

    @staticmethod
    def cat(items: list[TextCond]) -> TextCond:
        pooled = None if items[0].pooled is None else torch.cat([t.pooled for t in items])  # type: ignore[misc]
        return TextCond(torch.cat([t.hidden for t in items]), pooled)


@dataclass
class BaseModel:
    family: str
    source: Path
    unet: Any
    vae: Any
    text_encoders: list[Any]
    tokenizers: list[Any]
    noise_scheduler: Any  # DDPMScheduler with the model's betas and prediction type
    scheduler_config: dict[str, Any]
    recommended: dict[str, Any] = field(default_factory=dict)

    @property
    def prediction_type(self) -> str:
        return str(self.noise_scheduler.config.prediction_type)

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_scaling(self) -> float:
        return float(self.vae.config.scaling_factor)

    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        """Token ids per text encoder, padded to the tokenizer's max length (77)."""
        return [
            tok(
                captions, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids
            for tok in self.tokenizers
        ]

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        raise NotImplementedError

    def added_cond(self, text: TextCond, time_ids: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """Extra UNet inputs (``added_cond_kwargs``); ``time_ids`` rows are (oh, ow, top, left, th, tw)."""
        return None

    def unused_text_layers(self) -> list[set[int]]:
        """Per text encoder, the transformer layers whose output never reaches the UNet."""
        return [set() for _ in self.text_encoders]

    def pipeline(self, scheduler: Any, unet: Any = None, text_encoders: list[Any] | None = None) -> Any:
        """A diffusers pipeline over these components (``unet``, ``text_encoders``: e.g. the unwrapped training ones)."""
        raise NotImplementedError


def module_device(module: Any) -> torch.device:
    """Where a module's weights are (also through a DistributedDataParallel wrapper, which has no ``.device``)."""
    return next(module.parameters()).device


class SDModel(BaseModel):
    """SD 1.x and 2.x: one CLIP text encoder, its last hidden state conditions the UNet."""

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        te = self.text_encoders[0]
        return TextCond(te(ids[0].to(module_device(te)), return_dict=False)[0])

    def pipeline(self, scheduler: Any, unet: Any = None, text_encoders: list[Any] | None = None) -> Any:
        from diffusers import StableDiffusionPipeline

        tes = text_encoders or self.text_encoders
        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=tes[0],
            tokenizer=self.tokenizers[0],
            unet=unet or self.unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


class SDXLModel(BaseModel):
    """SDXL: two CLIP encoders (penultimate layers, concatenated), pooled embedding + size/crop ids."""

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        hidden, pooled = [], None
        for te, tok_ids in zip(self.text_encoders, ids, strict=True):
            out = te(tok_ids.to(module_device(te)), output_hidden_states=True)
            pooled = out[0]  # the last encoder's projected pooled output (text_embeds)
            hidden.append(out.hidden_states[-2])
        return TextCond(torch.cat(hidden, dim=-1), pooled)

    def added_cond(self, text: TextCond, time_ids: torch.Tensor) -> dict[str, torch.Tensor] | None:
        assert text.pooled is not None
        return {"text_embeds": text.pooled, "time_ids": time_ids.to(text.pooled.device, text.pooled.dtype)}

    def unused_text_layers(self) -> list[set[int]]:
        # The first encoder conditions on its penultimate layer and its pooled output is not used.
        first = self.text_encoders[0]
        layers = int(getattr(first, "config", first).num_hidden_layers)
        return [{layers - 1}, set()]

    def pipeline(self, scheduler: Any, unet: Any = None, text_encoders: list[Any] | None = None) -> Any:
        from diffusers import StableDiffusionXLPipeline

        tes = text_encoders or self.text_encoders
        return StableDiffusionXLPipeline(
            vae=self.vae,
            text_encoder=tes[0],
            text_encoder_2=tes[1],
            tokenizer=self.tokenizers[0],
            tokenizer_2=self.tokenizers[1],
            unet=unet or self.unet,
            scheduler=scheduler,
        )


# --- loading --------------------------------------------------------------------------------------


def load_base_model(cfg: ModelSection, device: torch.device, dtype: torch.dtype = torch.float32) -> BaseModel:
    """Load the base model's components in ``dtype`` on ``device`` (the VAE stays fp32 for SDXL in fp16)."""
    from diffusers import DDPMScheduler

    path = check_model_path(cfg)
    family = detect_family(path, cfg.family)
    try:
        parts = _load_folder(path, family, cfg) if path.is_dir() else _load_single_file(path, family, cfg)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load the base model: {exc}", path=path) from exc
    sched_cfg = dict(parts.pop("scheduler_config"))
    noise_scheduler = DDPMScheduler.from_config(sched_cfg)
    if cfg.prediction_type != "auto":
        noise_scheduler.register_to_config(prediction_type=cfg.prediction_type)
        sched_cfg["prediction_type"] = cfg.prediction_type
    cls = SDXLModel if family == "sdxl" else SDModel
    model = cls(
        family=family,
        source=path,
        noise_scheduler=noise_scheduler,
        scheduler_config=sched_cfg,
        recommended=read_json(path / "lorawb_model.json").get("recommended", {}) if path.is_dir() else {},
        **parts,
    )
    for m in (model.unet, model.vae, *model.text_encoders):
        m.requires_grad_(False)
        m.eval()
    vae_dtype = torch.float32 if (family == "sdxl" and dtype == torch.float16) else dtype
    model.unet.to(device, dtype)
    model.vae.to(device, vae_dtype)
    for te in model.text_encoders:
        te.to(device, dtype)
    return model


def _load_folder(path: Path, family: str, cfg: ModelSection) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    safe = not cfg.allow_pickle
    kw: dict[str, Any] = {"local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", use_safetensors=safe or None, **kw)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", use_safetensors=safe or None, **kw)
    tes: list[Any] = [CLIPTextModel.from_pretrained(path, subfolder="text_encoder", use_safetensors=safe, **kw)]
    toks: list[Any] = [CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw)]
    if family == "sdxl":
        tes.append(
            CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2", use_safetensors=safe, **kw)
        )
        toks.append(CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2", **kw))
    sched = read_json(path / "scheduler" / "scheduler_config.json")
    if not sched:
        raise ModelError("scheduler/scheduler_config.json is missing or unreadable", path=path)
    return {"unet": unet, "vae": vae, "text_encoders": tes, "tokenizers": toks, "scheduler_config": sched}


def _load_single_file(path: Path, family: str, cfg: ModelSection) -> dict[str, Any]:
    import diffusers

    pipe_cls = getattr(diffusers, PIPELINE_FOR[family])
    kw: dict[str, Any] = {"local_files_only": True, "torch_dtype": torch.float32}
    if cfg.config:
        kw["config"] = cfg.config
    try:
        pipe = pipe_cls.from_single_file(str(path), **kw)
    except Exception as exc:  # diffusers raises many kinds here; the fix is the same
        raise ModelError(
            f"cannot load this single-file {family} checkpoint without its configs and tokenizer ({exc})",
            path=path,
            hint="set model.config to a local diffusers folder of the same family (one with model_index.json, "
            "unet/config.json and tokenizer/), e.g. the diffusers version of the model this file was made from",
        ) from exc
    tes = [pipe.text_encoder] + ([pipe.text_encoder_2] if family == "sdxl" else [])
    toks = [pipe.tokenizer] + ([pipe.tokenizer_2] if family == "sdxl" else [])
    return {
        "unet": pipe.unet,
        "vae": pipe.vae,
        "text_encoders": tes,
        "tokenizers": toks,
        "scheduler_config": dict(pipe.scheduler.config),
    }


def sampling_scheduler(model: BaseModel, name: str) -> Any:
    """The scheduler used to draw samples, built from the model's own scheduler config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cls = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm": DPMSolverMultistepScheduler}[name]
    return cls.from_config(model.scheduler_config)
