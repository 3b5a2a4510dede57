"""The training config: one pydantic model, TOML in, fully resolved TOML out.

Sections ``model``, ``dataset``, ``network``, ``train``, ``sample``, ``save``.
Values come, in order, from the field defaults here, the project's lorawb.toml
(its training sections and ``[project] resolution/trigger``), an optional
config file, then ``--set a.b=VALUE`` overrides. An unknown or ill-typed key is
a ConfigError naming the key (and the file and line it came from).

No torch here: the app's Train form imports this module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from lorawb import families
from lorawb.core import tomlio
from lorawb.core.buckets import BucketSettings
from lorawb.core.config import FAMILY_SECTIONS
from lorawb.core.confine import name_problem
from lorawb.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from lorawb.core.project import Project

BASE_SECTIONS = ("model", "dataset", "network", "train", "sample", "save")
SECTIONS = (*BASE_SECTIONS, *FAMILY_SECTIONS)

TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]

# Upper bounds no real run comes near, so a slip (10**12, 1e22) is an error naming the key, not a run
# that allocates forever or never ends.
MAX_STEPS = 10_000_000
MAX_EPOCHS = 100_000
MAX_LR = 1.0
MAX_ALPHA = 65_536.0
Seed = Annotated[int, Field(ge=0, lt=2**63)]  # what torch's generators take (the matrix's seeds too)


class _Section(BaseModel):
    # No inf or nan anywhere a number goes: TOML reads `inf`/`nan` as floats, and no setting means them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelSection(_Section):
    path: str = Field("", description="base model: a local diffusers folder or a single .safetensors file")
    family: str = Field("auto", description="model family (" + ", ".join(families.names()) + "); auto detects it")
    config: str = Field(
        "",
        description="for a single-file model: a local diffusers folder of the same family whose configs "
        "and tokenizer to use (nothing is downloaded)",
    )
    allow_pickle: bool = Field(False, description="allow .ckpt/.pt/.bin files (they can run code when loaded)")
    prediction_type: Literal["auto", "epsilon", "v_prediction"] = Field(
        "auto", description="override the scheduler's prediction type (v_prediction for SD2 768-v models)"
    )
    quantize: Literal["none", "nf4", "int8", "fp8"] = Field(
        "none",
        description="store the frozen denoiser's block weights quantised (the LoRA trains in full precision "
        "on top): fp8 (1 byte/weight), int8 (bitsandbytes), nf4 (4-bit, bitsandbytes); `lorawb plan` shows the memory",
    )

    @field_validator("family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        if v != "auto" and v not in families.names():
            raise ValueError("must be one of auto, " + ", ".join(families.names()))
        return v


class CharacterEntry(_Section):
    """One character of a joint run (filled from lorawb.toml's ``[characters.<name>]``)."""

    name: str = Field(description="the character's name in lorawb.toml")
    trigger: str = Field(description="its trigger")
    folders: list[str] = Field(default_factory=list, description="its kohya folders under dataset/")


class DatasetSection(_Section):
    path: str = Field("", description="dataset folder (default: the project's dataset/)")
    trigger: str = Field("", description="trigger phrase (default: the project's)")
    resolution: int = Field(0, ge=0, le=4096, description="bucket area side in px (0: the project's resolution)")
    bucket_step: int = Field(64, ge=1, le=256, description="bucket sides are multiples of this (tiny models: 8)")
    buckets: bool = Field(True, description="aspect-ratio bucketing; off: every image is cropped square")
    crop: Literal["center", "random"] = Field("center", description="how an image is cropped to its bucket")
    flip: bool = Field(False, description="random horizontal flip (off: characters are often asymmetric)")
    add_trigger: bool = Field(False, description="prepend the trigger to captions that lack it")
    shuffle_tags: bool = Field(False, description="shuffle the tags after the kept ones each time")
    keep_tokens: int = Field(
        1, ge=0, le=1000, description="leading tags never shuffled or dropped (the trigger is always kept)"
    )
    caption_dropout: float = Field(0.0, ge=0, le=1, description="chance of training an image with an empty caption")
    tag_dropout: float = Field(0.0, ge=0, le=1, description="chance of dropping each non-kept tag")
    validation_split: float = Field(0.0, ge=0, lt=1, description="share of images held out for validation loss")
    validation_path: str = Field("", description="a separate folder of validation images (instead of a split)")
    cache_latents: bool = Field(True, description="encode each image once and cache its latents on disk")
    cache_text: bool = Field(True, description="cache text embeddings when the encoder is frozen and captions fixed")
    reg_path: str = Field(
        "",
        description="regularisation images, kohya's N_class folders (default: the project's reg/ when it "
        "exists; 'none': off)",
    )
    prior_loss_weight: float = Field(
        1.0, ge=0, le=1000, description="loss weight of the reg images (kohya's prior_loss_weight)"
    )
    characters: list[CharacterEntry] = Field(
        default_factory=list,
        description="the characters a joint LoRA learns (default: lorawb.toml's [characters.<name>] tables); "
        "their triggers lead every caption, and sampling balances them",
    )
    balance: Literal["equal", "by_images"] = Field(
        "equal",
        description="with several characters: equal gives each character and each pair the same images per epoch "
        "(folder repeats weigh images within one); by_images keeps the folders' repeats",
    )
    pair_template: str = Field(
        "", description="the sample prompt of a pair ({a}, {b}: triggers; {context}; default: [characters]')"
    )
    joint_resolution: int = Field(
        0,
        ge=0,
        le=8192,
        description="bucket area side of images holding two or more characters (0: resolution); larger keeps "
        "each figure the size it has alone",
    )


class NetworkSection(_Section):
    rank: int = Field(16, ge=1, le=1024, description="LoRA rank (network dim)")
    alpha: float = Field(16.0, gt=0, le=MAX_ALPHA, description="LoRA alpha; the update is scaled by alpha/rank")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA path")
    dora: bool = Field(False, description="DoRA (weight-decomposed LoRA)")
    target_modules: list[str] = Field(
        default_factory=list,
        description="denoiser layers that get a LoRA (empty: the family's default, e.g. the UNet's attention)",
    )
    ff: bool = Field(False, description="also adapt the denoiser's feed-forward layers")
    conv: bool = Field(False, description="also adapt the UNet ResNet/sampler convolutions (LoCon)")
    conv_rank: int = Field(8, ge=1, le=1024, description="rank of the conv LoRAs")
    conv_alpha: float = Field(8.0, gt=0, le=MAX_ALPHA, description="alpha of the conv LoRAs")
    train_text_encoder: bool = Field(False, description="also train LoRAs on the text encoder(s)")
    text_encoder_targets: list[str] = Field(
        default_factory=lambda: list(TE_TARGETS), description="text-encoder layers that get a LoRA (also fc1, fc2)"
    )
    text_encoder_lr: float = Field(0.0, ge=0, le=MAX_LR, description="text-encoder learning rate (0: the UNet's)")
    init_from: str = Field(
        "",
        description="start from this LoRA file instead of zero (lorawb's or kohya's .safetensors, "
        "like kohya's --network_weights); its ranks must match network.rank/conv_rank",
    )


class TrainSection(_Section):
    max_steps: int = Field(1000, ge=0, le=MAX_STEPS, description="optimizer steps to train (0: use epochs)")
    epochs: int = Field(0, ge=0, le=MAX_EPOCHS, description="epochs to train when max_steps is 0")
    batch_size: int = Field(1, ge=1, le=4096, description="images per micro-batch (same bucket)")
    grad_accum: int = Field(1, ge=1, le=4096, description="gradient accumulation: micro-batches per optimizer step")
    learning_rate: float = Field(1e-4, gt=0, le=MAX_LR, description="UNet LoRA learning rate")
    lr_scheduler: Literal["constant", "cosine", "linear"] = Field("constant", description="learning-rate schedule")
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS, description="steps of linear lr warm-up")
    optimizer: Literal["adamw", "adamw8bit", "adamw_fused"] = Field(
        "adamw", description="adamw is fused on CUDA; adamw8bit needs bitsandbytes"
    )
    weight_decay: float = Field(1e-2, ge=0, le=10, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, le=1e6, description="gradient clipping (0: off)")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(
        "no", description="bf16 autocast (GPU or CPU) or fp16 (GPU only; CPU falls back to fp32)"
    )
    gradient_checkpointing: bool = Field(False, description="less memory, about 20-30% slower")
    noise_offset: float = Field(0.0, ge=0, le=1, description="offset noise (0.05-0.1 helps very dark/bright images)")
    min_snr_gamma: float = Field(0.0, ge=0, le=1000, description="min-SNR loss weighting (0: off; 5 is usual)")
    seed: int = Field(42, ge=0, lt=2**63, description="seeds LoRA init, data order, noise: same seed, same run")
    threads: int = Field(0, ge=0, le=4096, description="CPU threads (0: $LORAWB_THREADS, else torch's default)")
    num_processes: int = Field(
        1, ge=1, le=4096, description="processes (GPUs) for data-parallel training via Accelerate"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: the GPU when there is one")
    val_every_n_steps: int = Field(
        0, ge=0, le=MAX_STEPS, description="validation loss every N steps (needs validation images)"
    )
    log_every_n_steps: int = Field(
        0,
        ge=0,
        le=MAX_STEPS,
        description="a step event (mean loss since the last) every N steps; 0: 1 on CPU, 10 on a GPU",
    )
    compile: bool = Field(False, description="torch.compile the UNet (falls back to eager where it cannot)")
    channels_last: bool = Field(False, description="the UNet's convolutions in channels-last memory layout")
    offload_frozen: bool = Field(
        True, description="move the text encoders / VAE off the GPU while the text / latent caches make them idle"
    )
    offload_blocks: int = Field(
        0,
        ge=0,
        le=10_000,
        description="keep the frozen weights of the denoiser's first N blocks in CPU memory, copied in block by "
        "block (for models larger than the card; slower; needs gradient_checkpointing)",
    )
    preservation: Literal["none", "output"] = Field(
        "none",
        description="output: each step also trains the LoRA's prediction on the class prompt toward the "
        "base model's (the LoRA keeps off other subjects; no reg images needed)",
    )
    preservation_class: str = Field(
        "", description="the class word that replaces the trigger in the preservation prompt (e.g. woman)"
    )
    preservation_weight: float = Field(1.0, gt=0, le=1000, description="weight of the output-preservation loss")
    log_with: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list,
        description="also log to TensorBoard (runs/<id>/tensorboard) and/or wandb; needs lorawb[tensorboard] / [wandb]",
    )


