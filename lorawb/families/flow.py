"""Flow matching, as the 2025-2026 transformers are trained: x_t = (1 - σ) x0 + σ ε, target ε - x0.

σ is drawn by the weighting scheme diffusers' training utilities name (``none``: uniform,
``logit_normal``, ``mode``; ``sigma_sqrt`` and ``cosmap`` weight the loss instead), then shifted:
``shift = "auto"`` is the resolution-dependent shift the family's pipeline samples with
(``calculate_shift`` of the image's token count: kohya's ``flux_shift``), a number is a static
shift (kohya's ``discrete_flow_shift``), 1 is none. The denoiser is told σ in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lorawb.errors import ConfigError
from lorawb.families.base import Family, Model, Noised, described_by, vae_scale_of

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import TrainConfig, TrainSection

FLOW_SAMPLERS = ("euler", "ddim")  # the flow Euler step; DDIM's deterministic update is the same ODE step here


class FlowSettings(BaseModel):
    """Timestep sampling and loss weighting of a flow-matching family (its section of lorawb.toml)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # as train.config's

    weighting_scheme: Literal["none", "logit_normal", "mode", "sigma_sqrt", "cosmap"] = Field(
        "logit_normal",
        description="how timesteps are drawn (none: uniform, logit_normal, mode) or the loss weighted "
        "(sigma_sqrt, cosmap), as diffusers' training utilities name them",
    )
    logit_mean: float = Field(0.0, ge=-10, le=10, description="mean of the logit-normal timestep density")
    logit_std: float = Field(1.0, gt=0, le=10, description="standard deviation of the logit-normal timestep density")
    mode_scale: float = Field(1.29, ge=0, le=10, description="scale of the 'mode' timestep density")
    shift: float | Literal["auto"] = Field(
        "auto",
        description="timestep shift: auto = by the image's size, as the pipeline samples (kohya's flux_shift); "
        "a number = a static shift (kohya's discrete_flow_shift); 1 = none",
    )

    @field_validator("shift")
    @classmethod
    def _positive(cls, v: float | str) -> float | str:
        if v != "auto" and not 0 < float(v) <= 100:
            raise ValueError("must be 'auto' or a number above 0 (at most 100); 1 = no shift")
        return v


class FlowFamily(Family):
    """What flow-matching families share: no min-SNR or prediction type, the flow samplers."""

    kind = "flow"
    samplers: tuple[str, ...] = FLOW_SAMPLERS
    transformer_class: ClassVar[str] = ""  # diffusers' transformer class of the family (its folder's config names it)
    pipeline_class: ClassVar[str] = ""  # the diffusers pipeline that draws the family (FluxPipeline, ...)

    def detect_folder(self, path: Path, index: dict[str, Any]) -> bool:
        """A diffusers folder whose transformer, or whose pipeline, is the family's."""
        from lorawb.train.modelpath import read_json

        cls = read_json(path / "transformer" / "config.json").get("_class_name")
        return cls == self.transformer_class or index.get("_class_name") == self.pipeline_class

    def latent_step(self, path: Path) -> int:
        return (vae_scale_of(path) or 8) * 2  # whole 2x2 patches of latents (every flow transformer here)

    def check_config(self, cfg: TrainConfig) -> None:
        super().check_config(cfg)
        step = cfg.dataset.bucket_step
        folder = described_by(cfg.model)
        unit = self.latent_step(folder) if folder else 16
        if step % unit:
            raise ConfigError(
                f"dataset.bucket_step: {self.label} needs image sides in multiples of {unit} px "
                f"(whole 2x2 patches of latents); {step} is not",
                hint=f"set dataset.bucket_step = {max(unit, step // unit * unit)}",
            )
        if cfg.sample.scheduler not in self.samplers:
            raise ConfigError(
                f"sample.scheduler: {cfg.sample.scheduler!r} is not a sampler for {self.label}",
                hint="use 'euler' (flow matching's Euler step; 'ddim' is the same step here)",
            )


