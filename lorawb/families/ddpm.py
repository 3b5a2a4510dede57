"""Noise prediction as the Stable Diffusion UNets are trained: DDPM noise, ε or v target, min-SNR.

The vocabulary is diffusers' (``noise_scheduler.add_noise``, ``get_velocity``, ``compute_snr``) so
that people from the diffusers and kohya scripts recognise every line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lorawb.families.base import Model, Noised

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import TrainSection


@dataclass
class DDPMModel(Model):
    """A model trained to predict noise (ε) or velocity (v) under a DDPM noise schedule."""

    noise_scheduler: Any = None  # DDPMScheduler with the model's betas and prediction type

    @property
    def prediction_type(self) -> str:
        return str(self.noise_scheduler.config.prediction_type)

    def noised(
        self,
        latents: torch.Tensor,
        generator: torch.Generator,
        train: TrainSection,
        fractions: torch.Tensor | None = None,
    ) -> Noised:
        import torch

        sched, g = self.noise_scheduler, generator
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=g, device=latents.device, dtype=latents.dtype)
        if train.noise_offset:
            offset = torch.randn((b, latents.shape[1], 1, 1), generator=g, device=latents.device, dtype=latents.dtype)
            noise = noise + train.noise_offset * offset
        steps = sched.config.num_train_timesteps
        if fractions is None:
            timesteps = torch.randint(0, steps, (b,), generator=g, device=latents.device)
        else:
            timesteps = (fractions.double() * steps).long().to(latents.device)
        noisy = sched.add_noise(latents, noise, timesteps)
        target = sched.get_velocity(latents, noise, timesteps) if self.prediction_type == "v_prediction" else noise
        return Noised(noisy, timesteps, target)

    def loss_weights(self, timesteps: torch.Tensor, train: TrainSection) -> torch.Tensor | None:
        """min-SNR-γ (Hang et al.), as diffusers' and kohya's scripts weight it: min(SNR, γ)/SNR for ε,
        min(SNR, γ)/(SNR + 1) for v."""
        if train.min_snr_gamma <= 0:
            return None
        import torch
        from diffusers.training_utils import compute_snr

        snr = compute_snr(self.noise_scheduler, timesteps)
        weight = torch.clamp(snr, max=train.min_snr_gamma)
        return weight / (snr + 1) if self.prediction_type == "v_prediction" else weight / snr

    def sampler(self, name: str) -> Any:
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

        cls = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpm": DPMSolverMultistepScheduler}[name]
        return cls.from_config(self.scheduler_config)


def ddpm_scheduler(config: dict[str, Any], prediction_type: str) -> tuple[Any, dict[str, Any]]:
    """The training noise scheduler from the model's scheduler config (``prediction_type`` "auto": the model's)."""
    from diffusers import DDPMScheduler

    config = dict(config)
    sched = DDPMScheduler.from_config(config)
    if prediction_type != "auto":
        sched.register_to_config(prediction_type=prediction_type)
        config["prediction_type"] = prediction_type
    return sched, config
