"""The project's own settings in lorawb.toml (the core sections).

lorawb.toml also holds the training defaults (sections ``model``, ``dataset``,
``network``, ``train``, ``sample``, ``save``); those belong to
``lorawb.train.config`` and are kept here as raw tables, validated when a run
is configured.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from lorawb.core.characters import CharactersSection
from lorawb.core.charsheet import GenerateSection
from lorawb.families import settings_sections

# The model families' own sections ([flux] ...: guidance, timestep shift, which blocks to train).
FAMILY_SECTIONS = tuple(settings_sections())
TRAINING_SECTIONS = ("model", "dataset", "network", "train", "sample", "save", *FAMILY_SECTIONS)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def low_res_note(short_side: int, min_resolution: int, resolution: int) -> str | None:
    """Why an image with this short side is flagged low resolution (None: it is not). An image as big as
    the training resolution, the size the base model draws (a promoted matrix cell), says so."""
    if short_side >= min_resolution:
        return None
    if short_side >= resolution:
        return f"under {min_resolution} px, but the model's own size ({resolution} px): as generated"
    return f"under {min_resolution} px"


class ProjectSection(Strict):
    name: str = ""
    trigger: str = ""
    resolution: int = Field(512, ge=8, le=4096, description="training resolution (bucket area); tiny toy models use 32")
    min_resolution: int = Field(256, ge=1, description="images below this on their short side are flagged")
    dataset_dir: str = "dataset"
    inbox_dir: str = "inbox"

    def low_res(self, short_side: int) -> str | None:
        return low_res_note(short_side, self.min_resolution, self.resolution)

    @field_validator("trigger")
    @classmethod
    def _trigger_one_line(cls, v: str) -> str:
        if "," in v or "\n" in v:
            raise ValueError("the trigger must be a single tag (no commas or newlines)")
        return v.strip()


class TagsSection(Strict):
    # Named groups of tags for the composition table: {"context": ["forest", ...], ...}
    groups: dict[str, list[str]] = Field(default_factory=dict)


class TriageSection(Strict):
    dup_threshold: int = Field(6, ge=0, le=64, description="perceptual-hash distance for near-duplicates")
    keep_folder: str = Field("", description="dataset subfolder that kept inbox images move into")


TAG_MODES = ("fill", "append", "replace")


class TaggerSection(Strict):
    """Auto-tagging defaults (``lorawb tag``, the Captions and Triage tabs); see docs/captions.md."""

    model: str = Field("", description="a model folder, `toyworld`, or a name from [tagger.models]")
    models: dict[str, str] = Field(default_factory=dict, description="short names for model folders")
    mode: Literal["fill", "append", "replace"] = "fill"
    threshold: float = Field(0.35, ge=0.01, le=1.0, description="general tags at or above this confidence")
    character_threshold: float = Field(0.85, ge=0.01, le=1.0, description="character tags at or above this")
    max_tags: int = Field(30, ge=0, description="at most this many model tags per image (0: no limit)")
    exclude: list[str] = Field(default_factory=list, description="undesired tags: never written")
    invariant: list[str] = Field(
        default_factory=list, description="the character's invariant features: the trigger carries them"
    )
    keep: list[str] = Field(default_factory=list, description="tags of a caption that replace mode keeps")
    replace: list[str] = Field(default_factory=list, description="tag replacement pairs, `old=new`")
    keep_underscores: bool = Field(False, description="write blue_hair as the model names it, not blue hair")
    character_first: bool = True
    ratings: bool = Field(False, description="add the WD model's rating tag (general, sensitive, ...)")
    batch_size: int = Field(8, ge=1, le=1024)
    prompt: str = Field("", description="text a captioning model continues (BLIP: `a picture of`)")
    max_new_tokens: int = Field(40, ge=1, le=1024)

    @field_validator("replace")
    @classmethod
    def _pairs(cls, v: list[str]) -> list[str]:
        for pair in v:
            old, sep, new = pair.partition("=")
            if not sep or not old.strip() or not new.strip():
                raise ValueError(f"{pair!r} is not a replacement pair: write old=new")
        return v


class UISection(Strict):
    theme: str = "lorawb-dark"
    images: Literal["auto", "halfcell", "unicode", "sixel", "tgp"] = "auto"
    watch: Literal["auto", "poll", "off"] = Field(
        "auto", description="file watching: inotify (else polling), always polling (network folders), or off"
    )


class _ProjectConfig(Strict):
    project: ProjectSection = Field(default_factory=ProjectSection)
    tags: TagsSection = Field(default_factory=TagsSection)
    triage: TriageSection = Field(default_factory=TriageSection)
    ui: UISection = Field(default_factory=UISection)
    tagger: TaggerSection = Field(default_factory=TaggerSection)
    generate: GenerateSection = Field(default_factory=GenerateSection)  # the character sheet (lorawb generate)
    characters: CharactersSection = Field(default_factory=CharactersSection)  # several characters (core.characters)
    # Training defaults, validated by lorawb.train.config.
    model: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict)
    network: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    sample: dict[str, Any] = Field(default_factory=dict)
    save: dict[str, Any] = Field(default_factory=dict)
    matrix: dict[str, Any] = Field(default_factory=dict)
    queue: dict[str, Any] = Field(default_factory=dict)  # validated by lorawb.queue.settings

    def training_defaults(self) -> dict[str, Any]:
        return {name: dict(getattr(self, name)) for name in TRAINING_SECTIONS}


# lorawb.toml: the sections above, and each model family's own section, validated by lorawb.train.config.
ProjectConfig = create_model(
    "ProjectConfig",
    __base__=_ProjectConfig,
    **{name: (dict[str, Any], Field(default_factory=dict)) for name in FAMILY_SECTIONS},  # type: ignore[call-overload]
)


DEFAULT_TOML = """\
# lorawb project settings. Edit by hand or from the app; comments are kept on save.

