"""The seam between lorawb and a model family: what every family module provides.

A family module (``lorawb/families/<name>.py``) holds two classes:

- a ``Family``: what is known without loading anything (and without torch) — its name, how to
  recognise its diffusers folders and single files, the resolution it is made for, its own
  settings section (``[flux]`` in lorawb.toml), its default LoRA targets and its LoRA file's
  metadata; ``load`` builds its ``Model``.
- a ``Model``: the loaded components and everything that differs while training or drawing —
  captions into conditioning (``TextCond``), latents from images, timesteps, noise and the
  training target, the denoiser call, the loss weighting, the LoRA file's key names, the
  pipeline and samplers that draw images.

The training loop, the caches, resume, the monitor and the matrix call only these methods:
they never ask which family they have. OneTrainer's per-family model setups are the shape
(its ``ModelSetupFlowMatchingMixin``: the family owns ``predict`` and the loss target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lorawb.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel as Settings

    from lorawb.train.config import ModelSection, NetworkSection, TrainConfig, TrainSection
    from lorawb.train.kohya import LoraFile, LoraWeights


# --- what is known without loading (no torch) -------------------------------------------------------


@dataclass(frozen=True)
class ActivationModel:
    """A family's activation memory for one training step, per element of (batch x tokens x width)
    at the compute dtype's size: ``kept`` per block and ``live`` once with gradient checkpointing
    (each block keeps its input; one block is recomputed at a time), ``full`` per block without.

    ``measured``: the date and card of the calibration (bench/gpu_session.sh); empty while the
    figures are estimates (the plan says so).
    """

    kept: float
    live: float
    full: float
    measured: str = ""


@dataclass(frozen=True)
class Preset:
    """A named set of settings the Train form writes into its TOML in one go (the rest is left as it is)."""

    name: str
    help: str
    values: tuple[tuple[str, Any], ...]  # (dotted key, value)
    gpu_gb: float = 0.0  # the card it is made for (the plan checks that it fits)


class Family:
    """A model family's static knowledge; one instance per family in the registry (lorawb.families)."""

    name: ClassVar[str]  # the value of model.family, e.g. "sdxl", "flux"
    label: ClassVar[str]  # what a person calls it, e.g. "SDXL", "Flux.1"
    resolution: ClassVar[int]  # the side it is trained at (its buckets' area)
    kind: ClassVar[str] = "ddpm"  # "ddpm" (noise prediction, min-SNR) or "flow" (flow matching)
    settings: ClassVar[type[Settings] | None] = None  # the family's own section of the config, if any
    default_targets: ClassVar[tuple[str, ...]] = ()  # denoiser layers a LoRA adapts by default
    feed_forward_targets: ClassVar[tuple[str, ...]] = ()  # added by network.ff
    has_conv: ClassVar[bool] = False  # the denoiser has convolutions a LoCon can adapt (network.conv)
    trainable_text_encoders: ClassVar[tuple[bool, ...]] = ()  # per text encoder: can a LoRA train it
    helpers: ClassVar[tuple[str, ...]] = ()  # variation helpers of `lorawb generate`: ip-adapter, controlnet, edit
    default_cfg: ClassVar[float] = 7.0  # guidance scale when neither the model nor the user says
    base_model_version: ClassVar[str] = ""  # kohya's ss_base_model_version
    modelspec_architecture: ClassVar[str] = ""  # modelspec.architecture (without "/lora")
    # A LoRA file says which family it is for: ss_base_model_version starting with one of these,
    # or a modelspec.architecture containing one of these (kohya's, lorawb's and the trainers' values).
    lora_versions: ClassVar[tuple[str, ...]] = ()
    lora_architectures: ClassVar[tuple[str, ...]] = ()
    kohya_network: ClassVar[str] = "networks.lora"  # the kohya network module that makes such LoRAs
    lora_group: ClassVar[str] = ""  # families whose LoRAs fit each other's models share a group (SD1, SD2)
    # Memory: how much a training step's activations take (the memory plan; lorawb.train.memplan),
    # and the form's presets of settings that fit a card.
    activation: ClassVar[ActivationModel] = ActivationModel(kept=1.0, live=20.0, full=20.0)  # a transformer block's
    presets: ClassVar[tuple[Preset, ...]] = ()

    # --- recognising a model -------------------------------------------------------------------
    def detect_folder(self, path: Path, index: dict[str, Any]) -> bool:
        """Is this diffusers folder (``index``: its model_index.json) of this family?"""
        return False

    def detect_keys(self, keys: list[str]) -> bool:
        """Is a single .safetensors file with these tensor names a checkpoint of this family?"""
        return False

    def accepts_lora_of(self, other: Family) -> bool:
        """Does a LoRA made for ``other`` fit this family's models (SD1 and SD2 share a layout)?"""
        return (self.lora_group or self.name) == (other.lora_group or other.name)

    def detect_lora_keys(self, keys: list[str]) -> bool:
        """Do these LoRA tensor names say the file is for this family (when its metadata does not)?"""
        return False

    def single_file_parts(self) -> tuple[str, ...]:
        """The subfolders a single file of this family takes from ``model.config``'s diffusers folder
        (the text encoders, VAE ... a transformer-only file lacks); none: the file is a whole model."""
        return ()

    def latent_step(self, path: Path) -> int:
        """Image sides must be multiples of this (the VAE's scale, times the denoiser's patch size)."""
        return vae_scale_of(path) or 8

    def native_size(self, path: Path) -> tuple[int, str] | None:
        """(resolution, how it is known) read off a diffusers folder's configs, or None."""
        return None

    # --- settings ---------------------------------------------------------------------------------
    def check_config(self, cfg: TrainConfig) -> None:
        """A ConfigError naming the key when a setting cannot work with this family."""
        net = cfg.network
        if net.conv and not self.has_conv:
            raise ConfigError(
                f"network.conv: {self.label} has no convolutions for a LoCon to adapt",
                hint="set network.conv = false",
            )
        if net.train_text_encoder and not any(self.trainable_text_encoders):
            raise ConfigError(
                f"network.train_text_encoder: lorawb cannot train {self.label}'s text encoder",
                hint="set network.train_text_encoder = false",
            )
        if cfg.train.min_snr_gamma and self.kind != "ddpm":
            raise ConfigError(
                f"train.min_snr_gamma: min-SNR weighting is for noise-prediction models; {self.label} is "
                f"trained by flow matching",
                hint=f"set train.min_snr_gamma = 0 and choose [{self.name}] weighting_scheme instead",
            )
        if cfg.model.prediction_type != "auto" and self.kind != "ddpm":
            raise ConfigError(
                f"model.prediction_type: {self.label} predicts the flow, not noise",
                hint="set model.prediction_type = 'auto'",
            )
        check_big_model(cfg)

    def section(self, cfg: TrainConfig) -> Any:
        """This family's settings from the config (its defaults when the config has none)."""
        if self.settings is None:
            return None
        return getattr(cfg, self.name, None) or self.settings()

    # --- loading ------------------------------------------------------------------------------
    model_class: ClassVar[type[Model]]  # the family's loaded-model class

    def meta_denoiser_from_file(self, path: Path, folder: Path) -> Any:
        """For the memory plan: the denoiser of a single file, built on the meta device (the caller
        sets it) from the file's tensor shapes; None: ``folder``'s own config describes it."""
        return None

    def load(self, cfg: ModelSection, path: Path, device: torch.device, dtype: torch.dtype, settings: Any) -> Model:
        raise NotImplementedError

    def lora_metadata(self) -> dict[str, str]:
        """kohya's and modelspec's keys that say which model a LoRA was made for."""
        return {
            "ss_base_model_version": self.base_model_version or self.name,
            "modelspec.architecture": (self.modelspec_architecture or self.name) + "/lora",
        }