class SampleSection(_Section):
    every_n_steps: int = Field(0, ge=0, le=MAX_STEPS, description="sample every N steps (0: off)")
    at_start: bool = Field(False, description="also sample before the first step")
    prompts: list[str] = Field(
        default_factory=list, max_length=1000, description="{trigger} is replaced by the trigger"
    )
    negative: str = Field("", description="negative prompt for samples")
    seeds: list[Seed] = Field(
        default_factory=lambda: [0], max_length=1000, description="every prompt is drawn with each seed"
    )
    steps: int = Field(20, ge=1, le=200, description="sampling steps")
    cfg: float = Field(0.0, ge=0, le=100, description="guidance scale (0: the model's recommendation, else 7)")
    width: int = Field(0, ge=0, le=8192, description="0: the dataset resolution")
    height: int = Field(0, ge=0, le=8192, description="0: the dataset resolution")
    scheduler: Literal["ddim", "euler", "dpm"] = Field("ddim", description="sampler for the samples")


class SaveSection(_Section):
    every_n_steps: int = Field(
        0, ge=0, le=MAX_STEPS, description="checkpoint every N steps (0: off); the last step always saves"
    )
    every_n_epochs: int = Field(0, ge=0, le=MAX_EPOCHS, description="checkpoint every N epochs (0: off)")
    name: str = Field("", description="file name stem (default: the trigger or the project name)")
    keep_last: int = Field(0, ge=0, le=MAX_STEPS, description="keep only the newest N checkpoints (0: all)")
    precision: Literal["fp16", "bf16", "fp32"] = Field("fp16", description="dtype of the saved LoRA weights")

    @field_validator("name")
    @classmethod
    def _stays_a_name(cls, v: str) -> str:
        """The checkpoints are ``checkpoints/<name>-<step>.safetensors``: the name must stay one file
        name there (``../../x`` or ``/abs`` would write outside the run folder)."""
        why = name_problem(v) if v else None
        if why is not None:
            raise ValueError(f"{why}; it names the run's checkpoint files (checkpoints/<name>-<step>.safetensors)")
        return v