[project]
name = "{name}"
# The trigger phrase leads every caption; the rest of a caption says what varies.
trigger = "{trigger}"
# Training resolution: aspect-ratio buckets hold about resolution x resolution pixels.
resolution = 512
# Images whose short side is below this are flagged as low resolution.
min_resolution = 256

[tags.groups]
# Tag groups for the composition table: the character should appear across all of them.
{groups}
[triage]
# Perceptual-hash distance (0-64) under which two images count as near-duplicates.
dup_threshold = 6

[ui]
theme = "lorawb-dark"
# auto, halfcell, unicode, sixel or tgp (Kitty graphics)
images = "auto"

[tagger]
# Auto-tagging (`lorawb tag`, `a` in Triage and Captions): a local model folder (a WD tagger's
# model.onnx + selected_tags.csv, or a transformers captioner such as BLIP), or "toyworld".
model = ""
# fill: only uncaptioned images; append: add what a caption lacks; replace: rewrite after the trigger.
mode = "fill"
threshold = 0.35
character_threshold = 0.85
# Undesired tags, never written.
exclude = []
# The character's invariant features (hair colour, outfit...): the trigger should carry them,
# so auto-tagging leaves them out of the captions (caption what varies).
invariant = []

# Training defaults; every run freezes the resolved config into runs/<id>/config.toml.
[model]
# A local diffusers folder or a single .safetensors file (SD1.x/2.x or SDXL).
path = ""

[train]
max_steps = 1000
batch_size = 1
learning_rate = 1e-4

[sample]
every_n_steps = 200
# Prompts drawn at each sample step; {{trigger}} becomes the trigger. Name what varies in your dataset.
prompts = {prompts}

[save]
every_n_steps = 500
"""

# What DEFAULT_TOML says when the dataset gives nothing to go on: examples, commented out.
EXAMPLE_GROUPS = """\
# For example, with your dataset's own tags:
# context = ["city street", "forest", "beach"]
# style = ["photo", "sketch", "watercolor"]
"""
DEFAULT_PROMPTS = '["{trigger}"]'


def default_toml(name: str, trigger: str, groups: str = EXAMPLE_GROUPS, prompts: str = DEFAULT_PROMPTS) -> str:
    """lorawb.toml for a new project (``name`` and ``trigger`` already escaped for a TOML string)."""
    return DEFAULT_TOML.format(name=name, trigger=trigger, groups=groups, prompts=prompts)