@dataclass
class FlowModel(Model):
    """A flow-matching model: the family supplies the denoiser call and the token count of an image."""

    def pipeline_extra(self) -> dict[str, Any]:
        """The family's own arguments of its pipeline beyond the components (none by default)."""
        return {}

    def pipeline(self, scheduler: Any = None, denoiser: Any = None, text_encoders: list[Any] | None = None) -> Any:
        """The family's diffusers pipeline over the loaded components: text_encoder/tokenizer, then
        text_encoder_2/tokenizer_2 ... in the family's order."""
        import diffusers

        parts: dict[str, Any] = {}
        for i, (encoder, tokenizer) in enumerate(
            zip(text_encoders or self.text_encoders, self.tokenizers, strict=True)
        ):
            suffix = f"_{i + 1}" if i else ""
            parts["text_encoder" + suffix], parts["tokenizer" + suffix] = encoder, tokenizer
        return getattr(diffusers, self.spec.pipeline_class)(  # type: ignore[attr-defined]
            scheduler=scheduler or self.sampler("euler"),
            vae=self.vae,
            transformer=denoiser or self.denoiser,
            **parts,
            **self.pipeline_extra(),
        )

    def load_lora(self, pipe: Any, path: Path, adapter_name: str) -> None:
        """Every naming lorawb reads, handed to diffusers in its peft naming (``transformer.``, alpha folded in)."""
        from lorawb.families.flux import peft_state_dict

        pipe.load_lora_weights(peft_state_dict(self.read_lora(path)), adapter_name=adapter_name)

    def image_seq_len(self, latents: torch.Tensor) -> int:
        """How many tokens the denoiser sees for latents of this size (for the resolution shift)."""
        return int(latents.shape[-2] * latents.shape[-1])

    def shift_sigmas(self, u: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """σ from u in [0, 1] by the configured shift (``time_shift`` of FluxPipeline's ``calculate_shift``)."""
        shift = getattr(self.settings, "shift", "auto")
        if shift == "auto":
            c = self.scheduler_config
            seq = self.image_seq_len(latents)
            base_seq, max_seq = c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096)
            base_shift, max_shift = c.get("base_shift", 0.5), c.get("max_shift", 1.15)
            slope = (max_shift - base_shift) / (max_seq - base_seq)
            factor = math.exp(seq * slope + base_shift - slope * base_seq)
        else:
            factor = float(shift)
        if factor == 1.0:
            return u
        return factor * u / (factor * u + (1 - u))  # e^mu / (e^mu + 1/u - 1), safe at u = 0

    def noised(
        self,
        latents: torch.Tensor,
        generator: torch.Generator,
        train: TrainSection,
        fractions: torch.Tensor | None = None,
    ) -> Noised:
        import torch
        from diffusers.training_utils import compute_density_for_timestep_sampling

        s, g = self.settings, generator
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=g, device=latents.device, dtype=latents.dtype)
        if train.noise_offset:
            offset = torch.randn((b, latents.shape[1], 1, 1), generator=g, device=latents.device, dtype=latents.dtype)
            noise = noise + train.noise_offset * offset
        if fractions is None:
            u = compute_density_for_timestep_sampling(
                weighting_scheme=s.weighting_scheme,
                batch_size=b,
                logit_mean=s.logit_mean,
                logit_std=s.logit_std,
                mode_scale=s.mode_scale,
                device=latents.device,
                generator=g,
            )
        else:
            u = fractions.to(latents.device, torch.float32)
        sigmas = self.shift_sigmas(u.float().clamp(0.0, 1.0), latents)
        shaped = sigmas.view(b, *([1] * (latents.dim() - 1))).to(latents.dtype)
        noisy = (1.0 - shaped) * latents + shaped * noise
        return Noised(noisy, sigmas.to(latents.dtype), noise - latents)

    def loss_weights(self, timesteps: torch.Tensor, train: TrainSection) -> torch.Tensor | None:
        scheme = self.settings.weighting_scheme
        if scheme not in ("sigma_sqrt", "cosmap"):
            return None  # the other schemes shape the timestep density, not the loss
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        return compute_loss_weighting_for_sd3(scheme, timesteps.float())

    def sampler(self, name: str) -> Any:
        from diffusers import FlowMatchEulerDiscreteScheduler

        if name not in FLOW_SAMPLERS:
            raise ConfigError(
                f"sampler {name!r} is not available for {self.spec.label}",
                hint="use 'euler' (flow matching's Euler step)",
            )
        return FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)


def checkpoint_blocks(blocks: Any) -> None:
    """Gradient checkpointing by wrapping each block's forward (every argument passed on as given).

    For denoisers whose own checkpointing drops an argument (diffusers 0.42's Chroma leaves the
    attention mask out of its single blocks' checkpointed call): the model's own switch stays off.
    """
    import functools

    from torch.utils.checkpoint import checkpoint

    for block in blocks:
        if getattr(block, "_lorawb_checkpointed", False):
            continue
        forward = block.forward

        @functools.wraps(forward)
        def wrapped(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
            import torch

            if not torch.is_grad_enabled():
                return _forward(*args, **kwargs)
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        block.forward = wrapped
        block._lorawb_checkpointed = True