class _TrainConfig(_Section):
    model: ModelSection = Field(default_factory=ModelSection)
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    network: NetworkSection = Field(default_factory=NetworkSection)
    train: TrainSection = Field(default_factory=TrainSection)
    sample: SampleSection = Field(default_factory=SampleSection)
    save: SaveSection = Field(default_factory=SaveSection)

    def to_toml(self) -> str:
        """The whole config as commented TOML (what runs/<id>/config.toml holds)."""
        doc = tomlkit.document()
        doc.add(tomlkit.comment("lorawb training config, fully resolved. `lorawb train --config FILE` takes it back."))
        data = self.model_dump(mode="json")
        for name in written_sections(self):
            table = tomlkit.table()
            section_model = type(getattr(self, name))
            for key, value in data[name].items():
                item = tomlkit.item(value)
                desc = section_model.model_fields[key].description
                if desc:
                    item.comment(desc)
                table.add(key, item)
            doc.add(tomlkit.nl())
            doc.add(name, table)
        return tomlkit.dumps(doc)

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
        data = self.model_dump(mode="json")
        _apply_overrides(data, overrides)
        return _validate_overrides(data, overrides)


# The whole config: the sections above, and each model family's own section (``[flux]`` ...).
TrainConfig = create_model(
    "TrainConfig",
    __base__=_TrainConfig,
    **{name: (cls, Field(default_factory=cls)) for name, cls in families.settings_sections().items()},  # type: ignore[call-overload]
)