def check_big_model(cfg: TrainConfig) -> None:
    """Offloading's needs (lorawb.train.bigmodel): the backward pass recomputes each offloaded block
    (gradient checkpointing), and bitsandbytes' int8/nf4 layers are not moved block by block."""
    if cfg.train.offload_blocks <= 0:
        return
    if not cfg.train.gradient_checkpointing:
        raise ConfigError(
            "train.offload_blocks needs train.gradient_checkpointing = true: the backward pass brings each "
            "offloaded block back by recomputing it",
            hint="set train.gradient_checkpointing = true",
        )
    if cfg.model.quantize in ("int8", "nf4"):
        raise ConfigError(
            f"train.offload_blocks cannot offload a {cfg.model.quantize} base (bitsandbytes' layers stay on the GPU)",
            hint="use model.quantize = 'fp8' or 'none' with offloading, or train.offload_blocks = 0",
        )


# What memory presets share: 1024 px with the latent and text caches applying (captions fixed, crops
# centred, no text-encoder LoRA) and the encoders off the GPU while they are idle.
CACHED_1024: tuple[tuple[str, Any], ...] = (
    ("dataset.resolution", 1024),
    ("dataset.cache_latents", True),
    ("dataset.cache_text", True),
    ("dataset.crop", "center"),
    ("dataset.shuffle_tags", False),
    ("dataset.tag_dropout", 0.0),
    ("network.train_text_encoder", False),
    ("train.offload_frozen", True),
)


