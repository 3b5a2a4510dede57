"""Stable Diffusion 1.x and 2.x: a UNet, one CLIP text encoder, DDPM noise (ε, or v for SD2-768).

Loading: a diffusers folder, or a single original-layout checkpoint (``from_single_file``, with
the configs and tokenizer from ``model.config``: a local diffusers folder of the family).
LoRA files: kohya's naming, which for SD1/SD2 is diffusers' UNet module paths
(``lora_unet_down_blocks_0_…``) and ``lora_te_text_model_…`` for the text encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.errors import ModelError
from lorawb.families.base import ActivationModel, Family, Helper, TextCond
from lorawb.families.ddpm import DDPMModel, ddpm_scheduler

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import ModelSection
    from lorawb.train.kohya import LoraFile, LoraWeights

SD_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
SD_FF_TARGETS = ("ff.net.0.proj", "ff.net.2")


class SDFamily(Family):
    """SD 1.x (and the base of 2.x): what the two share."""

    name = "sd1"
    label = "SD 1.x"
    resolution = 512
    kind = "ddpm"
    default_targets = SD_TARGETS
    feed_forward_targets = SD_FF_TARGETS
    has_conv = True
    trainable_text_encoders = (True,)
    default_cfg = 7.0
    base_model_version = "sd_v1"
    modelspec_architecture = "stable-diffusion-v1"
    lora_versions = ("sd_v1",)
    lora_architectures = ("stable-diffusion-v1",)
    lora_group = "sd"
    pipeline_class = "StableDiffusionPipeline"
    controlnet_pipeline_class = "StableDiffusionControlNetPipeline"
    helpers = ("ip-adapter", "controlnet")
    # UNet blocks are coarse (down blocks, mid, up blocks) and widen with depth: per block, per element
    # of (latent pixels x the first block's channels). Estimates until bench/gpu_session.sh measures them.
    activation = ActivationModel(kept=10.0, live=100.0, full=100.0)

    def detect_folder(self, path: Path, index: dict[str, Any]) -> bool:
        from lorawb.train.modelpath import read_json

        if not (path / "unet" / "config.json").is_file():
            return False
        return read_json(path / "unet" / "config.json").get("cross_attention_dim") != 1024

    def detect_keys(self, keys: list[str]) -> bool:
        return any(k.startswith(("cond_stage_model.transformer", "model.diffusion_model.input_blocks")) for k in keys)

    def detect_lora_keys(self, keys: list[str]) -> bool:
        return any(k.startswith(("lora_te_", "text_encoder.")) for k in keys)

    def native_size(self, path: Path) -> tuple[int, str] | None:
        from lorawb.families.base import vae_scale_of
        from lorawb.train.modelpath import read_json

        size = read_json(path / "unet" / "config.json").get("sample_size")
        if not isinstance(size, int) or size <= 0:
            return None
        scale = vae_scale_of(path) or 8
        return size * scale, f"unet sample_size {size} x VAE scale {scale}"

    def load(self, cfg: ModelSection, path: Path, device: torch.device, dtype: torch.dtype, settings: Any) -> SDModel:
        return load_unet_model(self, SDModel, cfg, path, device, dtype)

    def lora_metadata(self) -> dict[str, str]:
        meta = super().lora_metadata()
        meta["ss_v2"] = str(self.name == "sd2")
        return meta


class SD2Family(SDFamily):
    name = "sd2"
    label = "SD 2.x"
    resolution = 768
    base_model_version = "sd_v2"
    modelspec_architecture = "stable-diffusion-v2-512"
    lora_versions = ("sd_v2",)
    lora_architectures = ("stable-diffusion-v2",)

    def detect_folder(self, path: Path, index: dict[str, Any]) -> bool:
        from lorawb.train.modelpath import read_json

        return read_json(path / "unet" / "config.json").get("cross_attention_dim") == 1024

    def detect_keys(self, keys: list[str]) -> bool:
        return any(k.startswith("cond_stage_model.model.") for k in keys)

    def detect_lora_keys(self, keys: list[str]) -> bool:
        return False  # an SD2 LoRA's names are SD1's: only its metadata tells


# --- the loaded model ----------------------------------------------------------------------------


@dataclass
class SDModel(DDPMModel):
    """SD 1.x and 2.x: one CLIP text encoder, its last hidden state conditions the UNet."""

    @property
    def unet(self) -> Any:
        return self.denoiser

    @unet.setter
    def unet(self, value: Any) -> None:
        self.denoiser = value

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        te = self.text_encoders[0]
        return TextCond(te(ids[0].to(module_device(te)), return_dict=False)[0])

    def added_cond(self, text: TextCond, time_ids: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """Extra UNet inputs (``added_cond_kwargs``); ``time_ids`` rows are (oh, ow, top, left, th, tw)."""
        return None

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: TextCond, geometry: torch.Tensor) -> Any:
        dtype = self.dtype
        hidden = text.hidden.to(noisy.device, dtype)
        added = self.added_cond(text.to(noisy.device, dtype), geometry)
        return self.denoiser(noisy.to(dtype), timesteps, hidden, added_cond_kwargs=added, return_dict=False)[0]

    def blocks(self) -> list[Any]:
        u = self.bare_denoiser
        return [*u.down_blocks, u.mid_block, *u.up_blocks]

    def initial_noise(self, seed: int, width: int, height: int) -> torch.Tensor:
        import torch

        scale = self.vae_scale
        channels = int(self.bare_denoiser.config.in_channels)
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        return torch.randn((1, channels, height // scale, width // scale), generator=g, dtype=torch.float32)

    # --- LoRA files: kohya's names --------------------------------------------------------------------
    def unet_layout(self) -> Any:
        """The UNet's LDM layout when kohya names this family's layers that way (SDXL), else None."""
        return None

    def lora_tensors(
        self,
        denoiser: dict[str, LoraWeights],
        text_encoders: list[dict[str, LoraWeights]] | None,
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor]:
        from lorawb.train.kohya import kohya_state_dict

        return kohya_state_dict(
            denoiser, text_encoders, te_count=len(self.text_encoders), dtype=dtype, layout=self.unet_layout()
        )

    def read_lora(self, path: Path, text_encoders: list[Any] | tuple = ()) -> LoraFile:
        from lorawb.train.kohya import read_lora

        return read_lora(path, self.bare_denoiser, text_encoders)

    # --- drawing --------------------------------------------------------------------------------------
    def pipeline(self, scheduler: Any = None, denoiser: Any = None, text_encoders: list[Any] | None = None) -> Any:
        from diffusers import StableDiffusionPipeline

        tes = text_encoders or self.text_encoders
        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=tes[0],
            tokenizer=self.tokenizers[0],
            unet=denoiser or self.denoiser,
            scheduler=scheduler or self.sampler("ddim"),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    # --- variation helpers (diffusers' IP-Adapter loader and ControlNet pipelines) --------------------
    def ip_adapter_pipeline(self, pipe: Any, helper: Helper) -> Any:
        from diffusers.utils import logging as dlogging

        load_image_encoder(pipe, Path(helper.encoder), self.vae.device, self.dtype)
        adapter = Path(helper.path)
        verbosity = dlogging.get_verbosity()
        dlogging.set_verbosity_error()  # its "low_cpu_mem_usage" notes are noise in a job log
        try:
            pipe.load_ip_adapter(
                str(adapter.parent),
                subfolder="",
                weight_name=adapter.name,
                image_encoder_folder=None,  # loaded above, from the folder the user named
                local_files_only=True,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(
                f"cannot load this IP-Adapter: {exc}",
                path=adapter,
                hint=f"an IP-Adapter .safetensors for {self.spec.label} (image_proj.* and ip_adapter.* keys)",
            ) from exc
        finally:
            dlogging.set_verbosity(verbosity)
        pipe.set_ip_adapter_scale(helper.scale)
        return pipe

    def controlnet_pipeline(self, pipe: Any, helper: Helper) -> Any:
        import diffusers
        from diffusers import ControlNetModel

        controlnet = load_helper_model(ControlNetModel, Path(helper.path), "ControlNet", self.vae.device, self.dtype)
        cls = getattr(diffusers, self.spec.controlnet_pipeline_class)  # type: ignore[attr-defined]
        parts = {k: v for k, v in pipe.components.items() if k != "safety_checker"}
        if "safety_checker" in pipe.components:
            parts.update(safety_checker=None, requires_safety_checker=False)
        return cls(**parts, controlnet=controlnet)

    def helper_inputs(self, pipe: Any, helper: Helper, image: Any, width: int, height: int) -> dict[str, Any]:
        if helper.kind == "controlnet":
            return {"image": image, "controlnet_conditioning_scale": float(helper.scale)}
        if helper.kind == "ip-adapter":
            return {"ip_adapter_image": image}
        return super().helper_inputs(pipe, helper, image, width, height)


def load_image_encoder(pipe: Any, folder: Path, device: Any, dtype: Any) -> None:
    """A CLIP image encoder folder (transformers' layout, safetensors) into ``pipe`` with its image processor."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    if not (folder / "config.json").is_file():
        raise ModelError(
            "no CLIP image encoder here (config.json + model.safetensors)",
            path=folder,
            hint="set [generate] image_encoder to the IP-Adapter's image_encoder folder",
        )
    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the image encoder: {exc}", path=folder) from exc
    size = int(encoder.config.image_size)
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    pipe.register_modules(image_encoder=encoder.to(device, dtype).eval(), feature_extractor=processor)


def load_helper_model(cls: Any, folder: Path, what: str, device: Any, dtype: Any) -> Any:
    """A helper model (a ControlNet) from a local diffusers folder, safetensors only."""
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"not a {what} folder (no config.json)",
            path=folder,
            hint=f"a diffusers {what} folder: config.json + diffusion_pytorch_model.safetensors",
        )
    try:
        model = cls.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load this {what}: {exc}", path=folder) from exc
    return model.to(device, dtype).eval().requires_grad_(False)