def family_of(cfg: TrainConfig) -> families.Family | None:
    """The family the config trains (``model.family``, else detected from ``model.path``), or None
    when it cannot be told without the model (no path yet, a missing file)."""
    if cfg.model.family != "auto":
        return families.get(cfg.model.family)
    path = Path(cfg.model.path).expanduser() if cfg.model.path else None
    if path is None or not path.exists():
        return None
    try:
        return families.detect(path)
    except (ModelError, OSError, ValueError):
        return None


def written_sections(cfg: TrainConfig) -> list[str]:
    """The sections a frozen config writes: the base ones, and the family sections of the model's
    family or that differ from their defaults (an SD run's config has no [flux] table)."""
    family = family_of(cfg)
    out = list(BASE_SECTIONS)
    for name in FAMILY_SECTIONS:
        section = getattr(cfg, name)
        if (family is not None and family.name == name) or section != type(section)():
            out.append(name)
    return out


def _apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    for spec in overrides:
        key, value = tomlio.parse_override(spec)
        if "." not in key:
            raise ConfigError(
                f"--set {key}: use a dotted key such as train.max_steps (sections: {', '.join(SECTIONS)})"
            )
        tomlio.set_dotted(data, key, value)


def _validate_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    try:
        return tomlio.validate(TrainConfig, data, path=None)
    except ConfigError as exc:
        keys = [tomlio.parse_override(s)[0] for s in overrides]
        where = next((k for k in keys if exc.message.startswith(k)), None)
        if where is not None:
            raise ConfigError(f"--set {exc.message}", hint=exc.hint) from exc
        raise


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_config_file(path: Path) -> tuple[dict[str, Any], str]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path=path)
    doc, text = tomlio.load_document(path)
    data = tomlio.to_plain(doc)
    # A lorawb.toml may be passed as a config: take only its training sections.
    if "project" in data:
        data = {k: v for k, v in data.items() if k in SECTIONS}
    return data, text