def vae_scale_of(path: Path) -> int | None:
    """A diffusers folder's VAE scale factor (2 ** (number of blocks - 1)), or None."""
    from lorawb.train.modelpath import read_json

    vae = read_json(Path(path) / "vae" / "config.json") if Path(path).is_dir() else {}
    blocks = vae.get("block_out_channels")
    return 2 ** (len(blocks) - 1) if isinstance(blocks, list) and blocks else None


def described_by(model: ModelSection) -> Path | None:
    """The diffusers folder whose configs describe the model ``model`` names: ``model.path`` when it
    is a folder, else a single file's ``model.config`` (None when neither is set)."""
    path = Path(model.path).expanduser() if model.path else None
    if path is not None and path.is_file() and model.config:
        return Path(model.config).expanduser()
    return path


def missing_error(family: Family, path: Path, missing: list[str], hint: str) -> ModelError:
    return ModelError(
        f"this {family.label} model lacks " + ", ".join(missing),
        path=path,
        hint=hint,
    )


# --- the loaded model (torch) -------------------------------------------------------------------


@dataclass
class TextCond:
    """What a batch of captions becomes: per-token states, and where a family has them a pooled
    embedding and an attention mask. The text cache stores and concatenates these rows."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TextCond:
        return TextCond(
            self.hidden.to(device, dtype),
            None if self.pooled is None else self.pooled.to(device, dtype),
            None if self.mask is None else self.mask.to(device),
        )

    def index(self, i: int) -> TextCond:
        return TextCond(
            self.hidden[i : i + 1],
            None if self.pooled is None else self.pooled[i : i + 1],
            None if self.mask is None else self.mask[i : i + 1],
        )

    @staticmethod
    def cat(items: list[TextCond]) -> TextCond:
        import torch

        pooled = None if items[0].pooled is None else torch.cat([t.pooled for t in items])  # type: ignore[misc]
        mask = None if items[0].mask is None else torch.cat([t.mask for t in items])  # type: ignore[misc]
        return TextCond(torch.cat([t.hidden for t in items]), pooled, mask)


@dataclass
class Noised:
    """One micro-batch made ready for the denoiser: its input, the timesteps it is told, the target."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