SDFamily.model_class = SDModel


def module_device(module: Any) -> torch.device:
    """Where a module's weights are (also through a DistributedDataParallel wrapper, which has no ``.device``)."""
    return next(module.parameters()).device


# --- loading: folders and single files -----------------------------------------------------------------


def load_unet_model(
    family: SDFamily, cls: type[SDModel], cfg: ModelSection, path: Path, device: torch.device, dtype: torch.dtype
) -> SDModel:
    """An SD-family model in ``dtype`` on ``device`` (the VAE stays fp32 for SDXL in fp16)."""
    import torch

    from lorawb.train.modelpath import read_json

    try:
        parts = _load_folder(path, family, cfg) if path.is_dir() else _load_single_file(path, family, cfg)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load the base model: {exc}", path=path) from exc
    noise_scheduler, sched_cfg = ddpm_scheduler(parts.pop("scheduler_config"), cfg.prediction_type)
    model = cls(
        spec=family,
        source=path,
        denoiser=parts["unet"],
        vae=parts["vae"],
        text_encoders=parts["text_encoders"],
        tokenizers=parts["tokenizers"],
        scheduler_config=sched_cfg,
        recommended=read_json(path / "lorawb_model.json").get("recommended", {}) if path.is_dir() else {},
        noise_scheduler=noise_scheduler,
        dtype=dtype,
    )
    for m in (model.denoiser, model.vae, *model.text_encoders):
        m.requires_grad_(False)
        m.eval()
    vae_dtype = torch.float32 if (family.name == "sdxl" and dtype == torch.float16) else dtype
    model.denoiser.to(device, dtype)
    model.vae.to(device, vae_dtype)
    for te in model.text_encoders:
        te.to(device, dtype)
    return model