def resolve_config(
    project: Project, config_file: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """The run config: lorawb.toml training defaults, then ``config_file``, then ``--set`` overrides.

    Paths come out absolute and empty defaults are filled from the project
    (dataset path, trigger, resolution, output name), so the frozen config
    means the same thing from any folder.
    """
    defaults = project.config.training_defaults()
    data = {k: v for k, v in defaults.items() if v}
    tomlio.validate(TrainConfig, data, path=project.config_path, text=project.config_text)
    file_path: Path | None = None
    if config_file is not None:
        file_path = Path(config_file)
        extra, text = _read_config_file(file_path)
        data = _deep_merge(data, extra)
        tomlio.validate(TrainConfig, data, path=file_path, text=text)
    _apply_overrides(data, overrides)
    cfg = _validate_overrides(data, overrides)
    if cfg.train.max_steps == 0 and cfg.train.epochs == 0:
        raise ConfigError("train.max_steps and train.epochs are both 0: set one of them")
    cfg = fill_project_defaults(cfg, project, base=file_path.parent if file_path else None)
    check_preservation(cfg)
    check_family(cfg)
    return cfg


def check_family(cfg: TrainConfig, text: str | None = None) -> None:
    """The model family's own checks of the settings (a sampler it has not, min-SNR on a flow model...),
    when the family can be told; the ConfigError names the key (``text``: the TOML, for its line)."""
    family = family_of(cfg)
    if family is None:
        return
    try:
        family.check_config(cfg)
    except ConfigError as exc:
        if text is None or exc.line is not None:
            raise
        key = exc.message.split(":", 1)[0].strip()
        raise ConfigError(exc.message, hint=exc.hint, line=tomlio.find_key_line(text, key)) from exc


def check_preservation(cfg: TrainConfig, text: str | None = None) -> None:
    """A ConfigError when ``train.preservation`` cannot work with the other settings, saying why.

    Output preservation trains the LoRA on the class prompt toward the base model's own
    prediction. It needs a class word, a trigger to replace with it, and a frozen text encoder:
    with a text-encoder LoRA the base prediction would need the class prompt encoded a second
    time without it, and the LoRA could move the class word itself (what preservation protects).
    The message starts with the key to change (the form marks that field; ``text``: the TOML
    it came from, for the line).
    """
    t = cfg.train
    if t.preservation != "output":
        return
    problem: tuple[str, str, str] | None = None
    if not t.preservation_class.strip():
        problem = (
            "train.preservation_class",
            "train.preservation = 'output' needs the class word that replaces the trigger",
            "set it to the class the character belongs to, e.g. train.preservation_class = 'woman'",
        )
    elif not cfg.dataset.trigger:
        problem = (
            "dataset.trigger",
            "train.preservation = 'output' needs a trigger: the class prompt is the caption with the trigger "
            "replaced by the class word",
            "set [project] trigger or dataset.trigger",
        )
    elif cfg.network.train_text_encoder:
        problem = (
            "network.train_text_encoder",
            "cannot be combined with train.preservation = 'output': the base prediction needs the class "
            "prompt encoded without the text-encoder LoRA, and that LoRA could change what the class word "
            "means (what preservation protects)",
            "train the UNet only (network.train_text_encoder = false), or use regularisation images "
            "(dataset.reg_path) instead",
        )
    if problem is not None:
        key, message, hint = problem
        line = tomlio.find_key_line(text, key) if text else None
        raise ConfigError(f"{key}: {message}", hint=hint, line=line)


@dataclass
class ProjectTraining:
    """lorawb.toml's training settings as far as they are valid: each bad key at its default, reported."""

    config: TrainConfig
    errors: list[ConfigError]
    dropped: dict[str, Any]  # dotted key -> the value lorawb.toml has (what the user wrote)


def project_training(project: Project) -> ProjectTraining:
    """The training defaults of lorawb.toml, resolved; a bad key is reported (file:line:key, as the CLI
    says it) and left at its built-in default while the other settings are kept.

    For the app and the doctor, which must show every problem without losing the good settings;
    ``resolve_config`` (the CLI, a run) refuses the whole config instead.
    """
    data = {k: copy.deepcopy(v) for k, v in project.config.training_defaults().items() if v}
    errors: list[ConfigError] = []
    dropped: dict[str, Any] = {}
    cfg: TrainConfig | None = None
    for _ in range(50):
        try:
            cfg = tomlio.validate(TrainConfig, data, path=project.config_path, text=project.config_text)
            break
        except ConfigError as exc:
            errors.append(exc)
            key = exc.message.split(":", 1)[0].strip()
            if not _drop_key(data, key, dropped):
                break
    if cfg is None:
        cfg = TrainConfig()
    if cfg.train.max_steps == 0 and cfg.train.epochs == 0:
        errors.append(
            ConfigError(
                "train.max_steps and train.epochs are both 0: set one of them",
                path=project.config_path,
                line=tomlio.find_key_line(project.config_text, "train.max_steps"),
            )
        )
    filled = fill_project_defaults(cfg, project)
    try:
        check_family(filled, project.config_text)
    except ConfigError as exc:
        errors.append(ConfigError(exc.message, path=project.config_path, line=exc.line, hint=exc.hint))
    return ProjectTraining(filled, errors, dropped)


def where(exc: ConfigError) -> str:
    """``lorawb.toml:47``: the short place of a config error, for a line on screen."""
    if exc.path is None:
        return f"line {exc.line}" if exc.line else ""
    return f"{exc.path.name}:{exc.line}" if exc.line else exc.path.name


def _drop_key(data: dict[str, Any], dotted: str, dropped: dict[str, Any]) -> bool:
    """Remove ``a.b.c`` from ``data`` (the nearest existing parent when ``c`` is not there)."""
    parts = dotted.split(".")
    cur: Any = data
    for i, part in enumerate(parts):
        if not isinstance(cur, dict) or part not in cur:
            return False
        if i == len(parts) - 1 or not isinstance(cur[part], dict):
            dropped[".".join(parts[: i + 1])] = cur.pop(part)
            return True
        cur = cur[part]
    return False


def fill_project_defaults(cfg: TrainConfig, project: Project, base: Path | None = None) -> TrainConfig:
    """Fill empty project-dependent values and make paths absolute."""
    cfg = cfg.model_copy(deep=True)

    def absolute(p: str) -> str:
        if not p:
            return p
        q = Path(p).expanduser()
        if q.is_absolute():
            return str(q)
        # Relative paths in a config file are relative to that file when it exists there.
        if base is not None and (base / q).exists():
            return str((base / q).resolve())
        return str(project.resolve(q).resolve())

    cfg.model.path = absolute(cfg.model.path)
    cfg.model.config = absolute(cfg.model.config)
    cfg.dataset.path = absolute(cfg.dataset.path) if cfg.dataset.path else str(project.dataset_dir.resolve())
    cfg.dataset.validation_path = absolute(cfg.dataset.validation_path)
    if not cfg.dataset.reg_path:  # frozen as "none" without reg/: a reg/ made later shows as a change
        cfg.dataset.reg_path = str(project.reg_dir.resolve()) if project.reg_dir.is_dir() else "none"
    elif cfg.dataset.reg_path != "none":
        cfg.dataset.reg_path = absolute(cfg.dataset.reg_path)
    cfg.network.init_from = absolute(cfg.network.init_from)
    if not cfg.network.target_modules:  # the family's default targets, written out in the frozen config
        family = family_of(cfg)
        if family is not None:
            cfg.network.target_modules = list(family.default_targets)
    if not cfg.dataset.trigger:
        cfg.dataset.trigger = project.trigger
    section = project.config.characters
    if not cfg.dataset.characters and len(section.members) > 1:
        cfg.dataset.characters = [
            CharacterEntry(name=name, trigger=sheet.trigger, folders=list(sheet.folders))
            for name, sheet in section.members.items()
        ]
        if "balance" not in cfg.dataset.model_fields_set:
            cfg.dataset.balance = section.balance
    if cfg.dataset.characters and not cfg.dataset.pair_template:
        cfg.dataset.pair_template = section.pair_template
    if not cfg.dataset.resolution:
        cfg.dataset.resolution = project.config.project.resolution
    if not cfg.save.name:
        cfg.save.name = _slug(cfg.dataset.trigger or project.name) or "lora"
    return cfg


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:60]