@dataclass
class Model:
    """A loaded base model: components, and the family's behaviour the loop calls."""

    spec: Family
    source: Path
    denoiser: Any  # the UNet or the transformer (the network the LoRA trains)
    vae: Any
    text_encoders: list[Any]
    tokenizers: list[Any]
    scheduler_config: dict[str, Any]  # the model's own sampling scheduler config
    recommended: dict[str, Any] = field(default_factory=dict)
    settings: Any = None  # the family's config section ([flux] ...), when it has one
    dtype: Any = None  # the frozen weights' torch dtype
    big: Any = None  # quantisation and offloading, when on (lorawb.train.bigmodel.BigModel)

    @property
    def family(self) -> str:
        return self.spec.name

    @property
    def bare_denoiser(self) -> Any:
        """The denoiser itself, also when the trainer has wrapped it (DistributedDataParallel)."""
        return getattr(self.denoiser, "module", self.denoiser)

    @property
    def prediction_type(self) -> str:
        return "flow"

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def size_step(self) -> int:
        """Drawn image sides are multiples of this (whole latents, whole patches)."""
        return 8

    @property
    def default_cfg(self) -> float:
        return float(self.recommended.get("cfg", self.spec.default_cfg))

    # --- memory ---------------------------------------------------------------------------------
    def blocks(self) -> list[Any]:
        """The denoiser's repeated blocks, in the order a forward runs them: where nearly every weight
        is. ``model.quantize`` quantises their Linear layers, ``train.offload_blocks`` keeps the first N
        in CPU memory. Empty: the family has neither lever."""
        return []

    def image_tokens(self, side: int) -> int:
        """Positions the denoiser sees for a square image ``side`` px wide (latent pixels, or patches)."""
        return (side // self.vae_scale) ** 2

    def text_tokens(self) -> int:
        """Text tokens the denoiser's blocks attend over jointly with the image (0: cross-attention only)."""
        return 0

    def width(self) -> int:
        """The denoiser's hidden width at its image tokens (the activation model's unit)."""
        c = self.bare_denoiser.config
        heads, head_dim = getattr(c, "num_attention_heads", None), getattr(c, "attention_head_dim", None)
        if isinstance(heads, int) and isinstance(head_dim, int):
            return heads * head_dim
        channels = getattr(c, "block_out_channels", None)
        if channels:
            return int(channels[0])
        return int(getattr(c, "hidden_size", 0) or getattr(c, "dim", 0))

    # --- latents ----------------------------------------------------------------------------------
    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the VAE's posterior for images in [-1, 1] (B, 3, H, W)."""
        vae = self.vae
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        return dist.mean, dist.std

    @property
    def samples_posterior(self) -> bool:
        """Does training draw each step's latents from the VAE's posterior (else it takes its mean, the
        mode, as the family's own pipeline and training script encode)?"""
        return True

    def scale_latents(self, sample: torch.Tensor) -> torch.Tensor:
        """A posterior sample as the denoiser sees latents (the VAE's shift and scale)."""
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        out = sample.float()
        if shift:
            out = out - shift
        return out * float(self.vae.config.scaling_factor)

    # --- text -------------------------------------------------------------------------------------
    def tokenize(self, captions: list[str]) -> list[torch.Tensor]:
        """Token ids per text encoder, padded to the tokenizer's max length."""
        return [
            tok(
                captions, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids
            for tok in self.tokenizers
        ]

    def encode_text(self, ids: list[torch.Tensor]) -> TextCond:
        raise NotImplementedError

    def unused_text_layers(self) -> list[set[int]]:
        """Per text encoder, the transformer layers whose output never reaches the denoiser."""
        return [set() for _ in self.text_encoders]

    # --- training ---------------------------------------------------------------------------------
    def noised(
        self,
        latents: torch.Tensor,
        generator: torch.Generator,
        train: TrainSection,
        fractions: torch.Tensor | None = None,
    ) -> Noised:
        """Noise and timesteps drawn from ``generator`` (``fractions`` in [0, 1]: fixed timesteps instead,
        for the validation loss), the noisy latents and the training target."""
        raise NotImplementedError

    def predict(self, noised: torch.Tensor, timesteps: torch.Tensor, text: TextCond, geometry: torch.Tensor) -> Any:
        """The denoiser's prediction, in the latents' layout (``geometry``: per image the original
        size, crop and target size, (B, 6), for families conditioned on them)."""
        raise NotImplementedError

    def loss_weights(self, timesteps: torch.Tensor, train: TrainSection) -> torch.Tensor | None:
        """Per-image loss weights for these timesteps (min-SNR, flow weighting), or None."""
        return None

    # --- LoRA -----------------------------------------------------------------------------------
    def enable_gradient_checkpointing(self) -> None:
        """Recompute the denoiser's activations in the backward pass (less memory, ~20-30% slower)."""
        self.denoiser.enable_gradient_checkpointing()

    def lora_targets(self, net: NetworkSection) -> tuple[list[str], list[str]]:
        """(linear module names, conv module names) of the denoiser that get a LoRA."""
        from lorawb.train.lora import denoiser_targets

        return denoiser_targets(self.denoiser, self.spec, net)

    def lora_tensors(
        self,
        denoiser: dict[str, LoraWeights],
        text_encoders: list[dict[str, LoraWeights]] | None,
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor]:
        """The LoRA file's tensors, in the naming this family's tools load."""
        raise NotImplementedError

    def read_lora(self, path: Path, text_encoders: list[Any] | tuple = ()) -> LoraFile:
        """A LoRA file (any naming users bring for this family) onto this model's module names."""
        raise NotImplementedError

    # --- drawing --------------------------------------------------------------------------------
    def pipeline(self, scheduler: Any = None, denoiser: Any = None, text_encoders: list[Any] | None = None) -> Any:
        """A diffusers pipeline over these components (``denoiser``, ``text_encoders``: e.g. the
        unwrapped training ones); ``scheduler`` None: the model's own sampler."""
        raise NotImplementedError

    def sampler(self, name: str) -> Any:
        """The sampling scheduler called ``name`` (sample.scheduler, the matrix's sampler axis)."""
        raise NotImplementedError

    def initial_noise(self, seed: int, width: int, height: int) -> torch.Tensor:
        """The starting latents of one image, from its own CPU generator (the same on every device),
        in the layout the pipeline's ``latents=`` takes."""
        import torch

        scale = self.vae_scale
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        shape = (1, self.latent_channels, height // scale, width // scale)
        return torch.randn(shape, generator=g, dtype=torch.float32)

    def draw(self, pipe: Any, **kw: Any) -> list[Any]:
        """One pipeline call: ``prompt``, ``negative_prompt``, ``num_inference_steps``, ``guidance_scale``,
        ``width``, ``height``, ``latents``, ``generator`` as the SD pipelines take them."""
        return list(pipe(**kw).images)

    def load_lora(self, pipe: Any, path: Path, adapter_name: str) -> None:
        """Load a LoRA file into ``pipe`` as a named adapter (diffusers' loader, where it reads the file)."""
        pipe.load_lora_weights(str(path), adapter_name=adapter_name)

    # --- variation helpers (`lorawb generate`): optional, a family without one says so ------------------
    # ``Family.helpers`` lists the ones a family has; each takes the pipeline and returns the one
    # that draws with the helper (built from the same loaded components, so LoRAs still apply).
    def helper_pipeline(self, pipe: Any, helper: Helper) -> Any:
        """``pipe`` drawing with ``helper`` (its model files loaded from the user's folders)."""
        if helper.kind not in self.spec.helpers:
            raise helper_missing(self.spec, helper.kind)
        build = {
            "ip-adapter": self.ip_adapter_pipeline,
            "controlnet": self.controlnet_pipeline,
            "edit": self.edit_pipeline,
        }[helper.kind]
        return build(pipe, helper)

    def ip_adapter_pipeline(self, pipe: Any, helper: Helper) -> Any:
        """IP-Adapter: a reference image, through its image encoder, steers the look."""
        raise helper_missing(self.spec, "ip-adapter")

    def controlnet_pipeline(self, pipe: Any, helper: Helper) -> Any:
        """ControlNet: a condition image (lorawb's pose skeletons) steers the composition."""
        raise helper_missing(self.spec, "controlnet")

    def edit_pipeline(self, pipe: Any, helper: Helper) -> Any:
        """Reference editing: the model redraws a reference image as the prompt says."""
        raise helper_missing(self.spec, "edit")

    def helper_inputs(self, pipe: Any, helper: Helper, image: Any, width: int, height: int) -> dict[str, Any]:
        """The pipeline arguments that give the helper its image (a PIL image, for every prompt of a
        call drawing ``width`` × ``height``)."""
        raise helper_missing(self.spec, helper.kind)


@dataclass(frozen=True)
class Helper:
    """A variation helper as a generate job uses it: its kind, model files and strength."""

    kind: str  # "ip-adapter", "controlnet" or "edit"
    path: str = ""  # the IP-Adapter file or the ControlNet folder ("" for edit: the base model edits)
    encoder: str = ""  # the IP-Adapter's CLIP image encoder folder
    scale: float = 1.0


HELPER_NAMES = {"ip-adapter": "IP-Adapter", "controlnet": "ControlNet", "edit": "reference editing"}


def helper_missing(family: Family, kind: str) -> ModelError:
    have = ", ".join(family.helpers) or "none"
    return ModelError(
        f"{HELPER_NAMES.get(kind, kind)} is not available for {family.label} in lorawb (it has: {have})",
        hint="draw without it (--with none), or use a base model whose family has it",
    )