def _load_folder(path: Path, family: SDFamily, cfg: ModelSection) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from lorawb.train.modelpath import read_json

    safe = not cfg.allow_pickle
    kw: dict[str, Any] = {"local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", use_safetensors=safe or None, **kw)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", use_safetensors=safe or None, **kw)
    tes: list[Any] = [CLIPTextModel.from_pretrained(path, subfolder="text_encoder", use_safetensors=safe, **kw)]
    toks: list[Any] = [CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw)]
    if len(family.trainable_text_encoders) == 2:
        tes.append(
            CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2", use_safetensors=safe, **kw)
        )
        toks.append(CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2", **kw))
    sched = read_json(path / "scheduler" / "scheduler_config.json")
    if not sched:
        raise ModelError("scheduler/scheduler_config.json is missing or unreadable", path=path)
    return {"unet": unet, "vae": vae, "text_encoders": tes, "tokenizers": toks, "scheduler_config": sched}


def _load_single_file(path: Path, family: SDFamily, cfg: ModelSection) -> dict[str, Any]:
    import diffusers
    import torch

    pipe_cls = getattr(diffusers, family.pipeline_class)
    kw: dict[str, Any] = {"local_files_only": True, "torch_dtype": torch.float32}
    if cfg.config:
        kw["config"] = cfg.config
    try:
        pipe = pipe_cls.from_single_file(str(path), **kw)
    except Exception as exc:  # diffusers raises many kinds here; the fix is the same
        raise ModelError(
            f"cannot load this single-file {family.name} checkpoint without its configs and tokenizer ({exc})",
            path=path,
            hint="set model.config to a local diffusers folder of the same family (one with model_index.json, "
            "unet/config.json and tokenizer/), e.g. the diffusers version of the model this file was made from",
        ) from exc
    two = len(family.trainable_text_encoders) == 2
    tes = [pipe.text_encoder] + ([pipe.text_encoder_2] if two else [])
    toks = [pipe.tokenizer] + ([pipe.tokenizer_2] if two else [])
    return {
        "unet": pipe.unet,
        "vae": pipe.vae,
        "text_encoders": tes,
        "tokenizers": toks,
        "scheduler_config": dict(pipe.scheduler.config),
    }