def load_run_config(path: str | Path) -> TrainConfig:
    """A frozen run config (runs/<id>/config.toml), validated; errors name the file and line."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.toml"
    if not path.is_file():
        raise ConfigError("run config not found", path=path)
    doc, text = tomlio.load_document(path)
    return tomlio.validate(TrainConfig, tomlio.to_plain(doc), path=path, text=text)


def config_diff(a: TrainConfig, b: TrainConfig) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two configs: [(key, a_value, b_value)]."""
    da, db = a.model_dump(mode="json"), b.model_dump(mode="json")
    out = []
    for section in SECTIONS:
        for key in da[section]:
            if da[section][key] != db[section][key]:
                out.append((f"{section}.{key}", da[section][key], db[section][key]))
    return out


def bucket_settings(project: Project, training: ProjectTraining | None = None) -> BucketSettings:
    """Resolution and bucket step as a run started now would use them (the project's resolved config).

    The one function for these numbers: the doctor's histogram, the Triage facts and the Train
    form show what the trainer will do. A config that does not validate gives the built-in
    defaults at the project's resolution, with the error as ``problem`` context.
    """
    training = training or project_training(project)
    ds = training.config.dataset
    bad = [e for e in training.errors if e.message.startswith("dataset.")]
    if bad:  # the other sections' problems don't change the buckets
        return BucketSettings(
            ds.resolution, ds.bucket_step, ds.buckets, problem=f"bucket unknown: {bad[0].message} ({where(bad[0])})"
        )
    if ds.resolution < ds.bucket_step:
        return BucketSettings(
            ds.resolution,
            ds.bucket_step,
            ds.buckets,
            problem=f"no bucket: dataset.resolution {ds.resolution} < dataset.bucket_step {ds.bucket_step}",
        )
    return BucketSettings(ds.resolution, ds.bucket_step, ds.buckets)
